"""LTI Deep Linking: an instructor picks a course notebook from inside the LMS.

An LtiDeepLinkingRequest launch by the course's staff goes to /hub/lti13/deeplink/<id>, which lists the
course's notebooks; the one chosen comes back to the platform as a signed LtiDeepLinkingResponse whose
content item is an ltiResourceLink with the notebook in its custom parameters, so its later launches land
on that notebook through the usual course mapping. Requests in progress are kept in the hub's memory
for 30 minutes, bound to the user who launched.
"""

from __future__ import annotations

import html
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from jupyterhub.handlers import BaseHandler
from tornado import web

from .ags import DEPLOYMENT_CLAIM
from .tool_key import ensure_tool_key, key_id

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"
REQUEST = "LtiDeepLinkingRequest"
ROUTE = r"/lti13/deeplink/([A-Za-z0-9_-]{20,64})"  # under /hub/
LIFETIME = 1800
MAX_NOTEBOOKS = 500


@dataclass(frozen=True)
class DeepLinkRequest:
    """What answering one deep linking request needs."""

    user: str
    course: str
    client_id: str
    issuer: str
    deployment_id: str
    return_url: str
    data: str | None
    expires: float


def deep_link_request(user: str, course: str, claims: Mapping[str, Any]) -> DeepLinkRequest | None:
    """The deep linking part of a verified id_token, or None for another message type."""
    if claims.get(LTI + "message_type") != REQUEST:
        return None
    settings = claims.get(DL + "deep_linking_settings") or {}
    return_url = str(settings.get("deep_link_return_url") or "") if isinstance(settings, Mapping) else ""
    if not return_url.startswith(("https://", "http://")):
        raise ValueError("the deep linking request has no deep_link_return_url")
    accepted = settings.get("accept_types") or ["ltiResourceLink"]
    if "ltiResourceLink" not in accepted:
        raise ValueError("the platform does not accept ltiResourceLink content items here")
    aud = claims.get("aud")
    return DeepLinkRequest(
        user=user,
        course=course,
        client_id=str(claims.get("azp") or (aud[0] if isinstance(aud, list) and aud else aud) or ""),
        issuer=str(claims.get("iss") or ""),
        deployment_id=str(claims.get(DEPLOYMENT_CLAIM) or ""),
        return_url=return_url,
        data=str(settings["data"]) if settings.get("data") is not None else None,
        expires=time.time() + LIFETIME,
    )


def response_claims(request: DeepLinkRequest, items: list[dict[str, Any]], now: int) -> dict[str, Any]:
    """The LtiDeepLinkingResponse's claims (the tool is the issuer, the platform the audience)."""
    claims: dict[str, Any] = {
        "iss": request.client_id,
        "aud": request.issuer,
        "iat": now,
        "exp": now + 300,
        "nonce": secrets.token_urlsafe(16),
        LTI + "message_type": "LtiDeepLinkingResponse",
        LTI + "version": "1.3.0",
        DEPLOYMENT_CLAIM: request.deployment_id,
        DL + "content_items": items,
    }
    if request.data is not None:
        claims[DL + "data"] = request.data
    return claims


def notebook_item(url: str, notebook: str, custom: dict[str, str]) -> dict[str, Any]:
    """An ltiResourceLink content item that opens `notebook` (custom parameters carry it)."""
    return {"type": "ltiResourceLink", "title": notebook, "url": url, "custom": custom}


def list_notebooks(content: Path) -> list[str]:
    """The course's notebooks (relative paths, sorted), hidden folders and symlinks left out."""
    found: list[str] = []
    if not content.is_dir():
        return found
    for folder, dirs, files in os.walk(content):  # os.walk does not follow symlinked folders
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            if name.endswith(".ipynb") and not name.startswith(".") and not path.is_symlink():
                found.append(str(path.relative_to(content)))
                if len(found) >= MAX_NOTEBOOKS:
                    return found
    return found


@dataclass(frozen=True)
class LinkParams:
    """The custom parameter names the course mapping reads (settings of the authenticator)."""

    notebook_param: str
    course_param: str
    param_courses: tuple[str, ...]


class DeepLinkStore:
    """Deep linking requests in progress, by id (the hub's memory; one hub process)."""

    def __init__(self) -> None:
        self.pending: dict[str, DeepLinkRequest] = {}

    def add(self, request: DeepLinkRequest) -> str:
        now = time.time()
        for old in [k for k, r in self.pending.items() if r.expires < now]:
            del self.pending[old]
        ident = secrets.token_urlsafe(24)
        self.pending[ident] = request
        return ident

    def get(self, ident: str, user: str) -> DeepLinkRequest:
        request = self.pending.get(ident)
        if request is None or request.user != user or request.expires < time.time():
            raise web.HTTPError(404, "No such deep linking request: start again from the LMS.")
        return request


STORE = DeepLinkStore()


def auto_post(action: str, fields: dict[str, str]) -> str:
    """A page whose form posts `fields` to `action` by itself (the LTI way back to the platform)."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<!doctype html><form id="lti-return" method="post" action="{html.escape(action)}">{inputs}'
        '<noscript><button type="submit">Continue</button></noscript></form>'
        '<script>document.getElementById("lti-return").submit()</script>'
    )


class DeepLinkHandler(BaseHandler):
    """GET: the course's notebooks to choose from; POST (with the XSRF token): the signed answer."""

    def initialize(self, key_file: str, courses_root: str, params: LinkParams) -> None:
        self.key_file, self.courses_root, self.params = key_file, courses_root, params

    def notebooks(self, course: str) -> list[str]:
        from coursehub.courses.catalog import load_catalog

        record = load_catalog(Path(self.courses_root)).get(course) if self.courses_root else None
        return list_notebooks(Path(record.content)) if record and record.content else []

    @web.authenticated
    async def get(self, ident: str) -> None:
        request = STORE.get(ident, self.current_user.name)
        html_page = await self.render_template(
            "coursehub-deeplink.html", course=request.course, notebooks=self.notebooks(request.course)
        )
        self.finish(html_page)

    @web.authenticated
    async def post(self, ident: str) -> None:
        request = STORE.get(ident, self.current_user.name)
        notebook = self.get_body_argument("notebook", "")
        if notebook not in self.notebooks(request.course):
            raise web.HTTPError(400, "Choose one of the course's notebooks.")
        url = f"{self.request.protocol}://{self.request.host}{self.hub.base_url}"
        custom = {self.params.notebook_param: notebook}
        if request.course in self.params.param_courses:  # else the LMS context maps the course
            custom[self.params.course_param] = request.course
        key = ensure_tool_key(Path(self.key_file))
        claims = response_claims(request, [notebook_item(url, notebook, custom)], int(time.time()))
        token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": key_id(key)})
        STORE.pending.pop(ident, None)
        self.log.info("LTI deep link by %s: %s of %s", request.user, notebook, request.course)
        self.finish(auto_post(request.return_url, {"JWT": token}))


def deep_link_handlers(key_file: str, courses_root: str, params: LinkParams) -> list[tuple[str, type, dict]]:
    """The deep linking page's route."""
    return [(ROUTE, DeepLinkHandler, {"key_file": key_file, "courses_root": courses_root, "params": params})]
