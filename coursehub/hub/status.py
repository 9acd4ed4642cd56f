"""What the admins' status page shows, computed from the monitor's last sample and history (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from coursehub.courses.catalog import CourseRecord
from coursehub.hub import charts
from coursehub.hub.history import (
    FAILURE,
    FIRST_KERNEL,
    HOUR,
    OOM,
    SPAWN,
    Event,
    History,
    by_course,
    seconds_stats,
)
from coursehub.hub.servers import ServerInfo, count_by_course

MIB = 1024**2
MEMORY_ROWS = 40  # the servers closest to their limit; the JSON has them all
RECENT_ROWS = 25


@dataclass
class CourseRow:
    """One course: its people and servers now, its last hour, its environment build."""

    course: str
    users: int = 0
    running: int = 0
    pending: int = 0
    spawns: int = 0
    spawn_p50: float | None = None
    spawn_p95: float | None = None
    first_kernel_p50: float | None = None
    failures: int = 0
    oom_kills: int = 0
    build_seconds: float | None = None
    built_at: float | None = None
    build_error: str = ""


@dataclass
class MemoryRow:
    """One server's memory against its limit."""

    user: str
    server: str
    course: str
    used: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit else 0.0


@dataclass
class DiskRow:
    """One home's use against its quota."""

    user: str
    used: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit else 0.0


@dataclass
class StatusReport:
    """Everything on the page, also served as JSON."""

    generated_at: float
    sampled_at: float
    totals: dict[str, int]
    spawn_seconds: dict[str, Any]  # n, min, p50, p95, max over the last hour
    first_kernel_seconds: dict[str, Any]
    courses: list[CourseRow] = field(default_factory=list)
    memory: list[MemoryRow] = field(default_factory=list)
    disk: list[DiskRow] = field(default_factory=list)  # homes with a quota, fullest first
    recent: list[Event] = field(default_factory=list)  # OOM kills and failures, newest first

    def to_dict(self) -> dict[str, Any]:
        """Plain data for json.dumps."""
        return asdict(self)


@dataclass(frozen=True)
class HubTotals:
    """Counts the monitor read from the hub's database."""

    users: int = 0
    temporary_users: int = 0
    spawn_limit: int = 0


def build_report(
    servers: Sequence[ServerInfo],
    history: History,
    builds: Mapping[str, CourseRecord],
    totals: HubTotals,
    now: float,
    sampled_at: float,
) -> StatusReport:
    """The status of the hub at `now`: per course, per server, and the last hour's events."""
    since = now - HOUR
    spawns = history.events_since(since, SPAWN)
    kernels = history.events_since(since, FIRST_KERNEL)
    running, users, pending = count_by_course(servers)
    report = StatusReport(
        generated_at=now,
        sampled_at=sampled_at,
        totals={
            "users": totals.users,
            "temporary_users": totals.temporary_users,
            "servers_running": sum(running.values()),
            "spawns_pending": sum(pending.values()),
            "spawn_limit": totals.spawn_limit,
            "spawns_last_hour": len(spawns),
            "failures_last_hour": len(history.events_since(since, FAILURE)),
            "oom_kills_last_hour": sum(e.count for e in history.events_since(since, OOM)),
        },
        spawn_seconds=seconds_stats(spawns),
        first_kernel_seconds=seconds_stats(kernels),
    )
    report.courses = course_rows(servers, history.events_since(since), builds)
    report.memory = sorted(
        (
            MemoryRow(s.user, s.server, s.course, s.memory, s.memory_limit)
            for s in servers
            if s.cgroup is not None
        ),
        key=lambda row: (-row.ratio, -row.used, row.user),
    )
    report.disk = disk_rows(servers)
    recent = history.events_since(now - 6 * HOUR, OOM, FAILURE)
    report.recent = sorted(recent, key=lambda e: -e.time)[:RECENT_ROWS]
    return report


def disk_rows(servers: Sequence[ServerInfo]) -> list[DiskRow]:
    """One row per home with a quota (a user's servers share it), fullest first."""
    homes = {s.user: DiskRow(s.user, s.disk_used, s.disk_limit) for s in servers if s.disk_limit}
    return sorted(homes.values(), key=lambda row: (-row.ratio, row.user))


def course_rows(
    servers: Sequence[ServerInfo], events: Sequence[Event], builds: Mapping[str, CourseRecord]
) -> list[CourseRow]:
    """A row per course that has servers, events in the window, or a catalog record."""
    running, users, pending = count_by_course(servers)
    grouped = by_course(events)
    names = sorted(set(running) | set(grouped) | set(builds))
    rows = []
    for name in names:
        mine = grouped.get(name, [])
        spawn_stats = seconds_stats(e for e in mine if e.kind == SPAWN)
        kernel_stats = seconds_stats(e for e in mine if e.kind == FIRST_KERNEL)
        record = builds.get(name)
        rows.append(
            CourseRow(
                course=name,
                users=users.get(name, 0),
                running=running.get(name, 0),
                pending=pending.get(name, 0),
                spawns=int(spawn_stats["n"] or 0),
                spawn_p50=spawn_stats["p50"],
                spawn_p95=spawn_stats["p95"],
                first_kernel_p50=kernel_stats["p50"],
                failures=sum(e.kind == FAILURE for e in mine),
                oom_kills=sum(e.count for e in mine if e.kind == OOM),
                build_seconds=record.build_seconds if record else None,
                built_at=record.built_at if record else None,
                build_error=record.last_error if record else "",
            )
        )
    return rows


def render_charts(report: StatusReport, history: History) -> dict[str, str]:
    """The page's SVG charts: servers over the hour, spawn durations, memory against limits."""
    now, since = report.generated_at, report.generated_at - HOUR
    samples = history.samples_since(since)
    servers = charts.line_chart(
        {
            "running": [(s.time, s.total_running) for s in samples],
            "starting": [(s.time, s.total_pending) for s in samples],
            "temporary users": [(s.time, s.temporary_users) for s in samples],
        },
        since,
        now,
        "Servers, last hour",
        "count",
    )
    events = history.events_since(since, SPAWN, FAILURE)
    spawns = charts.scatter_chart(
        [(e.time, e.seconds, e.kind == SPAWN) for e in events],
        since,
        now,
        "Spawn durations, last hour",
        "seconds",
    )
    memory = charts.usage_bars(
        [
            (f"{row.user} / {row.server or row.course}", row.used / MIB, row.limit / MIB)
            for row in report.memory[:MEMORY_ROWS]
        ],
        "Memory per server against its limit",
        "MiB",
    )
    return {"servers": servers, "spawns": spawns, "memory": memory}
