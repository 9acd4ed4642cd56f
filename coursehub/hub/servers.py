"""What the hub knows about its servers, read from its in-memory users and spawners.

Works with any spawner: the course is the spawner's `course` (SandboxSpawner) or its server
name; the cgroup is the spawner's `cgroup` when it has one (memory, OOM kills, kernels).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coursehub.metrics import NO_COURSE

log = logging.getLogger(__name__)


@dataclass
class ServerInfo:
    """One active (ready or starting) server."""

    user: str
    server: str  # '' for the default server
    course: str
    ready: bool
    pending: str  # 'spawn', 'stop', … or ''
    temporary: bool = False
    memory_limit: int = 0
    cgroup: Any = None  # coursehub.spawner.cgroups.Cgroup when the spawner has one
    memory: int = 0  # filled in by the monitor from the cgroup
    oom_kills: int = 0  # idem: the cgroup's count since the server started
    home: str = ""  # the Unix home, when the spawner has one (SandboxSpawner)
    disk_used: int = 0  # filled in by the monitor: the home's use and quota (0: no quota)
    disk_limit: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)


def course_of(spawner: Any) -> str:
    """The course of a spawner's server: its `course` (SandboxSpawner), else its server name, else '-'.

    A spawner that knows courses and finds none gives '-', so that made-up server names never
    become label values.
    """
    if not hasattr(type(spawner), "course"):
        return getattr(spawner, "name", "") or NO_COURSE
    try:
        return spawner.course or NO_COURSE
    except Exception as exc:  # a catalog that cannot be read must not break the monitor
        log.debug("no course for %s: %s", spawner, exc)
        return NO_COURSE


def memory_limit_of(spawner: Any) -> int:
    """The server's memory limit in bytes (the course's on SandboxSpawner), 0 when unlimited."""
    limits = getattr(spawner, "limits", None)
    if callable(limits):
        try:
            return int(limits().get("memory") or 0)
        except Exception as exc:
            log.debug("no limits for %s: %s", spawner, exc)
    return int(getattr(spawner, "mem_limit", 0) or 0)


def cgroup_of(spawner: Any) -> Any:
    """The spawner's cgroup object, or None (other spawners, or no cgroup hierarchy)."""
    try:
        return getattr(spawner, "cgroup", None)
    except Exception as exc:
        log.debug("no cgroup for %s: %s", spawner, exc)
        return None


def server_info(user: Any, name: str, spawner: Any, temporary: bool) -> ServerInfo:
    """The ServerInfo of one active spawner."""
    return ServerInfo(
        user=user.name,
        server=name,
        course=course_of(spawner),
        ready=bool(spawner.ready),
        pending=spawner.pending or "",
        temporary=temporary,
        memory_limit=memory_limit_of(spawner),
        cgroup=cgroup_of(spawner),
        home=home_of(spawner),
    )


def home_of(spawner: Any) -> str:
    """The home folder of the spawner's Unix account (SandboxSpawner.home_dir), or '' (other spawners)."""
    try:
        return str(getattr(spawner, "home_dir", "") or "")
    except Exception as exc:
        log.debug("no home for %s: %s", spawner, exc)
        return ""


def active_servers(users: Iterable[Any], temporary_names: set[str]) -> list[ServerInfo]:
    """Every ready or starting server of these JupyterHub User wrappers."""
    found = []
    for user in list(users):
        for name, spawner in list(user.spawners.items()):
            if spawner.active:
                found.append(server_info(user, name, spawner, user.name in temporary_names))
    return found


def count_by_course(servers: Iterable[ServerInfo]) -> tuple[Counter, Counter, Counter]:
    """(ready servers, distinct users with a server, pending spawns) per course."""
    running: Counter[str] = Counter()
    pending: Counter[str] = Counter()
    users: dict[str, set[str]] = {}
    for server in servers:
        users.setdefault(server.course, set()).add(server.user)
        running[server.course] += int(server.ready)
        pending[server.course] += int(server.pending == "spawn")
    return running, Counter({course: len(names) for course, names in users.items()}), pending


def read_usage(servers: Iterable[ServerInfo]) -> None:
    """Fill in memory and OOM kills from the cgroups, and each home's use of its quota (blocking)."""
    from coursehub.spawner.homequota import home_usage

    for server in servers:
        if server.home:
            usage = home_usage(Path(server.home))
            if usage is not None:
                server.disk_used, server.disk_limit = usage.used, usage.limit
        if server.cgroup is None:
            continue
        try:
            server.memory = server.cgroup.memory_bytes()
            server.oom_kills = server.cgroup.oom_kills()
        except (OSError, ValueError) as exc:  # the server stopped while we read
            log.debug("cannot read the cgroup of %s: %s", server.key, exc)
