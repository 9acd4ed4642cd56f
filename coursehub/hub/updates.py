"""Course updates the hub runs itself (push webhooks, auto_update): one build at a time, pushes coalesced.

The build is `coursehub course update`'s (courses/build.py's build_course), run as root in a thread of
its own pool: the course's code still only runs in the build sandbox, and the event loop never waits.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.log import get_logger

from coursehub.courses.build import build_course
from coursehub.courses.catalog import load_catalog
from coursehub.courses.remote import remote_commit
from coursehub.errors import CoursehubError
from coursehub.paths import StatePaths
from coursehub.settings import Settings


def _log() -> logging.Logger | logging.LoggerAdapter:
    """The hub's own log (JupyterHub's application logger once it runs), where admins look."""
    return get_logger()


# One update at a time, in a pool of its own: builds of several courses at once would share the
# stack environment's build, and asyncio's default pool serves logins and spawns.
UPDATE_POOL = ThreadPoolExecutor(1, thread_name_prefix="coursehub-course-update")
# auto_update asks git at most this often per course (a start storm asks once).
CHECK_EVERY = 60.0


@dataclass
class CourseUpdater:
    """Runs course updates in the background; a request during a run asks for one more run after it."""

    settings: Settings
    paths: StatePaths
    running: dict[str, asyncio.Task] = field(default_factory=dict)
    again: set[str] = field(default_factory=set)
    checked_at: dict[str, float] = field(default_factory=dict)
    runs: dict[str, int] = field(default_factory=dict)  # builds finished per course (for logs and tests)

    def request(self, name: str, why: str) -> str:
        """Start an update of `name`, or queue one after the running one; 'started' or 'queued'."""
        if name in self.running:
            self.again.add(name)  # however many pushes arrive meanwhile: one more run
            return "queued"
        self.running[name] = asyncio.ensure_future(self._run(name, why))
        return "started"

    async def _run(self, name: str, why: str) -> None:
        try:
            while True:
                self.again.discard(name)
                await self._build(name, why)
                if name not in self.again:
                    return
                why = "a push during the last update"
        finally:
            self.running.pop(name, None)

    async def _build(self, name: str, why: str) -> None:
        course = next((c for c in self.settings.courses if c.name == name), None)
        if course is None:
            return
        _log().info("course %s: updating (%s)", name, why)
        loop = asyncio.get_running_loop()
        try:
            record = await loop.run_in_executor(
                UPDATE_POOL, build_course, course, self.settings, self.paths, _log_line
            )
        except CoursehubError as exc:
            # build_course recorded the error in the catalog (the status page shows it); the
            # previous content stays in service.
            _log().warning("course %s: update failed: %s", name, exc)
        except Exception:
            _log().exception("course %s: update failed", name)
        else:
            commit, seconds = record.commit or "-", record.build_seconds
            _log().info("course %s: updated to %s in %.0f s", name, commit, seconds)
        self.runs[name] = self.runs.get(name, 0) + 1

    def auto_updates(self, name: str) -> bool:
        """True when course `name` has auto_update on."""
        return any(c.name == name and c.auto_update for c in self.settings.courses)

    async def update_if_moved(self, name: str) -> None:
        """auto_update: when the course's ref now names another commit than the one served, update."""
        now = time.monotonic()
        if name in self.running or now - self.checked_at.get(name, -CHECK_EVERY) < CHECK_EVERY:
            return
        self.checked_at[name] = now
        record = load_catalog(self.paths.courses).get(name)
        if record is None or not record.commit or not record.repo:
            return  # a folder, or never built by this version: nothing to compare
        upstream = await remote_commit(record.repo, record.ref or "HEAD")
        if upstream_moved(record.commit, upstream):
            self.request(name, f"upstream moved to {upstream}")


def upstream_moved(served: str, upstream: str | None) -> bool:
    """True when git named a commit for the ref and it is not the one served (pure)."""
    return bool(served and upstream and upstream != served)


def _log_line(line: str) -> None:
    _log().debug("course update | %s", line.rstrip())


_UPDATER: CourseUpdater | None = None
_CHECKS: set[asyncio.Task] = set()  # held until done (the loop keeps only weak references)


def auto_update_on_start(spawner: Any) -> None:
    """`pre_spawn_hook` part: a course with auto_update checks upstream in the background.

    The start never waits for git or for the build (a build may take minutes): it gets the content in
    service, and the next start gets the new one. It never makes the start fail.
    """
    updater = get_updater()
    name = getattr(spawner, "name", "")  # a course's server is named for the course
    if updater is None or not updater.auto_updates(name):
        return
    task = asyncio.ensure_future(updater.update_if_moved(name))
    _CHECKS.add(task)
    task.add_done_callback(_checked)


def _checked(task: asyncio.Task) -> None:
    _CHECKS.discard(task)
    if not task.cancelled() and task.exception() is not None:
        _log().error("auto_update check failed", exc_info=task.exception())


def configure_updater(config: dict[str, Any]) -> CourseUpdater | None:
    """The hub's updater from the authenticator's `course_updates` trait; None when nothing uses it."""
    global _UPDATER
    if not config:
        return None
    if _UPDATER is None:
        settings = Settings.model_validate_json(config["settings"])
        _UPDATER = CourseUpdater(settings, StatePaths(Path(config["state_dir"])))
    return _UPDATER


def get_updater() -> CourseUpdater | None:
    """The updater configured for this hub, if any."""
    return _UPDATER
