"""CPU-seconds per test and per xdist group, written to test-output/ (cpu-by-group.tsv) and summarised.

The suite is CPU-bound on two cores: its wall time follows its CPU, not the tests' durations (five
workers share the cores), so cuts are chosen from this table. Counted: the worker's own CPU and that of
every process it started and reaped, with their reaped descendants (hubs, proxies, fork servers, servers,
kernels, builds), charged to the test that reaped it: a module's hub to the test whose teardown stopped
it. Not counted: processes that outlive their parent and are reaped by init, and the session hubs'
servers until the session ends: the summary gives the machine's busy time beside the sum.
"""

from __future__ import annotations

import csv
import os
import subprocess
import time
from collections import defaultdict
from pathlib import Path

import pytest

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
PER_WORKER = "cpu-{worker}.tsv"
SUMMARY = OUTPUT / "cpu-by-group.tsv"
_BUSY_AT_START = pytest.StashKey[float]()


def _cpu() -> tuple[float, float]:
    """This process's CPU-seconds, and its reaped children's."""
    t = os.times()
    return t.user + t.system, t.children_user + t.children_system


def _group(item: pytest.Item) -> str:
    marker = item.get_closest_marker("xdist_group")
    return str(marker.args[0]) if marker and marker.args else item.nodeid.split("::", 1)[0]


def machine_busy_seconds() -> float:
    """Every core's busy CPU-seconds since boot (user, nice, system, irq, softirq), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controller, before any worker starts
        config.stash[_BUSY_AT_START] = machine_busy_seconds()
        for old in OUTPUT.glob(PER_WORKER.format(worker="*")):
            old.unlink()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    own, children = _cpu()
    wall = time.monotonic()
    yield
    # Popen objects dropped while their process still ran are reaped at the next Popen, in whatever
    # test makes one (a pure test was charged 40 CPU-s of an earlier module's processes): reap now.
    subprocess._cleanup()  # type: ignore[attr-defined]
    own_after, children_after = _cpu()
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    OUTPUT.mkdir(exist_ok=True)
    with (OUTPUT / PER_WORKER.format(worker=worker)).open("a", newline="") as f:
        csv.writer(f, delimiter="\t").writerow(
            [
                _group(item),
                item.nodeid,
                f"{own_after - own:.2f}",
                f"{children_after - children:.2f}",
                f"{time.monotonic() - wall:.2f}",
            ]
        )


def by_group(rows: list[list[str]]) -> list[tuple[str, float, float, int]]:
    """(group, CPU-s, wall-s, tests) per group, most CPU first (pure)."""
    cpu: dict[str, float] = defaultdict(float)
    wall: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for group, _nodeid, own, children, seconds in rows:
        cpu[group] += float(own) + float(children)
        wall[group] += float(seconds)
        count[group] += 1
    return sorted(((g, cpu[g], wall[g], count[g]) for g in cpu), key=lambda r: -r[1])


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    csv.field_size_limit(2**24)  # files of an older checkout may hold whole parametrised ids
    rows = []
    for path in OUTPUT.glob(PER_WORKER.format(worker="*")):
        with path.open(newline="") as f:
            rows += [row for row in csv.reader(f, delimiter="\t") if len(row) == 5]
    if not rows:
        return
    groups = by_group(rows)
    with SUMMARY.open("w", newline="") as f:
        writer = csv.writer(f, delimiter="\t")
        writer.writerow(["group", "cpu_s", "wall_s", "tests"])
        writer.writerows([g, f"{c:.1f}", f"{w:.1f}", n] for g, c, w, n in groups)
    total = sum(c for _, c, _, _ in groups)
    busy = machine_busy_seconds() - config.stash.get(_BUSY_AT_START, 0.0)
    terminalreporter.write_sep(
        "-", f"CPU-seconds by group: {total:.0f} counted, the machine busy {busy:.0f} (table: {SUMMARY})"
    )
    for group, cpu, seconds, tests in groups[:12]:
        terminalreporter.write_line(f"{cpu:8.1f} CPU-s {seconds:8.1f} s {tests:4d} tests  {group}")
