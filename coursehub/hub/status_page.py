"""/hub/coursehub/status (page) and /hub/coursehub/status.json, for admins only."""

from __future__ import annotations

import json
import time
from typing import Any

from jupyterhub.handlers import BaseHandler
from tornado import web

from coursehub.hub.monitor import Monitor, get_monitor
from coursehub.hub.status import HubTotals, StatusReport, build_report, render_charts

TEMPLATE = "coursehub-status.html"


class StatusHandler(BaseHandler):
    """Shared: the admin check and the report from the monitor."""

    def initialize(self, monitor: Monitor, **kwargs: Any) -> None:
        self.monitor = monitor

    def require_admin(self) -> None:
        """Only hub admins (or tokens with the admin-ui scope) see others' servers and failures."""
        user = self.current_user
        if user is None or not (getattr(user, "admin", False) or "admin-ui" in self.parsed_scopes):
            raise web.HTTPError(403, "The status page is for hub admins.")

    def report(self) -> StatusReport:
        m = self.monitor
        totals = HubTotals(m.total_users, m.temporary_users, m.spawn_limit)
        return build_report(m.servers, m.history, m.builds, totals, time.time(), m.sampled_at)


class StatusPageHandler(StatusHandler):
    """The page: tables and inline SVG charts, refreshed every 30 s."""

    @web.authenticated
    async def get(self) -> None:
        self.require_admin()
        report = self.report()
        html = await self.render_template(
            TEMPLATE,
            report=report,
            charts=render_charts(report, self.monitor.history),
            fmt_time=_clock,
            fmt_seconds=_seconds,
            fmt_mib=lambda n: f"{n / 1024**2:.0f}",
        )
        self.finish(html)


class StatusJSONHandler(StatusHandler):
    """The same report as JSON, for scripts."""

    @web.authenticated
    def get(self) -> None:
        self.require_admin()
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(self.report().to_dict()))


def _clock(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp)) if timestamp else "–"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def ops_handlers(app: Any, courses_root: str = "") -> list[tuple[str, type, dict]]:
    """Start this hub's monitor and return the (pattern, handler, kwargs) it serves under /hub/."""
    monitor = get_monitor()
    monitor.attach(app, courses_root)
    return [
        (r"/coursehub/status", StatusPageHandler, {"monitor": monitor}),
        (r"/coursehub/status\.json", StatusJSONHandler, {"monitor": monitor}),
    ]
