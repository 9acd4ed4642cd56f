"""Settings -> JupyterHub traitlets Config: pure functions, no I/O."""

from coursehub.hubconfig.pipeline import build
from coursehub.hubconfig.runtime import Runtime

__all__ = ["Runtime", "build"]
