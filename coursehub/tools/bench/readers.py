"""Readers of a textbook page with runnable cells: what thebe does after "activate", timed, N at once.

Each reader opens the build event stream, waits for `ready`, creates a kernel with the token it got,
runs one cell and waits for its printed output. No browser: 50 Chromium tabs would measure the
machine's browser, not the hub (tests/test_binder.py drives the real thebe page in Chromium). One
difference from thebe: the kernel websocket sends the token in a header rather than in its URL.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote

import requests

from coursehub.clients.kernel import KernelSession

CELL = "print(6 * 7)"
EXPECTED = "42"


@dataclass
class ReaderResult:
    """One reader: seconds from activate to printed output, or what went wrong."""

    seconds: float | None = None
    ready_seconds: float | None = None  # of which: until the `ready` event
    error: str = ""


@dataclass
class ReadersRun:
    """N readers started at once."""

    readers: list[ReaderResult] = field(default_factory=list)

    @property
    def seconds(self) -> list[float]:
        """Sorted times of the readers that saw their output."""
        return sorted(r.seconds for r in self.readers if r.seconds is not None)

    @property
    def errors(self) -> list[str]:
        return [r.error for r in self.readers if r.error]

    def summary(self) -> dict:
        """Count, failures, median and max seconds (for the benchmark table)."""
        times = self.seconds
        median = times[len(times) // 2] if times else None
        return {
            "readers": len(self.readers),
            "ok": len(times),
            "failed": len(self.errors),
            "median_s": None if median is None else round(median, 2),
            "max_s": round(times[-1], 2) if times else None,
        }


def binder_spec(repo_url: str, ref: str = "HEAD") -> str:
    """The build path thebe uses for repoProvider 'git'."""
    return f"git/{quote(repo_url, safe='')}/{ref}"


def read_once(binder_url: str, spec: str, code: str = CELL, timeout: float = 300) -> ReaderResult:
    """One reader: activate (build stream) -> ready -> kernel -> cell -> output."""
    result = ReaderResult()
    started = time.monotonic()
    try:
        ready = _ready_event(f"{binder_url.rstrip('/')}/build/{spec}", timeout)
        result.ready_seconds = time.monotonic() - started
        with KernelSession(ready["url"], ready["token"]) as kernel:
            output = kernel.execute(code, timeout=timeout)
        if output.status != "ok" or EXPECTED not in output.stdout:
            raise RuntimeError(f"cell: {output.status} {output.error or output.stdout!r}")
        result.seconds = time.monotonic() - started
    except Exception as exc:  # every failure of a reader is a result, not a crash of the run
        result.error = f"{type(exc).__name__}: {exc}"[:300]
    return result


def _ready_event(url: str, timeout: float) -> dict:
    """Read the event stream up to `ready`; RuntimeError with the message on `failed`."""
    headers = {"Accept": "text/event-stream"}
    with requests.get(url, headers=headers, stream=True, timeout=timeout) as response:
        response.raise_for_status()
        for line in response.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("phase") == "ready":
                return event
            if event.get("phase") == "failed":
                raise RuntimeError(f"failed: {event.get('message', '').strip()}")
    raise RuntimeError("the event stream ended before ready")


def measure_readers(binder_url: str, spec: str, count: int, timeout: float = 300) -> ReadersRun:
    """`count` readers pressing "activate" at the same moment; each one's time to output."""
    run = ReadersRun(readers=[ReaderResult() for _ in range(count)])
    barrier = threading.Barrier(count)

    def reader(index: int) -> None:
        barrier.wait()
        run.readers[index] = read_once(binder_url, spec, timeout=timeout)

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 60)
    return run
