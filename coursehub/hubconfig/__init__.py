"""Settings -> JupyterHub traitlets Config: pure functions, no I/O."""

from .core import Runtime, build

__all__ = ["Runtime", "build"]
