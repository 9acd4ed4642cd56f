"""Prometheus metrics coursehub adds beside JupyterHub's own (served at /hub/metrics).

Definitions live here, with small functions that record them; the hub-side monitor
(`coursehub.hub.monitor`) calls the `set_*` functions from state it samples, and the spawn
hooks call `observe_spawn`. Every name starts with `coursehub_`; `dashboards/coursehub.json`
may query only names exported here or by JupyterHub (a test checks it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

# mybinder.org's launch buckets: launches range from seconds to ten minutes.
SPAWN_BUCKETS = (2, 5, 10, 20, 30, 60, 120, 300, 600)
NO_COURSE = "-"  # the course label of servers that belong to no course

OOM_KILLS = Counter(
    "coursehub_oom_kills", "Processes killed by the kernel's OOM killer in user servers", ["course"]
)
SERVER_MEMORY = Gauge(
    "coursehub_server_memory_bytes",
    "Memory used by a user server's cgroup (server, kernels and their children)",
    ["user", "server", "course"],
)
SERVER_MEMORY_LIMIT = Gauge(
    "coursehub_server_memory_limit_bytes",
    "Memory limit of a user server's cgroup",
    ["user", "server", "course"],
)
RUNNING_SERVERS = Gauge("coursehub_running_servers", "User servers ready, per course", ["course"])
COURSE_USERS = Gauge(
    "coursehub_course_users", "Users with a server of the course running or starting", ["course"]
)
PENDING_SPAWNS = Gauge(
    "coursehub_pending_spawns",
    "Spawns in progress (the queue JupyterHub bounds by concurrent_spawn_limit), per course",
    ["course"],
)
SPAWN_LIMIT = Gauge(
    "coursehub_concurrent_spawn_limit",
    "Spawns the hub runs at once before answering 429 (0: unlimited)",
)
SPAWN_DURATION = Histogram(
    "coursehub_spawn_duration_seconds",
    "Successful spawns: request accepted -> server ready and routed by the proxy",
    ["course"],
    buckets=SPAWN_BUCKETS,
)
SPAWN_FAILURES = Counter(
    "coursehub_spawn_failures",
    "Spawns that started and failed, by reason (429 rejections: jupyterhub_server_spawn_duration_seconds)",
    ["course", "reason"],
)
FIRST_KERNEL = Histogram(
    "coursehub_spawn_to_first_kernel_seconds",
    "Spawn request -> first kernel listed by the server's own API (the hub-side stand-in for time "
    "to first result, which only clients such as `coursehub loadtest` can measure)",
    ["course"],
    buckets=SPAWN_BUCKETS,
)
# The isolation steps of a spawn: its Unix account, its cgroup, its network namespace.
ISOLATION_STEPS = ("account", "cgroup", "namespace")
ISOLATION_SECONDS = Histogram(
    "coursehub_isolation_step_seconds",
    "Wall time of one isolation step of a spawn (account, cgroup, namespace), in its worker thread",
    ["step"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ISOLATION_CPU = Counter(
    "coursehub_isolation_step_cpu_seconds",
    "CPU time of the hub's thread that ran an isolation step (commands it ran, such as useradd "
    "and ip, count in the hub's children, not here)",
    ["step"],
)
BUILD_SECONDS = Gauge(
    "coursehub_course_build_seconds", "Duration of the build of the environment in service", ["course"]
)
BUILD_FAILED = Gauge(
    "coursehub_course_build_failed",
    "1 when the course's last build failed (the previous environment stays in service)",
    ["course"],
)
BUILT_AT = Gauge(
    "coursehub_course_built_timestamp_seconds",
    "Unix time of the build of the environment in service",
    ["course"],
)
TEMPORARY_USERS = Gauge(
    "coursehub_temporary_users", "Anonymous users made by /hub/tmplogin links and not yet culled"
)
TEMPORARY_SERVERS = Gauge("coursehub_temporary_servers", "Servers of temporary users, running or starting")

_REASON_CHARS = re.compile(r"[^a-z0-9]+")


@dataclass(frozen=True)
class ServerMemory:
    """One server's memory use and limit, as the monitor read them."""

    user: str
    server: str
    course: str
    used: int
    limit: int


def course_label(course: str | None) -> str:
    """The label value of a course ('-' for none)."""
    return course or NO_COURSE


def failure_reason(reason: str) -> str:
    """A short label value from a free-form reason: 'Server-Exited ' -> 'server-exited'."""
    cleaned = _REASON_CHARS.sub("-", reason.lower()).strip("-")[:40]
    return cleaned or "unknown"


def observe_spawn(course: str | None, seconds: float, ok: bool, reason: str = "") -> None:
    """Record one spawn that ran: its duration when it succeeded, its reason when it failed."""
    label = course_label(course)
    if ok:
        SPAWN_DURATION.labels(course=label).observe(seconds)
    else:
        SPAWN_FAILURES.labels(course=label, reason=failure_reason(reason)).inc()


def observe_first_kernel(course: str | None, seconds: float) -> None:
    """Record the time from a spawn request to the first kernel of that server."""
    FIRST_KERNEL.labels(course=course_label(course)).observe(seconds)


def observe_isolation_step(step: str, seconds: float, cpu_seconds: float) -> None:
    """Record one isolation step of a spawn: its wall time and its thread's CPU time."""
    ISOLATION_SECONDS.labels(step=step).observe(seconds)
    ISOLATION_CPU.labels(step=step).inc(max(0.0, cpu_seconds))


def record_oom_kills(course: str | None, count: int) -> None:
    """Count processes the OOM killer killed in a server of `course`."""
    if count > 0:
        OOM_KILLS.labels(course=course_label(course)).inc(count)


def _replace(gauge: Gauge, values: Mapping[str, float]) -> None:
    """Set a per-course gauge to exactly `values` (courses gone from the mapping disappear)."""
    gauge.clear()
    for course, value in values.items():
        gauge.labels(course=course_label(course)).set(value)


def set_course_counts(
    running: Mapping[str, int], users: Mapping[str, int], pending: Mapping[str, int]
) -> None:
    """Servers ready, users with servers, and spawns pending, per course."""
    _replace(RUNNING_SERVERS, running)
    _replace(COURSE_USERS, users)
    _replace(PENDING_SPAWNS, pending)


def set_server_memory(rows: Iterable[ServerMemory]) -> None:
    """Memory use and limit of every server now running (stopped ones disappear)."""
    SERVER_MEMORY.clear()
    SERVER_MEMORY_LIMIT.clear()
    for row in rows:
        labels = {"user": row.user, "server": row.server or "default", "course": course_label(row.course)}
        SERVER_MEMORY.labels(**labels).set(row.used)
        if row.limit:
            SERVER_MEMORY_LIMIT.labels(**labels).set(row.limit)


def set_builds(builds: Mapping[str, tuple[float, float, bool]]) -> None:
    """Per course: (build seconds, built at, last build failed) of the catalog."""
    for gauge in (BUILD_SECONDS, BUILT_AT, BUILD_FAILED):
        gauge.clear()
    for course, (seconds, built_at, failed) in builds.items():
        BUILD_SECONDS.labels(course=course).set(seconds)
        BUILT_AT.labels(course=course).set(built_at)
        BUILD_FAILED.labels(course=course).set(1 if failed else 0)


def set_temporary(users: int, servers: int) -> None:
    """Temporary users alive, and their servers."""
    TEMPORARY_USERS.set(users)
    TEMPORARY_SERVERS.set(servers)


def set_spawn_limit(limit: int) -> None:
    """The hub's concurrent_spawn_limit."""
    SPAWN_LIMIT.set(limit)
