"""One benchmark invocation: every system in turn, every scenario on each, then the outputs."""

from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from coursehub.courses.environments import find_user_python
from coursehub.tools.bench.admission import burst_user_mib
from coursehub.tools.bench.chart import write_ttfr_chart
from coursehub.tools.bench.configs import LABELS, SYSTEMS
from coursehub.tools.bench.machine import describe_machine
from coursehub.tools.bench.report import render_markdown
from coursehub.tools.bench.scenarios import (
    ScenarioOptions,
    all_usernames,
    bursts,
    live_users,
    single_user,
    steady_state,
)
from coursehub.tools.bench.systems import CoursehubHub, make_hub
from coursehub.tools.bench.textbook import textbook

log = logging.getLogger(__name__)
Echo = Callable[[str], None]


@dataclass(frozen=True)
class BenchOptions:
    """What to run and where to write it."""

    systems: tuple[str, ...] = SYSTEMS
    scenarios: ScenarioOptions = field(default_factory=ScenarioOptions)
    out: Path = Path("bench-results")


class Bench:
    """Runs the systems one after another; `results` fills as it goes (kept on Ctrl-C)."""

    def __init__(self, options: BenchOptions, emit: Echo) -> None:
        self.options = options
        self.emit = emit
        self.results: dict[str, Any] = {
            "machine": describe_machine(str(find_user_python())),
            "options": {"systems": list(options.systems), **asdict(options.scenarios)},
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "duration": 0.0,
            "systems": {},
        }

    def run(self) -> dict[str, Any]:
        """Every system in turn; one that fails is recorded and the others still run."""
        started = time.monotonic()
        raise_open_files_limit()
        try:
            for system in self.options.systems:
                self.run_system(system)
        finally:
            self.results["duration"] = time.monotonic() - started
        return self.results

    def run_system(self, system: str) -> None:
        """Start the system's hub, run each scenario, and always tear it all down."""
        entry: dict[str, Any] = {"label": LABELS[system], "error": ""}
        self.results["systems"][system] = entry
        hub = make_hub(system, self.options.out / "logs")
        opts = self.options.scenarios
        try:
            self.emit(f"[{system}] starting the hub…")
            hub.start()
            names = all_usernames(opts)
            self.emit(f"[{system}] hub up at {hub.url}; letting {len(names)} users log in…")
            hub.add_accounts(names)
            entry["single"] = single_user(hub, opts, self.emit)
            hub.stop_all_servers()
            entry["memory"] = steady_state(hub, opts, self.emit)
            hub.stop_all_servers()
            if opts.live_users:
                entry["live"] = live_users(hub, opts, self.emit)
                hub.stop_all_servers()
            entry["bursts"] = bursts(hub, opts, self.emit, burst_user_mib(entry))
            if isinstance(hub, CoursehubHub) and opts.readers:
                entry["textbook"] = textbook(hub, opts.reader_repeat, opts.readers, self.emit)
        except Exception as exc:  # one broken system must not hide the others' numbers
            log.exception("the %s run failed", system)
            entry["error"] = f"{type(exc).__name__}: {exc}"
            self.emit(f"[{system}] failed: {entry['error']} (hub log: {hub.log_path})")
        finally:
            self.emit(f"[{system}] stopping servers, hub and proxy…")
            hub.close()


# 400 students hold ~2,000 sockets here; the hub and the proxy (which inherit the limit) as many
# and twice as many: room for several times that.
OPEN_FILES = 16384


def open_files_limits(soft: int, hard: int, want: int = OPEN_FILES) -> list[tuple[int, int]]:
    """The (soft, hard) limits to try in turn, best first; [] when `soft` is enough (pure)."""
    infinite = resource.RLIM_INFINITY
    if soft == infinite or soft >= want:
        return []
    if hard == infinite or hard >= want:
        return [(want, hard)]
    # Raising the hard limit needs CAP_SYS_RESOURCE (the benchmark runs as root); else up to it.
    return [(want, want), (hard, hard)]


def raise_open_files_limit() -> None:
    """Raise this process's open-files limit for hundreds of students; the hubs inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in open_files_limits(soft, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return
        except (ValueError, OSError) as exc:
            log.warning("could not set the open-files limit to %s: %s", limits, exc)


def write_outputs(results: dict[str, Any], out: Path) -> list[Path]:
    """results.json, results.md and ttfr.png in `out`; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "results.json", out / "results.md", out / "ttfr.png"]
    paths[0].write_text(json.dumps(results, indent=1) + "\n")
    paths[1].write_text(render_markdown(results))
    write_ttfr_chart(results, paths[2])
    return paths


def load_results(path: Path) -> dict[str, Any]:
    """A results.json written by write_outputs."""
    return json.loads(path.read_text())
