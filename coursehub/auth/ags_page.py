"""/hub/coursehub/grades/<course>: the course's staff (and admins) see how its LMS score posts went."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

from coursehub.courses.access import may_update

from .ags_store import posts

TEMPLATE = "coursehub-grades.html"
ROUTE = r"/coursehub/grades/([a-z][a-z0-9-]{0,29})"  # under /hub/; settings.base.COURSE_NAME


def is_staff(user: Any, course: str) -> bool:
    """Admins and the course's staff, whether the role is theirs or their group's (LTI TAs)."""
    return may_update(user, course)


class GradesPageHandler(BaseHandler):
    """Failed and pending posts first, with the platform's reason; skipped students and why."""

    def initialize(self, store: str) -> None:
        self.store = store

    @web.authenticated
    async def get(self, course: str) -> None:
        if not is_staff(self.current_user, course):
            raise web.HTTPError(403, "Only the course's staff and hub admins see its grade posts.")
        shown = posts(Path(self.store), course) if self.store else []
        counts = {s: sum(p.status == s for p in shown) for s in ("failed", "pending", "skipped", "posted")}
        html = await self.render_template(
            TEMPLATE,
            course=course,
            posts=shown,
            counts=counts,
            when=lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t)),
        )
        self.finish(html)


def grades_page_handlers(store: str) -> list[tuple[str, type, dict]]:
    """The page's route, when launches are kept."""
    return [(ROUTE, GradesPageHandler, {"store": store})] if store else []
