"""What only the hub process can hold, on both backends: the wrapped authenticator and the spawn hook."""

from __future__ import annotations

from traitlets.config import Config

from coursehub.hub.authenticator import resolve_authenticator, with_coursehub
from coursehub.hub.monitor import pre_spawn_hook


def apply_hub_extensions(c: Config) -> None:
    """Wrap the configured authenticator with coursehub's routes; time spawns for the metrics."""
    # Whatever authenticator is configured also serves coursehub's launch links.
    c.JupyterHub.authenticator_class = with_coursehub(
        resolve_authenticator(str(c.JupyterHub.authenticator_class))
    )
    c.Spawner.pre_spawn_hook = pre_spawn_hook
