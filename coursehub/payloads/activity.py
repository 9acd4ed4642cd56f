"""coursehub_activity: installed in every environment, so that a busy kernel keeps its server alive.

jupyterhub-singleuser reports the server's last activity to the hub, and the hub's idle culler stops
servers idle for longer than culler.timeout. A kernel computing for hours without printing sends no
message, so its server looked idle and was stopped mid-computation. This Jupyter Server extension
(enabled by SandboxSpawner's arguments) marks the server active every few seconds while any of its
kernels is busy: Jupyter Server counts every `*_last_activity` web-app setting as activity.
Imports nothing of coursehub: it runs in the server, from the environment's site-packages.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

CHECK_SECONDS = 10
SETTING = "coursehub_busy_kernels_last_activity"


def any_busy(states: Iterable[str]) -> bool:
    """True when a kernel computes (pure)."""
    return any(state == "busy" for state in states)


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "coursehub_activity"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from tornado.ioloop import PeriodicCallback

    manager, settings = serverapp.kernel_manager, serverapp.web_app.settings

    def mark() -> None:
        kernels = [manager.get_kernel(kernel_id) for kernel_id in manager.list_kernel_ids()]
        if any_busy(getattr(kernel, "execution_state", "") for kernel in kernels):
            settings[SETTING] = datetime.now(UTC)

    PeriodicCallback(mark, CHECK_SECONDS * 1000).start()
