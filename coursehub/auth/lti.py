"""ltiauthenticator's LTI 1.3 and 1.1 authenticators, plus what coursehub adds: the launch lands in the
mapped course and notebook, LMS roles become groups (and optionally admin), and an LTI 1.3 nonce is
accepted once only."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import url_path_join
from ltiauthenticator.lti11.auth import LTI11Authenticator
from ltiauthenticator.lti11.handlers import LTI11AuthenticateHandler
from ltiauthenticator.lti13.auth import LTI13Authenticator
from ltiauthenticator.lti13.constants import LTI13_CUSTOM_CLAIM
from ltiauthenticator.lti13.error import LoginError
from ltiauthenticator.lti13.handlers import LTI13CallbackHandler, LTI13LoginInitHandler
from tornado import web
from traitlets import Bool, Dict, HasTraits, List, Unicode

from .ags import ags_launch
from .ags_page import grades_page_handlers
from .ags_store import save_launch
from .deep_linking import REQUEST as DEEP_LINK_REQUEST
from .deep_linking import STORE, LinkParams, deep_link_handlers, deep_link_request
from .lti_mapping import LaunchTarget, map_launch
from .tool_key import ensure_tool_key, public_jwks

CONTEXT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/context"
ROLES_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/roles"
MESSAGE_TYPE_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/message_type"
_ATTRIBUTE = "_coursehub_launch"
_DEEP_LINK = "_coursehub_deep_link"


def join_groups(db: Any, orm_user: Any, names: list[str]) -> None:
    """Add the user to these groups (creating them); groups from other launches are kept."""
    have = {group.name for group in orm_user.groups}
    for name in names:
        if name in have:
            continue
        group = orm.Group.find(db, name) or orm.Group(name=name)
        db.add(group)
        orm_user.groups.append(group)
    db.commit()


class LaunchMappingMixin(HasTraits):
    """Course mapping settings shared by both LTI versions."""

    contexts = Dict(config=True, help="LMS context id -> coursehub course.")
    label_contexts = Dict(config=True, help="LMS context label -> course (labels trusted for these only).")
    param_courses = List(Unicode(), config=True, help="Courses the custom parameter course_param may name.")
    course_param = Unicode("course", config=True, help="Custom parameter naming the course.")
    notebook_param = Unicode("notebook", config=True, help="Custom parameter naming the notebook.")
    instructor_roles = List(Unicode(), ["Instructor"], config=True, help="Roles meaning instructor.")
    instructors_are_admins = Bool(False, config=True, help="Instructors are JupyterHub admins.")

    def target(self, context: dict, custom: dict, roles: list[str]) -> LaunchTarget:
        """The mapped launch target of these (already verified) launch parameters."""
        return map_launch(
            self.contexts,
            str(context.get("id") or ""),
            str(context.get("label") or ""),
            custom,
            roles,
            self.course_param,
            self.notebook_param,
            self.instructor_roles,
            label_contexts=self.label_contexts,
            param_courses=self.param_courses,
        )

    def remember(self, handler: Any, auth: dict, target: LaunchTarget) -> dict:
        """Keep the target on the handler for after login; instructors may become admins."""
        setattr(handler, _ATTRIBUTE, target)
        if self.instructors_are_admins:
            # Explicit both ways: JupyterHub keeps the last admin flag when it is left out, so an
            # instructor launching later as a learner would stay admin.
            auth["admin"] = target.instructor
        return auth


def finish_launch(handler: Any, user: Any) -> str:
    """Join the launch's groups and return where to go next."""
    target: LaunchTarget | None = getattr(handler, _ATTRIBUTE, None)
    if target is None:
        return handler.get_next_url(user)
    join_groups(handler.db, user.orm_user, target.groups())
    handler.log.info("LTI launch of %s -> %s", user.name, target)
    return target.url(handler.hub.base_url)


def keeps_secure_cookies(handler: Any) -> bool:
    """Whether the browser keeps a Secure cookie from this request: over HTTPS, or on localhost."""
    public_url = handler.settings.get("public_url")
    if (public_url and public_url.scheme == "https") or handler.request.protocol == "https":
        return True
    host = (handler.request.host_name or "").lower().rstrip(".")
    return host == "localhost" or host.endswith(".localhost")  # secure contexts to browsers


class LTI13LoginHandler(LTI13LoginInitHandler):
    """ltiauthenticator's login initiation, with state cookies that come back on the LMS's own POST.

    The platform returns the id_token by a form it auto-submits from its own site (form_post). The
    SameSite=Lax coursehub gives every cookie keeps the state and nonce cookies from that cross-site
    POST ("OAuth state missing from cookies") whenever the LMS is another site than the hub, as a
    hosted LMS is. SameSite=None needs Secure, which browsers keep over HTTPS and on localhost only.
    """

    def _set_oauth_cookie(self, key: str, value: Any) -> None:
        cross_site = {"samesite": "None", "secure": True} if keeps_secure_cookies(self) else {}
        self._set_cookie(key, value, expires_days=1, httponly=True, encrypted=True, **cross_site)


class LTI13LaunchHandler(LTI13CallbackHandler):
    """ltiauthenticator's callback, landing in the mapped course (or, to deep link, the notebook picker)."""

    async def redirect_to_next_url(self, user: Any) -> None:
        target = finish_launch(self, user)
        ident = getattr(self, _DEEP_LINK, None)
        self.redirect(url_path_join(self.hub.base_url, "lti13", "deeplink", ident) if ident else target)


class ToolJWKSHandler(BaseHandler):
    """The tool's public key set, which the platform fetches to check its token requests (AGS)."""

    def initialize(self, key_file: str) -> None:
        self.key_file = key_file

    def check_xsrf_cookie(self) -> None:
        return  # GET only, public data

    def get(self) -> None:
        if not self.key_file:
            raise web.HTTPError(404, "This hub has no LTI tool key.")
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "max-age=300")
        self.finish(json.dumps(public_jwks(ensure_tool_key(Path(self.key_file)))))


class LTI13CourseAuthenticator(LaunchMappingMixin, LTI13Authenticator):
    """LTI 1.3 with course mapping and single-use nonces; AGS endpoints of launches are kept."""

    login_handler = LTI13LoginHandler
    callback_handler = LTI13LaunchHandler
    ags_store = Unicode("", config=True, help="SQLite file keeping launches for grade posts; empty: none.")
    tool_key_file = Unicode("", config=True, help="The tool's private key (PEM), published at lti13/jwks.")

    def get_handlers(self, app: Any) -> list:
        jwks = (url_path_join("", "lti13", "jwks"), ToolJWKSHandler, {"key_file": self.tool_key_file})
        params = LinkParams(self.notebook_param, self.course_param, tuple(self.param_courses))
        # courses_root is coursehub's mixin's (hub/authenticator.py), present on the class the hub runs.
        courses_root = str(getattr(self, "courses_root", "") or "")
        key = self.tool_key_file
        deep_links = deep_link_handlers(key, courses_root, params) if key else []
        return [*super().get_handlers(app), jwks, *grades_page_handlers(self.ags_store), *deep_links]

    # nonce -> expiry; ltiauthenticator checks the nonce against a cookie, which a replay can carry too.
    _seen_nonces: dict[str, float] = {}

    async def authenticate(self, handler: Any, data: dict | None = None) -> dict:
        claims = data or {}
        self._use_nonce(str(claims.get("nonce") or ""), float(claims.get("exp") or 0))
        auth = await super().authenticate(handler, claims)
        target = self.target(
            claims.get(CONTEXT_CLAIM) or {},
            claims.get(LTI13_CUSTOM_CLAIM) or {},
            claims.get(ROLES_CLAIM) or [],
        )
        user = self.normalize_username(str(auth["name"]))
        self._keep_ags(user, target, claims)
        self._deep_link(handler, user, target, claims)
        return self.remember(handler, auth, target)

    def _deep_link(self, handler: Any, user: str, target: LaunchTarget, claims: dict) -> None:
        """A deep linking request of the course's staff: keep it for the picker page; others are refused."""
        if claims.get(MESSAGE_TYPE_CLAIM) != DEEP_LINK_REQUEST:
            return
        if not (target.course and target.staff and self.tool_key_file):
            raise LoginError("only a mapped course's instructors and TAs choose its notebooks from the LMS")
        try:
            request = deep_link_request(user, target.course, claims)
        except ValueError as exc:
            raise LoginError(str(exc)) from None
        assert request is not None
        setattr(handler, _DEEP_LINK, STORE.add(request))

    def _keep_ags(self, user: str, target: LaunchTarget, claims: dict) -> None:
        """Keep the launch's AGS endpoints for this user and course (latest launch wins)."""
        launch = ags_launch(user, target.course, claims) if target.course and self.ags_store else None
        if launch is None:
            return
        try:
            save_launch(Path(self.ags_store), launch)
        except Exception:
            # The login itself must not fail for this; staff see the student as skipped at push time.
            self.log.exception("coursehub: could not keep the AGS endpoints of %s's launch", user)

    def _use_nonce(self, nonce: str, expires: float) -> None:
        now = time.time()
        for old in [n for n, t in self._seen_nonces.items() if t < now]:
            del self._seen_nonces[old]
        if not nonce or nonce in self._seen_nonces:
            raise LoginError("this launch was already used (replayed nonce): launch again from the LMS")
        self._seen_nonces[nonce] = max(expires, now + 600)


class LTI11LaunchHandler(LTI11AuthenticateHandler):
    """ltiauthenticator's LTI 1.1 launch, landing in the mapped course."""

    async def post(self) -> None:
        user = await self.login_user()
        if user is None:
            raise web.HTTPError(403, "LTI launch refused")
        self.redirect(finish_launch(self, user))


class LTI11CourseAuthenticator(LaunchMappingMixin, LTI11Authenticator):
    """LTI 1.1 with course mapping (its validator already rejects replayed nonces)."""

    def get_handlers(self, app: Any) -> list:
        return [
            (path, LTI11LaunchHandler if path == "/lti/launch" else h)
            for path, h in super().get_handlers(app)
        ]

    async def authenticate(self, handler: Any, data: dict | None = None) -> dict:
        auth = await super().authenticate(handler, data)
        args = auth.get("auth_state") or {}
        custom = {k.removeprefix("custom_"): v for k, v in args.items() if k.startswith("custom_")}
        context = {"id": args.get("context_id"), "label": args.get("context_label")}
        roles = str(args.get("roles") or "").split(",")
        return self.remember(handler, auth, self.target(context, custom, roles))
