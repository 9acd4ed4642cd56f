"""What only the hub process can hold, on both backends: the wrapped authenticator and the spawn hook."""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

from coursehub.hub.authenticator import resolve_authenticator, with_coursehub
from coursehub.hub.monitor import pre_spawn_hook
from coursehub.hub.updates import auto_update_on_start


def apply_hub_extensions(c: Config) -> None:
    """Wrap the configured authenticator with coursehub's routes; the spawn hook (metrics, auto_update)."""
    # Whatever authenticator is configured also serves coursehub's launch links.
    c.JupyterHub.authenticator_class = with_coursehub(
        resolve_authenticator(str(c.JupyterHub.authenticator_class))
    )
    c.Spawner.pre_spawn_hook = pre_spawn


def pre_spawn(spawner: Any) -> None:
    """Time the spawn for the metrics; check an auto_update course's upstream in the background."""
    pre_spawn_hook(spawner)
    try:
        auto_update_on_start(spawner)
    except Exception:
        spawner.log.exception("coursehub: auto_update check of %s not started", spawner.name)
