"""The monitor inside the hub process: spawn timing, periodic samples, gauges and history.

It is started once, by the authenticator's `get_handlers` (through `ops_handlers`), and fed by
`pre_spawn_hook`, which hubconfig sets as `Spawner.pre_spawn_hook`. Every few seconds it reads
the hub's users and spawners (in the event loop, no I/O) and the servers' cgroups (in a thread),
then sets the gauges of `coursehub.metrics` and appends a sample to its history.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from tornado.ioloop import PeriodicCallback

from coursehub import metrics
from coursehub.courses.catalog import CourseRecord, catalog_path, load_catalog
from coursehub.hub import kernelwatch
from coursehub.hub.history import FAILURE, FIRST_KERNEL, OOM, SPAWN, Event, History, Sample
from coursehub.hub.kernelwatch import KernelWatch
from coursehub.hub.servers import ServerInfo, active_servers, count_by_course, course_of, read_usage
from coursehub.names import TEMPORARY_GROUP

log = logging.getLogger(__name__)
TICK_SECONDS = 2.0  # how often recently started servers are asked for their first kernel
SAMPLE_EVERY = 3  # ticks between full samples (servers, memory, OOM kills, builds)
Key = tuple[str, str]  # (user, server name)


def reason_of(exc: BaseException | None) -> str:
    """A failure reason label: SpawnException's reason, 'http-500', 'timeout', or the class name."""
    if exc is None:
        return "cancelled"
    reason = getattr(exc, "reason", None)
    status = getattr(exc, "status_code", None)
    # JupyterHub sets 'timeout' or a generic 'error'; HTTP reason phrases ('Not Found') are capitalised.
    if isinstance(reason, str) and reason[:1].islower() and reason != "error":
        return metrics.failure_reason(reason)
    if isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower():
        return "timeout"
    if isinstance(status, int):
        return f"http-{status}"
    return metrics.failure_reason(type(exc).__name__)


class Monitor:
    """Spawn timing, kernel watch and periodic samples of one hub process."""

    def __init__(self) -> None:
        self.history = History()
        self.app: Any = None
        self.courses_root: Path | None = None
        self.servers: list[ServerInfo] = []
        self.builds: dict[str, CourseRecord] = {}
        self.total_users = 0
        self.temporary_users = 0
        self.spawn_limit = 0
        self.sampled_at = 0.0
        self.kernel_watch: dict[Key, KernelWatch] = {}
        self.oom_seen: dict[Key, int] = {}
        self.fresh: set[Key] = set()  # spawned while we watched: their cgroup counts from 0
        self._catalog_mtime = -1.0
        self._callback: PeriodicCallback | None = None
        self._ticks = 0
        self._busy = False
        self._tasks: set[asyncio.Task] = set()  # spawns polled on JupyterHubs without _spawn_future

    def attach(self, app: Any, courses_root: str = "") -> None:
        """Watch `app` (the JupyterHub application) from now on; idempotent."""
        self.app = app
        self.courses_root = Path(courses_root) if courses_root else None
        if self._callback is None:
            self._callback = PeriodicCallback(self.tick, TICK_SECONDS * 1000)
            self._callback.start()

    # -- spawns ---------------------------------------------------------------

    def spawn_started(self, spawner: Any) -> None:
        """Called by pre_spawn_hook: time this spawn until JupyterHub's spawn future is done."""
        key: Key = (spawner.user.name, spawner.name)
        course, requested = course_of(spawner), time.monotonic()
        future = getattr(spawner, "_spawn_future", None)  # JupyterHub's own (handlers/base.py)
        if future is not None and hasattr(future, "add_done_callback"):
            future.add_done_callback(lambda f: self._spawn_done(spawner, key, course, requested, f))
        else:  # another JupyterHub: poll the spawner instead (coarser, no reason)
            task = asyncio.ensure_future(self._poll_spawn(spawner, key, course, requested))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _spawn_done(self, spawner: Any, key: Key, course: str, requested: float, future: Any) -> None:
        exc = None if future.cancelled() else future.exception()
        ok = not future.cancelled() and exc is None
        self.spawn_finished(spawner, key, course, requested, ok, "" if ok else reason_of(exc))

    async def _poll_spawn(self, spawner: Any, key: Key, course: str, requested: float) -> None:
        deadline = requested + float(getattr(spawner, "start_timeout", 600)) + 120
        while spawner.pending == "spawn" and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        ok = bool(spawner.ready)
        self.spawn_finished(spawner, key, course, requested, ok, "" if ok else "unknown")

    def spawn_finished(
        self, spawner: Any, key: Key, course: str, requested: float, ok: bool, reason: str
    ) -> None:
        """Record the outcome of one spawn: metrics, history, and start watching for its kernel."""
        seconds = time.monotonic() - requested
        metrics.observe_spawn(course, seconds, ok, reason)
        kind = SPAWN if ok else FAILURE
        self.history.add_event(Event(time.time(), kind, key[0], key[1], course, seconds, reason))
        if not ok:
            return
        self.fresh.add(key)
        self.oom_seen.pop(key, None)
        watch = kernelwatch.watch_for(spawner, course, requested)
        if watch is not None:
            self.kernel_watch[key] = watch

    # -- periodic work --------------------------------------------------------

    async def tick(self) -> None:
        """Look for first kernels; every SAMPLE_EVERY ticks, take a full sample."""
        if self._busy or self.app is None:
            return
        self._busy = True
        try:
            await self.watch_kernels()
            if self._ticks % SAMPLE_EVERY == 0:
                await self.sample()
            self._ticks += 1
        except Exception:  # the monitor must never take the hub down
            log.exception("coursehub monitor: sampling failed")
        finally:
            self._busy = False

    async def watch_kernels(self) -> None:
        """Ask recently started servers for kernels; record the first one each gets."""
        now = time.monotonic()
        keys = kernelwatch.due(self.kernel_watch, now)
        if not keys:
            return
        answers = await asyncio.gather(*(kernelwatch.has_kernel(self.kernel_watch[k]) for k in keys))
        now = time.monotonic()
        for key, found in zip(keys, answers, strict=True):
            watch = self.kernel_watch.get(key)
            if watch is None:  # the server stopped meanwhile
                continue
            if found:
                seconds = now - watch.requested
                metrics.observe_first_kernel(watch.course, seconds)
                event = Event(time.time(), FIRST_KERNEL, key[0], key[1], watch.course, seconds)
                self.history.add_event(event)
            if found or watch.expired(now):
                del self.kernel_watch[key]
            else:
                watch.next_check = now + kernelwatch.next_delay(now - watch.requested)

    async def sample(self) -> None:
        """Read servers, cgroups, temporary users and the catalog; publish gauges and a sample."""
        temporary = self._temporary_names()
        servers = active_servers(self.app.users.values(), temporary)
        await asyncio.to_thread(read_usage, servers)
        self._note_oom_kills(servers)
        self._drop_stopped({s.key for s in servers})
        self.servers, self.sampled_at = servers, time.time()
        self.temporary_users = len(temporary)
        self.total_users = self._count_users()
        self.spawn_limit = int(getattr(self.app, "concurrent_spawn_limit", 0) or 0)
        self.builds = await asyncio.to_thread(self._read_catalog)
        self.publish()

    def publish(self) -> None:
        """Set every gauge from the last sample and remember it in the history."""
        running, users, pending = count_by_course(self.servers)
        metrics.set_course_counts(running, users, pending)
        metrics.set_server_memory(
            metrics.ServerMemory(s.user, s.server, s.course, s.memory, s.memory_limit)
            for s in self.servers
            if s.cgroup is not None
        )
        metrics.set_temporary(self.temporary_users, sum(s.temporary for s in self.servers))
        metrics.set_spawn_limit(self.spawn_limit)
        metrics.set_builds(
            {name: (r.build_seconds, r.built_at, bool(r.last_error)) for name, r in self.builds.items()}
        )
        self.history.add_sample(
            Sample(
                time=self.sampled_at,
                running=dict(running),
                pending=dict(pending),
                memory_bytes=sum(s.memory for s in self.servers),
                temporary_users=self.temporary_users,
            )
        )

    def _note_oom_kills(self, servers: list[ServerInfo]) -> None:
        """History events for OOM kills since the last sample (the spawner counts the metric)."""
        for server in servers:
            if server.cgroup is None:
                continue
            key = server.key
            if key in self.oom_seen:
                new = server.oom_kills - self.oom_seen[key]
            else:  # first sight: count from 0 only if we saw it start in a fresh cgroup
                new = server.oom_kills if key in self.fresh else 0
            self.oom_seen[key] = server.oom_kills
            if new > 0:
                self.history.add_event(
                    Event(time.time(), OOM, server.user, server.server, server.course, count=new)
                )

    def _drop_stopped(self, active: set[Key]) -> None:
        for table in (self.oom_seen, self.kernel_watch):
            for key in [k for k in table if k not in active]:
                table.pop(key, None)
        self.fresh &= active

    def _temporary_names(self) -> set[str]:
        from jupyterhub import orm

        group = orm.Group.find(self.app.db, TEMPORARY_GROUP)
        return {user.name for user in group.users} if group is not None else set()

    def _count_users(self) -> int:
        from jupyterhub import orm

        return int(self.app.db.query(orm.User).count())

    def _read_catalog(self) -> dict[str, CourseRecord]:
        """The catalog, re-read only when its file changed."""
        if self.courses_root is None:
            return {}
        try:
            mtime = catalog_path(self.courses_root).stat().st_mtime
        except OSError:
            return {}
        if mtime != self._catalog_mtime:
            self._catalog_mtime = mtime
            return load_catalog(self.courses_root)
        return self.builds


_MONITOR: Monitor | None = None


def get_monitor() -> Monitor:
    """This process's monitor (created on first use)."""
    global _MONITOR
    if _MONITOR is None:
        _MONITOR = Monitor()
    return _MONITOR


def pre_spawn_hook(spawner: Any) -> None:
    """`Spawner.pre_spawn_hook`: start timing this spawn (never lets a spawn fail)."""
    try:
        get_monitor().spawn_started(spawner)
    except Exception:
        log.exception("coursehub monitor: cannot time the spawn of %s", spawner)
