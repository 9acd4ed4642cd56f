"""The `binder:` section -> hub config: the API's settings for the /hub/binder handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..settings import Settings

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime


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
        # Builds of unregistered repositories get the servers' egress policy (courses/buildnet.py).
        "network": settings.network.model_dump(mode="json"),
    }
    # Its culler is with every other service, in hubconfig/services.py.
