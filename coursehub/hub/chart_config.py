"""The hub's config on Kubernetes: coursehub's config layered over the chart's (its hub.extraConfig entry)."""

from __future__ import annotations

from traitlets.config import Config

from coursehub.hub.extensions import apply_hub_extensions
from coursehub.kubernetes.values import build_hub_config
from coursehub.settings import Settings


def apply_to_chart_config(c: Config, settings: Settings) -> None:
    """Layer build_hub_config over the chart's config; services and roles are added to."""
    ours = build_hub_config(settings)
    apply_hub_extensions(ours)
    services = ours.JupyterHub.pop("services", [])
    roles = ours.JupyterHub.pop("load_roles", [])
    c.merge(ours)
    if services:
        c.JupyterHub.services = [*c.JupyterHub.get("services", []), *services]
    if roles:
        c.JupyterHub.load_roles = [*c.JupyterHub.get("load_roles", []), *roles]
