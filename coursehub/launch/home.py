"""The course home: what the hub's home page lists, and where the hub root sends a logged-in user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..courses.access import may_update, openable
from ..courses.catalog import CourseRecord, load_catalog


@dataclass(frozen=True)
class HomeCourse:
    """One row of the home page: a course the user may open and the user's server of it."""

    name: str
    title: str
    description: str
    server_url: str
    active: bool  # running, starting or stopping
    ready: bool
    pending: str  # "spawn", "stop" or ""
    last_activity: str  # ISO 8601 in UTC, or "" when never used
    may_update: bool = False  # the user is the course's staff (or an admin): an Update content button


@dataclass(frozen=True)
class CourseShelf:
    """The courses of this hub: the local catalog over records given by config, in config order."""

    courses_root: str = ""
    static: dict[str, dict[str, Any]] | None = None
    order: tuple[str, ...] = ()

    def records(self) -> dict[str, CourseRecord]:
        """Every course record (read on each call: `course add` and `course build` change it live)."""
        records = {name: CourseRecord(**record) for name, record in (self.static or {}).items()}
        if self.courses_root:
            records.update(load_catalog(Path(self.courses_root)))
        return records

    def mine(self, user: Any) -> list[CourseRecord]:
        """The courses `user` may open, first the first."""
        return openable(self.records(), self.order, user)

    def home(self, user: Any) -> list[HomeCourse]:
        """The home page's rows for `user` (a JupyterHub User): nothing they may not open."""
        return [home_course(record, user) for record in self.mine(user)]


def home_course(record: CourseRecord, user: Any) -> HomeCourse:
    """A course's row, with the state of the user's named server for it."""
    orm = user.orm_spawners.get(record.name)
    # user.spawners[...] makes a spawner on first use: only look at servers that exist.
    spawner = user.spawners[record.name] if orm is not None else None
    activity = orm.last_activity if orm is not None else None
    return HomeCourse(
        name=record.name,
        title=record.title or record.name,
        description=record.description,
        server_url=user.server_url(record.name),
        active=bool(spawner and spawner.active),
        ready=bool(spawner and spawner.ready),
        pending=(spawner.pending or "") if spawner else "",
        last_activity=activity.isoformat() + "Z" if activity else "",
        may_update=may_update(user, record.name),
    )


@dataclass(frozen=True)
class HomeCourses:
    """JupyterHub.template_vars value: called with the user, gives home.html a function of its rows."""

    shelf: CourseShelf

    def __call__(self, user: Any) -> Callable[[], list[HomeCourse]]:
        # Lazy: template_vars are evaluated for every page, the catalog is read only by home.html.
        return lambda: self.shelf.home(user) if user is not None else []


@dataclass(frozen=True)
class FirstCourse:
    """JupyterHub.default_url: the hub root opens the user's first course ('' keeps JupyterHub's default)."""

    shelf: CourseShelf

    def __call__(self, handler: Any) -> str:
        user = handler.current_user
        if user is None:
            return ""  # JupyterHub sends the visitor to the login page
        if user.spawner.active:
            return ""  # a default server already runs: JupyterHub opens it
        mine = self.shelf.mine(user)
        if not mine:
            return f"{handler.hub.base_url}home"  # says there is no course yet, rather than a failed spawn
        return f"{handler.hub.base_url}launch/{quote(mine[0].name)}"
