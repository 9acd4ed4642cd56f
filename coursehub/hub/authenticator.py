"""What coursehub adds to any authenticator: launch-link handlers, and temporary users kept logged in."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from jupyterhub.auth import Authenticator
from jupyterhub.utils import maybe_future
from traitlets import Dict, Integer, Unicode

from coursehub.auth.clientaware import ClientAddressMixin
from coursehub.courses.access import is_temporary
from coursehub.errors import ConfigError


class CoursehubAuthenticatorMixin(ClientAddressMixin):
    """Mixed into the configured authenticator (tmpauthenticator's pattern for /hub/ handlers)."""

    courses_root = Unicode("", help="Folder with the course catalog.").tag(config=True)
    static_courses = Dict(help="Course records given by config (Kubernetes: no local catalog).").tag(
        config=True
    )
    tmp_per_client_per_minute = Integer(10, help="Temporary users per address per minute.").tag(config=True)
    binder = Dict(help="The binder: settings section; empty: no /hub/binder API.").tag(config=True)
    tls_ask_key_file = Unicode("", help="Key file of Caddy's on-demand TLS asks; empty: no route.").tag(
        config=True
    )
    tls_hub_host = Unicode("", help="The hub's public host name (certificates on demand).").tag(config=True)
    course_updates = Dict(
        help="Courses the hub updates itself: webhook secrets, auto_update, the builder's settings."
    ).tag(config=True)

    def get_handlers(self, app: Any) -> list:
        """The base handlers plus /hub/launch, /hub/tmplogin, revocation, the TLS ask, course updates."""
        from coursehub.hub.revoke import revoke_handlers
        from coursehub.hub.status_page import ops_handlers
        from coursehub.hub.tlsask import tls_ask_handlers
        from coursehub.hub.updateroutes import course_update_handlers
        from coursehub.launch.handlers import launch_handlers

        base = [
            *super().get_handlers(app),  # type: ignore[misc]
            *ops_handlers(app, self.courses_root),
            *revoke_handlers(),
            *tls_ask_handlers(self.tls_ask_key_file, self.tls_hub_host),
            *course_update_handlers(self.course_updates),
        ]
        if not (self.courses_root or self.static_courses):
            return base
        from coursehub.launch.binder.handlers import binder_handlers

        per_minute = self.tmp_per_client_per_minute
        binder = binder_handlers(self.courses_root, self.binder, self.static_courses) if self.binder else []
        return [*base, *launch_handlers(self.courses_root, per_minute, self.static_courses), *binder]

    async def refresh_user(self, user: Any, handler: Any = None) -> Any:
        """Temporary users have no account to re-check: they stay valid until culled."""
        if is_temporary(user):
            return True
        return await maybe_future(super().refresh_user(user, handler))  # type: ignore[misc]


def resolve_authenticator(name: str) -> type[Authenticator]:
    """An authenticator class from an entry-point name ('github') or an import path."""
    for ep in entry_points(group="jupyterhub.authenticators"):
        if ep.name == name:
            return ep.load()
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(
            f"auth.type '{name}' is neither an installed authenticator entry point nor an "
            "importable class; install its package or fix the name"
        ) from exc


def with_coursehub(base: type[Authenticator]) -> type[Authenticator]:
    """`base` with coursehub's handlers and temporary-user rules mixed in."""
    if issubclass(base, CoursehubAuthenticatorMixin):
        return base
    return type(f"Coursehub{base.__name__}", (CoursehubAuthenticatorMixin, base), {})
