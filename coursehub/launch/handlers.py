"""Hub-side handlers for launch links: thin layers over links.py and the course catalog."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jupyterhub.handlers import BaseHandler
from tornado import web

from coursehub.names import TEMPORARY_GROUP

from ..clientaddr import limit_key
from ..courses.access import is_temporary, is_unregistered, may_open
from ..courses.catalog import CourseRecord, load_catalog
from .guests import create_anonymous_user, limiter
from .links import LinkError, lab_path, locate, parse_course_name, parse_path


def page_error(status: int, message: str, html_message: str = "") -> web.HTTPError:
    """An HTTPError whose message JupyterHub's error page shows to the user."""
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    if html_message:
        error.jupyterhub_html_message = html_message  # type: ignore[attr-defined]
    return error


def notice_page(message: str, url: str, seconds: int = 4) -> str:
    """A minimal page that shows `message`, then moves on to `url`."""
    text, link = html.escape(message), html.escape(url, quote=True)
    return (
        f'<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" '
        f'content="{seconds};url={link}"><title>coursehub</title>'
        f'<p style="font:1.1em sans-serif;margin:3em">{text} '
        f'<a href="{link}">Continue</a></p>'
    )


class CourseHandler(BaseHandler):
    """Shared helpers: the catalog, and turning LinkError into a clear page."""

    def initialize(self, courses_root: str, static: dict | None = None, **kwargs: Any) -> None:
        self.courses_root = Path(courses_root) if courses_root else None
        self.static = static or {}

    def records(self) -> dict[str, CourseRecord]:
        """Courses from config (Kubernetes) overlaid by the local catalog (one machine)."""
        records = {name: CourseRecord(**record) for name, record in self.static.items()}
        if self.courses_root is not None:
            records.update(load_catalog(self.courses_root))
        return records

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Our 404s list the courses one may open: use error.html, not JupyterHub's 404.html."""
        exc = kwargs.get("exc_info", (None, None))[1]
        html_message = getattr(exc, "jupyterhub_html_message", "")
        if status_code != 404 or not html_message:
            return super().write_error(status_code, **kwargs)
        self.set_header("Content-Type", "text/html")
        page = self.render_template(
            "error.html",
            sync=True,
            status_code=404,
            status_message="Not Found",
            message=str(exc),
            message_html=html_message,
            extra_error_html="",
            exception=exc,
        )
        self.finish(page)

    def course(self, raw_name: str, user: Any) -> CourseRecord:
        """The record of the named course, or a 404 listing the courses `user` may open."""
        records = self.records()
        try:
            record = records.get(parse_course_name(raw_name))
        except LinkError:
            record = None
        if record is None or not record.ready:
            raise self._not_found(raw_name, records, user)
        return record

    def _not_found(self, raw: str, records: dict[str, CourseRecord], user: Any) -> web.HTTPError:
        mine = [r for r in records.values() if r.ready and user is not None and may_open(r.access, user)]
        items = "".join(
            f'<li><a href="{self.hub.base_url}launch/{r.name}">{html.escape(r.title or r.name)}</a></li>'
            for r in sorted(mine, key=lambda r: r.name)
        )
        text = f"There is no course called '{raw[:40]}'."
        listing = f"<p>Courses you can open:</p><ul>{items}</ul>" if items else ""
        return page_error(404, text, f"<p>{html.escape(text)}</p>{listing}")

    def raw_argument(self, name: str, default: str) -> str:
        """A query argument exactly as sent (tornado's get_argument drops control characters)."""
        values = self.request.query_arguments.get(name)
        return values[-1].decode("utf-8", "replace") if values else default

    def path(self, record: CourseRecord, raw: str | None) -> tuple[str, str]:
        """(path to open, note for the user); a bad path is a 400 page."""
        try:
            path = parse_path(raw)
            # On Kubernetes the content lives in the pods: only the path's shape is checked here.
            exists = locate(Path(record.content), path)[0] if record.content else True
        except LinkError as exc:
            raise page_error(exc.status, f"Bad link: {exc}") from None
        if not exists:
            return "", f"'{path}' is not in {record.title or record.name}; opening the course folder."
        return path, ""


class LaunchHandler(CourseHandler):
    """/hub/launch/<course>?path=<file>: log in, start (or reuse) the course server, open the file."""

    @web.authenticated
    async def get(self, raw_name: str) -> None:
        user = self.current_user
        record = self.course(raw_name, user)
        if is_unregistered(record) and not is_temporary(user):
            what = record.repo or record.name
            raise page_error(403, f"{what} is not a course of this hub: it opens only for anonymous readers.")
        if not may_open(record.access, user):
            raise page_error(
                403, f"You are not enrolled in {record.title or record.name}. Ask your instructor to add you."
            )
        path, note = self.path(record, self.raw_argument("path", record.default_notebook or ""))
        target = lab_path(user.name, record.name, path, self.base_url)
        ready = record.name in user.orm_spawners and user.spawners[record.name].ready
        if ready and self.subdomain_host:
            target = user.host + target  # straight to the server's own origin, without the hub's hop
        if not ready:
            spawn_url = f"{self.hub.base_url}spawn/{user.escaped_name}/{record.name}"
            target = f"{spawn_url}?{urlencode({'next': target})}"
        if note:
            self.log.info("launch of %s by %s: %s", record.name, user.name, note)
            self.finish(notice_page(note, target))
        else:
            self.redirect(target)


class TmpLoginHandler(CourseHandler):
    """/hub/tmplogin?course=X&notebook=path: an anonymous temporary user for an open course."""

    def initialize(
        self, courses_root: str, static: dict | None = None, per_minute: int = 10, **kwargs: Any
    ) -> None:
        super().initialize(courses_root, static)
        self.per_minute = per_minute

    async def get(self) -> None:
        record = self.course(self.get_argument("course", ""), self.current_user)
        if record.access != "open":
            raise page_error(403, f"{record.title or record.name} is not open to guests: log in.")
        path, _ = self.path(record, self.raw_argument("notebook", record.default_notebook or ""))
        user = self.current_user
        # A logged-in user opens the (open) course as themselves: a guest link must never swap
        # someone's session for a new guest's (a cross-site page could otherwise log them out).
        if user is None:
            client = limit_key(self.authenticator.client_address(self.request))
            if not limiter("tmplogin", self.per_minute).allow(client):
                raise page_error(429, "Too many new sessions from your address: try again in a minute.")
            user = create_anonymous_user(self, "tmp", [TEMPORARY_GROUP])
            self.set_login_cookie(user)
        query = f"?{urlencode({'path': path})}" if path else ""
        self.redirect(f"{self.hub.base_url}launch/{record.name}{query}")


def launch_handlers(
    courses_root: str,
    per_minute: int,
    static: dict | None = None,
) -> list[tuple[str, type, dict]]:
    """The (pattern, handler, kwargs) triples the authenticator registers under /hub/."""
    common = {"courses_root": courses_root, "static": static or {}}
    return [
        (r"/launch/([^/]+)/?", LaunchHandler, common),
        (r"/tmplogin", TmpLoginHandler, {**common, "per_minute": per_minute}),
    ]
