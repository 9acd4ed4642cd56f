"""The local backend: SandboxSpawner on one machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..settings import Settings

if TYPE_CHECKING:
    from .core import Runtime


def apply_spawner(settings: Settings, runtime: Runtime, c: Config) -> None:
    """SandboxSpawner with accounts, sandbox paths and per-server limits."""
    sandbox, limits = settings.sandbox, settings.limits
    c.JupyterHub.spawner_class = "sandbox"
    s = c.SandboxSpawner
    s.cmd = [str(runtime.user_env / "bin" / "jupyterhub-singleuser")]
    s.environment_path = str(runtime.user_env)
    s.home_root = str(sandbox.home_root)
    s.user_prefix = sandbox.user_prefix
    s.mem_limit = limits.memory
    s.cpu_limit = limits.cpu
    s.pids_limit = limits.pids
    s.log_dir = str(runtime.paths.logs)
    s.courses_root = str(runtime.paths.courses)
    s.readonly_paths = [str(p) for p in sandbox.readonly_paths]
    # Users must never see the hub's database, cookie secret or accounts.
    s.hidden_paths = [str(runtime.paths.root)] + [str(p) for p in sandbox.hidden_paths]
    s.courses = {
        course.name: {
            "title": course.title,
            "repo": course.repo,
            "default_notebook": course.default_notebook or "",
            "limits": settings.course_limits(course).model_dump(),
        }
        for course in settings.courses
    }
    s.default_course = settings.courses[0].name if settings.courses else ""
