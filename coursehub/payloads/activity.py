"""coursehub_activity: installed in every environment, so that idleness means what a student did.

jupyterhub-singleuser reports the server's last activity to the hub, and the hub's idle culler stops
servers idle for longer than culler.timeout. This Jupyter Server extension (enabled by SandboxSpawner's
arguments) makes that activity honest both ways:
- a kernel computing for hours without printing sends no message, so its server looked idle and was
  stopped mid-computation: the server is marked active every few seconds while any kernel is busy
  (Jupyter Server counts every `*_last_activity` web-app setting as activity);
- an open JupyterLab polls the server (kernels, sessions, terminals every 10 s) without Jupyter
  Server's `no_track_activity` flag, and saves its layout on its own, so a forgotten tab kept its
  server forever: reads (GET, HEAD) and layout saves no longer count, only what changes something
  (saving a file, starting a kernel, running a cell, a terminal);
- `GET <base>/coursehub/activity` tells JupyterLab (coursehub's cull-warning extension) when the culler
  will stop the server, from the hub's own record of its last activity: a banner warns the student.
Imports nothing of coursehub: it runs in the server, from the environment's site-packages.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

CHECK_SECONDS = 10
SETTING = "coursehub_busy_kernels_last_activity"
STUDENT_SETTING = "coursehub_student_last_activity"
# Set by SandboxSpawner: the idle seconds after which a culler stops (or deletes) this server, how
# long before that JupyterLab warns, and whether the files go too (temporary users).
ENV_TIMEOUT = "COURSEHUB_CULL_TIMEOUT"
ENV_WARNING = "COURSEHUB_CULL_WARNING"
ENV_DELETES = "COURSEHUB_CULL_DELETES"
ROUTE = "coursehub/activity"
READS = frozenset({"GET", "HEAD", "OPTIONS"})
# Writes JupyterLab makes on its own: it saves its layout (the workspace) every few seconds while
# anything in it changes, an open tab with nobody at it included.
WORKSPACES = "/lab/api/workspaces"


def any_busy(states: Iterable[str]) -> bool:
    """True when a kernel computes (pure)."""
    return any(state == "busy" for state in states)


def warn_seconds(timeout: int, warn_before: int | None = None) -> int:
    """Seconds before the stop the warning shows: the setting, else min(5 min, timeout/4) (pure)."""
    if timeout <= 0:
        return 0
    if warn_before is None:
        return min(300, timeout // 4)
    return min(warn_before, timeout)


def cull_warning(last_activity: datetime | None, now: datetime, timeout: int, warn: int) -> dict[str, Any]:
    """What JupyterLab shows, from the hub's last activity of the server and the culler's timeout (pure).

    `poll_seconds` says when to ask again: the hub's last activity only ever moves later, so until the
    warning is due nothing can make it due sooner.
    """
    if timeout <= 0 or warn <= 0 or last_activity is None:
        return {"enabled": False, "warn": False, "poll_seconds": 300}
    stop_at = last_activity + timedelta(seconds=timeout)
    left = max(0, int((stop_at - now).total_seconds()))
    warning = left <= warn
    poll = min(30, max(5, warn // 10)) if warning else min(300, max(5, left - warn))
    return {
        "enabled": True,
        "warn": warning,
        "seconds_left": left,
        "stop_at": stop_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "timeout": timeout,
        "poll_seconds": poll,
    }


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 time from the hub's API, as an aware UTC datetime (pure)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _env_int(name: str) -> int:
    try:
        return int(os.environ.get(name, "0"))
    except ValueError:
        return 0


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "coursehub_activity"}]


def _count_only_changes() -> None:
    """Authenticated reads no longer count as activity; everything else still does."""
    from jupyter_server.base.handlers import APIHandler

    # Jupyter Server has a per-handler switch (`_track_activity`) and a query flag, but no setting,
    # and JupyterLab's pollers use neither: the one place all API requests pass is this method.
    track = APIHandler.update_api_activity
    if getattr(track, "coursehub_reads_ignored", False):
        return

    def update_api_activity(self: Any) -> None:
        if self.request.method not in READS and WORKSPACES not in self.request.path:
            track(self)

    update_api_activity.coursehub_reads_ignored = True  # type: ignore[attr-defined]
    APIHandler.update_api_activity = update_api_activity  # type: ignore[method-assign]


def _hub_request(path: str, method: str = "GET", body: dict | None = None) -> Any:
    """A request to the hub's API with this server's own token (its scopes are SandboxSpawner's)."""
    from tornado.httpclient import HTTPRequest

    return HTTPRequest(
        os.environ["JUPYTERHUB_API_URL"].rstrip("/") + path,
        method=method,
        headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"},
        body=None if body is None else json.dumps(body),
        request_timeout=10,
        connect_timeout=5,
    )


def _handler_class() -> type:
    from jupyter_server.base.handlers import APIHandler
    from tornado import web
    from tornado.httpclient import AsyncHTTPClient, HTTPClientError

    class CullWarningHandler(APIHandler):
        """When the hub's culler will stop this server, for JupyterLab's warning banner."""

        # Asking must never be activity, or the warning would keep its server alive for ever.
        _track_activity = False

        @web.authenticated
        async def get(self) -> None:
            await self.answer()

        @web.authenticated
        async def post(self) -> None:
            # A key press or click in JupyterLab (the extension sends at most two a minute, or one
            # at once to dismiss the warning): the student is there, which no server request shows.
            self.settings[STUDENT_SETTING] = datetime.now(UTC)
            await self.answer()

        async def answer(self) -> None:
            timeout = _env_int(ENV_TIMEOUT)
            warn = _env_int(ENV_WARNING)
            self.set_header("Cache-Control", "no-store")
            if timeout <= 0 or warn <= 0 or "JUPYTERHUB_API_URL" not in os.environ:
                self.finish(cull_warning(None, datetime.now(UTC), 0, 0))
                return
            try:
                seen = await self.hub_last_activity()
            except (HTTPClientError, OSError, ValueError, KeyError) as error:
                # No warning rather than a wrong one (a server started before its token could read
                # its own record, the hub restarting): JupyterLab asks again later.
                self.log.warning("coursehub_activity: the hub's last activity is unknown: %s", error)
                seen = None
            answer = cull_warning(seen, datetime.now(UTC), timeout, warn)
            answer["deletes_files"] = os.environ.get(ENV_DELETES) == "1"
            self.finish(answer)

        async def hub_last_activity(self) -> datetime | None:
            """The server's last activity as the hub (and so its culler) has it, told ours first if newer."""
            user = os.environ["JUPYTERHUB_USER"]
            server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
            client = AsyncHTTPClient()
            model = json.loads((await client.fetch(_hub_request(f"/users/{user}"))).body)
            seen = parse_time((model.get("servers") or {}).get(server, {}).get("last_activity"))
            mine = self.serverapp.web_app.last_activity()
            mine = mine if mine.tzinfo else mine.replace(tzinfo=UTC)
            if seen is not None and mine > seen:
                # Activity the hub has not heard of yet (jupyterhub-singleuser reports it only every
                # timeout/10 s): report it now, so that the warning and the culler agree.
                stamp = mine.isoformat().replace("+00:00", "Z")
                body = {"last_activity": stamp, "servers": {server: {"last_activity": stamp}}}
                await client.fetch(_hub_request(f"/users/{user}/activity", "POST", body))
                seen = mine
            return seen

    return CullWarningHandler


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from jupyter_server.utils import url_path_join
    from tornado.ioloop import PeriodicCallback

    manager, settings = serverapp.kernel_manager, serverapp.web_app.settings

    def mark() -> None:
        kernels = [manager.get_kernel(kernel_id) for kernel_id in manager.list_kernel_ids()]
        if any_busy(getattr(kernel, "execution_state", "") for kernel in kernels):
            settings[SETTING] = datetime.now(UTC)

    PeriodicCallback(mark, CHECK_SECONDS * 1000).start()
    _count_only_changes()
    route = url_path_join(serverapp.base_url, ROUTE)
    serverapp.web_app.add_handlers(".*$", [(route, _handler_class())])
