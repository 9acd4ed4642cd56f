"""The hub's routes that update a course: the push webhook (hub/webhook.py) and the staff's button.

POST /hub/coursehub/update/<course>: a logged-in admin, or a member of the course's staff role, starts
the course update (hub/updates.py) from the home page. A cookie-authenticated POST needs JupyterHub's
XSRF token, so another site cannot press the button for them; like every JupyterHub page handler it
accepts no API token (a server's token cannot act for its staff member); anyone else gets 403.
"""

from __future__ import annotations

import json

from jupyterhub.handlers import BaseHandler
from tornado import web

from coursehub.courses.access import may_update
from coursehub.hub.updates import CourseUpdater, configure_updater
from coursehub.hub.webhook import webhook_handlers

UPDATE_ROUTE = r"/coursehub/update/([^/]+)"  # under /hub/


class StaffUpdateHandler(BaseHandler):
    """202 and an update for the course's staff and admins; 404 for no such course; 403 for others."""

    def initialize(self, updater: CourseUpdater) -> None:
        self.updater = updater

    @web.authenticated
    async def post(self, name: str) -> None:
        user = self.current_user
        if not any(course.name == name for course in self.updater.settings.courses):
            raise web.HTTPError(404, "No such course.")
        if not may_update(user, name):
            raise web.HTTPError(403, "Only the course's staff and hub admins update its content.")
        state = self.updater.request(name, f"{user.name} on the home page")
        self.set_status(202)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"course": name, "update": state}))


def course_update_handlers(course_updates: dict) -> list[tuple[str, type, dict]]:
    """The button's route and, for courses with a secret, the webhook's; none without the builder's config."""
    updater = configure_updater(course_updates)
    if updater is None:
        return []
    return [(UPDATE_ROUTE, StaffUpdateHandler, {"updater": updater}), *webhook_handlers(course_updates)]
