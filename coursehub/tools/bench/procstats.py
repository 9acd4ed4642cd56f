"""Memory (PSS) and CPU time of processes, read from /proc; parsers kept pure."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def parse_pss_kib(smaps_rollup: str) -> int:
    """The Pss line of /proc/<pid>/smaps_rollup, in KiB."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    raise ValueError("no Pss line in smaps_rollup")


@dataclass(frozen=True)
class StatFields:
    """The fields of /proc/<pid>/stat that the benchmark uses."""

    ppid: int
    ticks: int  # utime + stime of the process itself
    child_ticks: int  # cutime + cstime: children that exited and were waited for
    start: int  # starttime, to tell a pid from a later process that reused it


def parse_stat(text: str) -> StatFields:
    """Parse /proc/<pid>/stat; the command name may contain spaces and parentheses."""
    fields = text.rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3 of proc(5)); utime is field 14, starttime field 22.
    return StatFields(
        ppid=int(fields[1]),
        ticks=int(fields[11]) + int(fields[12]),
        child_ticks=int(fields[13]) + int(fields[14]),
        start=int(fields[19]),
    )


def parse_environ(raw: bytes) -> dict[str, str]:
    """/proc/<pid>/environ as a dict."""
    pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in pairs}


def read_stat(pid: int) -> StatFields | None:
    """The stat fields of `pid`, or None when it is gone."""
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def pss_kib(pid: int) -> int:
    """Proportional set size of `pid` in KiB (0 when it is gone)."""
    try:
        return parse_pss_kib((PROC / str(pid) / "smaps_rollup").read_text())
    except (OSError, ValueError):
        return 0


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time of these processes and of their children that already exited."""
    total = 0
    for pid in pids:
        stat = read_stat(pid)
        if stat is not None:
            total += stat.ticks + stat.child_ticks
    return total / CLOCK_TICKS


def environ(pid: int) -> dict[str, str]:
    """The environment `pid` started with (empty when unreadable)."""
    try:
        return parse_environ((PROC / str(pid) / "environ").read_bytes())
    except OSError:
        return {}


def cgroups_of(pid: int) -> str:
    """/proc/<pid>/cgroup: which cgroups `pid` belongs to ('' when it is gone)."""
    try:
        return (PROC / str(pid) / "cgroup").read_text()
    except OSError:
        return ""


def all_pids() -> list[int]:
    """Every process on the machine now."""
    return [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]


def children_map() -> dict[int, list[int]]:
    """Parent pid -> its children's pids, for every process now."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        stat = read_stat(pid)
        if stat is not None:
            children.setdefault(stat.ppid, []).append(pid)
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Every process below `pid` in the process tree."""
    children = children if children is not None else children_map()
    found, todo = [], list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def pids_of_uid(uid: int) -> list[int]:
    """Every process running as `uid`."""
    found = []
    for pid in all_pids():
        try:
            if (PROC / str(pid)).stat().st_uid == uid:
                found.append(pid)
        except OSError:
            continue
    return found


def pids_by_uid() -> dict[int, list[int]]:
    """uid -> its processes, in one pass over /proc (hundreds of users: not one pass each)."""
    found: dict[int, list[int]] = {}
    for pid in all_pids():
        try:
            found.setdefault((PROC / str(pid)).stat().st_uid, []).append(pid)
        except OSError:
            continue
    return found


def identities(pids: Iterable[int]) -> list[tuple[int, int]]:
    """(pid, start time) pairs, to kill later only the very processes seen now."""
    return [(pid, stat.start) for pid in pids if (stat := read_stat(pid)) is not None]


def parse_machine_busy_ticks(proc_stat: str) -> int:
    """Busy ticks of every CPU together, from /proc/stat's `cpu` line (all but idle and iowait)."""
    for line in proc_stat.splitlines():
        if line.startswith("cpu "):
            # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
            values = [int(v) for v in line.split()[1:9]]
            return sum(values) - values[3] - values[4]
    raise ValueError("no cpu line in /proc/stat")


def machine_busy_seconds() -> float:
    """CPU-seconds the whole machine has spent busy since boot (every core together)."""
    return parse_machine_busy_ticks((PROC / "stat").read_text()) / CLOCK_TICKS


def own_cpu_seconds() -> float:
    """CPU time of this process (every thread), e.g. the benchmark's own load generator."""
    times = os.times()
    return times.user + times.system
