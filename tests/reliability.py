"""What the hostile, crash and leak tests measured, written as they finish (test-output/reliability.md)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from coursehub.reliability import read_records, render

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# A full-count run can keep its records apart from everyday runs.
RECORDS = Path(os.environ.get("COURSEHUB_RELIABILITY_RECORDS", OUTPUT / "reliability.jsonl"))


def scale() -> float:
    """COURSEHUB_RELIABILITY_SCALE: 1 runs the issue's full counts; CI's default is a small fraction."""
    return float(os.environ.get("COURSEHUB_RELIABILITY_SCALE", "0.02"))


def scaled(full: int, minimum: int) -> int:
    """`full` times the scale, never below `minimum`."""
    return max(minimum, round(full * scale()))


def record(scenario: str, what: str, attempts: int, held: bool, mode: str = "", **figures: Any) -> None:
    """Append one row and regenerate test-output/reliability.md (no session hook needed)."""
    OUTPUT.mkdir(exist_ok=True)
    row = {
        "scenario": scenario,
        "mode": mode,
        "attempts": attempts,
        "held": held,
        "what": what,
        "figures": figures,
        "scale": scale(),
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    with RECORDS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.with_suffix(".md").write_text(render(read_records(RECORDS)))


def before_after(before: Any, after: Any) -> dict[str, str]:
    """Figures of two snapshots (dataclasses) as 'name: before -> after'."""
    return {name: f"{value} -> {getattr(after, name)}" for name, value in vars(before).items()}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def memory_kib(pid: int) -> dict[str, int]:
    """Rss and Pss of `pid` in KiB (from smaps_rollup)."""
    out = {}
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower()] = int(value.split()[0])
    return out


def open_fds(pid: int) -> int:
    """How many file descriptors `pid` has open."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent links in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def processes_of_uids(uids: set[int]) -> set[int]:
    """Live processes whose real uid is one of `uids`."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            for line in _read(f"/proc/{entry}/status").splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) in uids:
                    found.add(int(entry))
    return found


def forkserver_pids(state_dir: Path) -> set[int]:
    """Fork servers of the hub whose state is in `state_dir` (not their forked children)."""
    marker = f"forkserver.py {state_dir}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker in cmdline:
                found.add(int(entry))
    # Forked monitors and servers keep the fork server's command line, but they sit in a
    # server's cgroup (even once a killed fork server's children are re-parented).
    return {pid for pid in found if "/coursehub/" not in _read(f"/proc/{pid}/cgroup")}
