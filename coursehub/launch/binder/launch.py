"""Which course a Binder request means, and the anonymous user and server that run it."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyterhub import orm
from tornado import web

from coursehub.courses.access import is_unregistered as is_unregistered
from coursehub.courses.catalog import CourseRecord
from coursehub.courses.remote import remote_commit
from coursehub.errors import BinderSpecError, LaunchRefused
from coursehub.launch.binder.limits import quota_refusal, server_cors_args
from coursehub.launch.binder.spec import (
    BinderSpec,
    course_repo_url,
    pinned_fetch_options,
    server_name_for,
)
from coursehub.launch.guests import create_anonymous_user
from coursehub.names import BINDER_GROUP, TEMPORARY_GROUP

Emit = Callable[[dict], Awaitable[None]] | None
GIT_TIMEOUT = 20
RESERVATION_SECONDS = 120  # a user made for a launch counts against quotas until its server runs
# name -> (course, monotonic time): users created whose server has not started yet.
RESERVED: dict[str, tuple[str, float]] = {}
BUILD_LOCKS: dict[str, asyncio.Lock] = {}


@dataclass
class Launch:
    """A resolved request: the course whose environment serves it, and the settings that bound it."""

    record: CourseRecord
    binder: dict
    user_name: str = ""

    @property
    def course(self) -> str:
        return self.record.name

    @property
    def image(self) -> str:
        """What BinderHub calls the image: here the course's content-addressed environment."""
        return f"coursehub/{self.course}:{Path(self.record.environment).name}"

    @property
    def server_path(self) -> str:
        return f"/user/{self.user_name}/{self.course}/"

    def create_user(self, handler: Any) -> Any:
        """A fresh anonymous user for this launch, within the quotas; its server set up, not started."""
        refusal = quota_refusal(
            running_counts(handler), self.course, self.binder["max_per_repo"], self.binder["max_total"]
        )
        if refusal:
            raise LaunchRefused(refusal, 503)
        user = create_anonymous_user(handler, "bnd", [TEMPORARY_GROUP, BINDER_GROUP])
        self.user_name = user.name
        RESERVED[user.name] = (self.course, time.monotonic())
        spawner = _new_spawner(handler, user, self.course)
        limits = {"memory": self.binder["memory"], "cpu": self.binder["cpu"]}
        if hasattr(spawner, "limit_overrides"):
            spawner.limit_overrides = limits
        else:  # KubeSpawner and others
            spawner.mem_limit, spawner.cpu_limit = limits["memory"], limits["cpu"]
        spawner.args = [*spawner.args, *server_cors_args(self.binder.get("allowed_origins", []))]
        # As on Binder, the repository is the server's root: a book's repo-relative urlpath and
        # data paths work unchanged (the course is merged into ~/<course> before the server starts).
        spawner.notebook_dir = f"~/{self.course}"
        # thebe (JupyterLab's services) sends the token in the websocket URL, and Chromium sends no
        # Sec-Fetch-Mode by which jupyterhub-singleuser would accept it there: allow it on these
        # throwaway servers, whose token opens only this one server and expires with it. An option,
        # not JUPYTERHUB_ALLOW_TOKEN_IN_URL: the fork server read that at import, before the fork.
        spawner.args = [*spawner.args, "--HubOAuth.allow_token_in_url=True"]
        return user

    async def start_server(self, handler: Any, emit: Emit = None) -> dict:
        """Create the user, start its server, wait until it answers: the ready event's url and token."""
        user = self.create_user(handler)
        try:
            await handler.spawn_single_user(user, server_name=self.course)
        except web.HTTPError as exc:
            raise LaunchRefused(_message(exc), exc.status_code) from exc
        spawner = user.spawners[self.course]
        deadline = time.monotonic() + spawner.start_timeout + spawner.http_timeout
        next_note = time.monotonic() + 2
        while not spawner.ready:
            if not spawner.active or time.monotonic() > deadline:
                failure = spawner._spawn_future and spawner._spawn_future.done() and spawner._spawn_future
                reason = _message(failure.exception()) if failure and failure.exception() else "timed out"
                raise LaunchRefused(f"The server could not start: {reason}", 500)
            if emit and time.monotonic() > next_note:
                await emit({"phase": "launching", "message": "Still starting…\n"})
                next_note = time.monotonic() + 2
            await asyncio.sleep(0.05)
        RESERVED.pop(user.name, None)
        # Only this one server: the token cannot reach the hub's API or any other server.
        token = user.new_api_token(
            note="binder launch",
            expires_in=int(self.binder["max_age"]),
            scopes=[f"access:servers!server={user.name}/{self.course}"],
        )
        # With subdomains the server has its own origin (user.host); thebe reads it from this event.
        base = user.host if handler.subdomain_host else handler.public_base()
        return {"url": f"{base}{spawner.server.base_url}", "token": token}


def _new_spawner(handler: Any, user: Any, name: str) -> Any:
    """The user's (new) named server `name`, on JupyterHub 6 and 5.3."""
    if hasattr(user, "get_or_create_spawner"):  # JupyterHub >= 6
        return user.get_or_create_spawner(name, "")
    user.orm_user._orm_spawners.append(orm.Spawner(name=name))
    handler.db.commit()
    return user.spawners[name]


def _message(exc: BaseException | None) -> str:
    """What a JupyterHub error says to users."""
    if exc is None:
        return "unknown error"
    return getattr(exc, "jupyterhub_message", None) or getattr(exc, "log_message", None) or str(exc)


def running_counts(handler: Any) -> Counter[str]:
    """Anonymous servers per course: running or starting, plus users made moments ago."""
    counts: Counter[str] = Counter()
    now = time.monotonic()
    for name, (_, made) in list(RESERVED.items()):
        if now - made > RESERVATION_SECONDS:
            RESERVED.pop(name, None)
    group = orm.Group.find(handler.db, BINDER_GROUP)
    for orm_user in group.users if group else []:
        user = handler.users[orm_user]
        active = [name for name in orm_user.orm_spawners if user.spawners[name].active]
        for name in active:  # servers, not users
            counts[name] += 1
        if not active and orm_user.name in RESERVED:
            counts[RESERVED[orm_user.name][0]] += 1
    return counts


Builder = Callable[
    [BinderSpec, dict, dict[str, CourseRecord], Emit, tuple[str, ...]], Awaitable[CourseRecord]
]


async def resolve_launch(handler: Any, spec: BinderSpec, emit: Emit, build: Builder) -> Launch:
    """The course that serves `spec` (built by `build` first when allowed); LaunchRefused with the reason."""
    binder = handler.binder
    records = handler.records()
    candidates = sorted(
        (r for r in records.values() if r.ready and r.repo and course_repo_url(r.repo) == spec.repo_url),
        key=lambda r: r.access != "open",
    )
    if emit:
        await emit({"phase": "fetching", "message": f"Looking up {spec.repo_url} at {spec.ref}…\n"})
    for record in candidates:
        if await refs_match(record, spec.ref):
            if record.access != "open":
                raise LaunchRefused(
                    f"The course '{record.name}' is not open to anonymous readers "
                    "(its instructor can set access: open).",
                    403,
                )
            if emit:
                await emit({"phase": "built", "imageName": f"coursehub/{record.name}", "message": "Ready.\n"})
            return Launch(record=record, binder=binder)
    if candidates:
        refs = ", ".join(sorted({c.ref or "HEAD" for c in candidates}))
        raise LaunchRefused(
            f"This hub serves {spec.repo_url} at {refs}, not at '{spec.ref}': use that ref (or HEAD).", 404
        )
    if not binder.get("allow_any_repo"):
        raise LaunchRefused(
            f"{spec.repo_url} is not a course on this hub, and this hub builds no other repositories "
            "(an admin can enable binder.allow_any_repo).",
            404,
        )
    # Checked before any connection: an anonymous reader must not make the hub fetch from its own
    # machine or network. Resolved once here; every git command of the build connects only there.
    try:
        git_options = await asyncio.to_thread(pinned_fetch_options, spec.repo_url)
    except BinderSpecError as exc:
        raise LaunchRefused(f"This hub does not build {spec.repo_url}: {exc}.", 403) from None
    record = await build(spec, binder, records, emit, git_options)
    return Launch(record=record, binder=binder)


async def refs_match(record: CourseRecord, ref: str, git_options: tuple[str, ...] = ()) -> bool:
    """True when `ref` names the commit the course is served at (compared by `git ls-remote`)."""
    course_ref = record.ref or "HEAD"
    if ref == course_ref:
        return True
    wanted, served = await asyncio.gather(
        resolve_ref(record.repo, ref, git_options), resolve_ref(record.repo, course_ref, git_options)
    )
    if served is None:
        return False
    if wanted is None:  # maybe a commit id: ls-remote lists refs only
        return len(ref) >= 7 and all(ch in "0123456789abcdef" for ch in ref) and served.startswith(ref)
    return wanted == served


async def resolve_ref(repo: str, ref: str, git_options: tuple[str, ...] = ()) -> str | None:
    """The commit `ref` points to in `repo`, or None when git cannot say (within GIT_TIMEOUT)."""
    return await remote_commit(repo, ref, git_options, GIT_TIMEOUT)


def unregistered_name(spec: BinderSpec) -> str:
    """The catalog name of a repository built on demand."""
    return server_name_for(spec.repo_url)
