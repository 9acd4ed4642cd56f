"""The `binder:` section -> hub config: the API's settings for the handlers, and the culler of its users."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..settings import Settings

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
    command = [
        python,
        "-m",
        "jupyterhub_idle_culler",
        "--cull-users=true",
        "--remove-named-servers=true",
        f"--timeout={binder.idle_timeout}",
        f"--max-age={binder.max_age}",
        f"--cull-every={min(60, binder.idle_timeout // 2)}",
    ]
    scopes = [f"{scope}!group={BINDER_GROUP}" for scope in [*CULLER_SCOPES, "admin:users"]]
    return (
        {"name": BINDER_CULLER, "command": command},
        {"name": BINDER_CULLER, "scopes": scopes, "services": [BINDER_CULLER]},
    )
