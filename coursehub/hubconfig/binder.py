"""The `binder:` section -> hub config: the API's settings for the handlers, and the culler of its users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..settings import Settings
from .cullers import group_culler

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime

from coursehub.names import BINDER_CULLER, BINDER_GROUP, CULLER_SCOPES  # noqa: F401 (re-exported)


def apply_binder(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Hand the section to the /hub/binder handlers and cull its users by idleness and age."""
    binder = settings.binder
    if not binder.enabled:
        c.Authenticator.binder = {}
        return
    c.Authenticator.binder = {
        **binder.model_dump(),
        "public_url": settings.hub.public_url or "",
        "python": str(settings.sandbox.python or ""),
        "state_dir": str(runtime.paths.root),
    }
    service, role = binder_culler(settings, runtime.python)
    c.JupyterHub.services = [*c.JupyterHub.get("services", []), service]
    c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), role]


def binder_culler(settings: Settings, python: str) -> tuple[dict, dict]:
    """jupyterhub-idle-culler limited to the Binder group: deletes idle or old anonymous users."""
    binder = settings.binder
    every = min(60, binder.idle_timeout // 2)
    return group_culler(BINDER_CULLER, BINDER_GROUP, python, binder.idle_timeout, every, binder.max_age)
