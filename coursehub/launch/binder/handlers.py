"""BinderHub's API on the hub: /hub/binder/build/<provider>/<spec> (event stream) and /hub/binder/v2/...

Thin handlers over binder_spec (parsing), binder_limits (quotas, CORS), guests (rates) and binder_launch
(which course a request means, and the anonymous user that runs it).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import unquote, urlencode

from tornado import web

from coursehub.clientaddr import limit_key
from coursehub.courses.access import is_temporary
from coursehub.launch.binder.build import build_repository
from coursehub.launch.binder.launch import Launch, LaunchRefused, is_unregistered, resolve_launch
from coursehub.launch.binder.limits import origin_allowed
from coursehub.launch.binder.spec import (
    BinderSpecError,
    join_server_url,
    parse_build_path,
    parse_urlpath,
)
from coursehub.launch.guests import limiter
from coursehub.launch.handlers import CourseHandler, page_error

KEEPALIVE_SECONDS = 25
# Shared by every request of this hub: launches per client address.


class BinderHandler(CourseHandler):
    """Shared by both routes: settings, CORS, rate limits and the request's spec."""

    def initialize(self, courses_root: str, static: dict | None = None, **kwargs: Any) -> None:
        super().initialize(courses_root, static)
        self.binder: dict = kwargs["binder"]
        self.set_default_headers()

    def check_xsrf_cookie(self) -> None:
        """Cross-origin GETs from textbook pages carry no hub cookie, and change nothing of anyone's."""

    def set_default_headers(self) -> None:
        """The hub's security headers, plus CORS for the origins the admin allowed."""
        super().set_default_headers()
        # tornado calls this before initialize() too, and again when it clears headers on errors
        origin = self.request.headers.get("Origin", "")
        if hasattr(self, "binder") and origin_allowed(origin, self.binder.get("allowed_origins", [])):
            self.set_header("Access-Control-Allow-Origin", origin)
            self.set_header("Access-Control-Allow-Headers", "accept, cache-control, last-event-id")
            self.set_header("Access-Control-Allow-Methods", "GET, OPTIONS")
        self.set_header("Vary", "Origin")

    def options(self, *args: Any) -> None:
        """CORS preflight: the headers above say everything."""
        self.set_status(204)
        self.finish()

    def spec_from_path(self, route: str, provider: str):
        """The BinderSpec of this request, from the raw (still percent-encoded) path."""
        prefix = f"{self.hub.base_url}binder/{route}/{provider}/"
        raw = self.request.path[len(prefix) :] if self.request.path.startswith(prefix) else ""
        return parse_build_path(provider, raw)

    def rate_limit(self) -> None:
        """LaunchRefused when this client asked for too many launches in the last minute."""
        per_minute = int(self.binder.get("per_client_per_minute", 60))
        if not limiter("binder", per_minute).allow(limit_key(self.client_address())):
            raise LaunchRefused("Too many launches from your address: try again in a minute.", 429)

    def client_address(self) -> str:
        """The reader's address (coursehub.clientaddr: through our proxy, past trusted front proxies)."""
        return self.authenticator.client_address(self.request)

    def public_base(self) -> str:
        """scheme://host the reader reached the hub at (or hub.public_url)."""
        configured = self.binder.get("public_url") or ""
        if configured:
            return configured.rstrip("/")
        return f"{self.request.protocol}://{self.request.host}"


class BuildHandler(BinderHandler):
    """GET /hub/binder/build/<provider>/<spec>: BinderHub's event stream, ending in ready or failed."""

    async def get(self, provider: str, _spec: str) -> None:
        if "text/event-stream" not in self.request.headers.get("Accept", ""):
            raise web.HTTPError(400, "Requests to /build must ask for text/event-stream (EventSource)")
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        keepalive = asyncio.ensure_future(self._keepalive())
        try:
            await self._build(provider)
        finally:
            keepalive.cancel()

    async def _build(self, provider: str) -> None:
        try:
            spec = self.spec_from_path("build", provider)
            self.rate_limit()
            await self.emit({"phase": "waiting", "message": "Finding the course for this repository…\n"})
            launch = await resolve_launch(self, spec, self.emit, build_repository)
            await self.emit({"phase": "launching", "message": "Starting your server…\n"})
            ready = await launch.start_server(self, self.emit)
        except (BinderSpecError, LaunchRefused) as exc:
            await self._fail(str(exc))
            return
        except Exception:
            # The reader's page waits on this stream: tell it, rather than leave it hanging.
            self.log.exception("binder launch of %s failed", self.request.path)
            await self._fail("The launch failed on the hub; its admin can find why in the hub's log.")
            return
        await self.emit({"phase": "ready", **ready, **self._identity(spec, launch)})

    def _identity(self, spec: Any, launch: Launch) -> dict:
        """The ready event's fields that name the request, as BinderHub fills them."""
        host = f"{self.public_base()}{self.hub.base_url}binder/"
        ref_url = spec.repo_url + (f"/tree/{spec.ref}" if "github.com" in spec.repo_url else "")
        return {
            "image": launch.image,
            "repo_url": spec.repo_url,
            "binder_ref_url": ref_url,
            "binder_launch_host": host,
            "binder_request": spec.request,
            "binder_persistent_request": spec.request,
            "message": f"Server ready at {launch.server_path}\n",
        }

    async def _fail(self, message: str) -> None:
        try:
            await self.emit({"phase": "failed", "message": f"{message}\n"})
        except LaunchRefused:
            pass  # the reader has gone

    async def emit(self, event: dict) -> None:
        """Send one event (the client may have gone: then stop quietly)."""
        try:
            self.write(f"data: {json.dumps(event)}\n\n")
            await self.flush()
        except Exception as exc:  # tornado raises StreamClosedError subclasses here
            raise LaunchRefused(f"client went away: {exc}") from exc

    async def _keepalive(self) -> None:
        """Comment lines keep proxies from closing a stream that waits for a long build."""
        while True:
            await asyncio.sleep(KEEPALIVE_SECONDS)
            try:
                self.write(":keepalive\n\n")
                await self.flush()
            except Exception:
                return


class V2Handler(BinderHandler):
    """GET /hub/binder/v2/<provider>/<spec>?urlpath=...: a browser launch (Jupyter Book buttons)."""

    async def get(self, provider: str, _spec: str) -> None:
        # Only a page the reader opens may log them in: an <img> or <iframe> elsewhere pointing here
        # must not swap anyone's session for an anonymous one.
        if self.request.headers.get("Sec-Fetch-Dest", "document") != "document":
            raise page_error(400, "Binder links open in the browser window, not embedded in a page.")
        try:
            spec = self.spec_from_path("v2", provider)
            urlpath = parse_urlpath({k: self.raw_argument(k, "") for k in ("urlpath", "labpath", "filepath")})
            self.rate_limit()
            launch = await resolve_launch(self, spec, None, build_repository)
            user = self.current_user
            if user is not None and not is_temporary(user) and is_unregistered(launch.record):
                # Not a course: its code must never run in someone's account, with their home.
                raise LaunchRefused(
                    f"{spec.repo_url} is not a course of this hub: it opens only as an anonymous "
                    "reader. Log out (or use a private browser window) and open the link again.",
                    409,
                )
            if user is not None and not is_temporary(user):
                # Logged-in users keep their account: their own (persistent) server of the course.
                self.redirect(course_launch_url(self.hub.base_url, launch.course, urlpath))
                return
            user = launch.create_user(self)
        except (BinderSpecError, LaunchRefused) as exc:
            raise page_error(getattr(exc, "status", 400), f"Cannot launch this repository: {exc}") from None
        # The reader becomes this anonymous user in the browser; JupyterHub's own spawn page shows
        # the progress and then opens the path (its OAuth gives the server its cookie).
        self.set_login_cookie(user)
        target = join_server_url(launch.server_path, urlpath)
        self.log.info("binder v2 launch of %s for %s", spec.request, user.name)
        spawn = f"{self.hub.base_url}spawn/{user.escaped_name}/{launch.course}"
        self.redirect(f"{spawn}?{urlencode({'next': target})}")


def course_launch_url(hub_base: str, course: str, urlpath: str) -> str:
    """/hub/launch/<course>?path=<file> for a Binder urlpath (lab/tree/<file> or tree/<file>)."""
    path = unquote(urlpath.removeprefix("lab/").removeprefix("tree/")) if "tree/" in urlpath else ""
    return f"{hub_base}launch/{course}" + (f"?{urlencode({'path': path})}" if path else "")


def binder_handlers(
    courses_root: str, binder: dict, static: dict | None = None
) -> list[tuple[str, type, dict]]:
    """The (pattern, handler, kwargs) triples the authenticator registers under /hub/binder."""
    kwargs = {"courses_root": courses_root, "static": static or {}, "binder": binder}
    return [
        (r"/binder/build/([^/]+)/(.+)", BuildHandler, kwargs),
        (r"/binder/v2/([^/]+)/(.+)", V2Handler, kwargs),
    ]
