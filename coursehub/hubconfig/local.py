"""The local backend: SandboxSpawner on one machine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..launch.home import CourseShelf, FirstCourse, HomeCourses
from ..names import BINDER_GROUP, TEMPORARY_GROUP
from ..settings import Settings
from ..spawner.bwrap import find_bwrap
from ..spawner.netns import hub_net

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime


def apply_spawner(settings: Settings, runtime: Runtime, c: Config) -> None:
    """SandboxSpawner with accounts, sandbox paths and per-server limits."""
    sandbox, limits = settings.sandbox, settings.limits
    c.JupyterHub.spawner_class = "sandbox"
    s = c.SandboxSpawner
    s.environment_path = str(runtime.user_env)
    s.home_root = str(sandbox.home_root)
    s.user_prefix = sandbox.user_prefix
    s.spawn_mode = sandbox.spawn_mode
    # By absolute path: found through the servers' PATH, a course's bin/bwrap would run instead.
    s.bwrap_path = find_bwrap() or ""
    s.max_parallel_starts = sandbox.max_parallel_starts
    s.merge_memory = sandbox.merge_memory
    s.mem_limit = limits.memory
    s.cpu_limit = limits.cpu
    s.pids_limit = limits.pids
    s.disk_limit = limits.disk or 0
    s.project_table = str(runtime.paths.disk_projects)
    s.log_dir = str(runtime.paths.logs)
    s.log_max = sandbox.server_log_max
    if settings.network.isolate:
        net = hub_net(runtime.paths.root, settings.network.subnet)
        s.network_subnet, s.network_tag = str(net.subnet), net.tag
    s.run_dir = str(runtime.paths.run)
    s.courses_root = str(runtime.paths.courses)
    s.sync_script = str(runtime.paths.sync_script)
    s.readonly_paths = [str(p) for p in sandbox.readonly_paths]
    # Users must never see the hub's database, cookie secret or accounts.
    s.hidden_paths = [str(runtime.paths.root)] + [str(p) for p in sandbox.hidden_paths]
    s.course_order = [course.name for course in settings.courses]
    s.grading = {
        course.name: list(course.staff) for course in settings.courses if course.grading == "nbgrader"
    }
    s.state_root = str(runtime.paths.root)
    apply_cull_warning(settings, c)
    # One named server per course, so a student in two courses has two environments.
    c.JupyterHub.allow_named_servers = True
    c.JupyterHub.named_server_limit_per_user = len(settings.courses) + 1
    apply_home(settings, runtime, c)


def apply_cull_warning(settings: Settings, c: Config) -> None:
    """JupyterLab warns before a culler ends a server, counting only what its server reports as activity."""
    culler, s = settings.culler, c.SandboxSpawner
    s.cull_timeout = culler.timeout if culler.enabled else 0
    s.cull_warning = -1 if culler.warn_before is None else culler.warn_before
    # The cullers that delete guests with their files (hubconfig/services.py starts them).
    deleting = {BINDER_GROUP: settings.binder.idle_timeout} if settings.binder.enabled else {}
    if culler.enabled:
        deleting[TEMPORARY_GROUP] = settings.temporary.idle_timeout
    s.deleting_cullers = deleting
    # The server's token may also read its own server's last activity, as the culler sees it.
    s.server_token_scopes = ["users:activity!user", "access:servers!server", "read:servers!server"]
    # configurable-http-proxy counts every successful request as activity, JupyterLab's polling of
    # an open tab included, so a forgotten tab kept its server for ever; the hub reads activity
    # only from the server itself (payloads/activity.py decides what counts).
    c.JupyterHub.proxy_class = "coursehub.hub.proxy.ServerActivityProxy"


def apply_home(settings: Settings, runtime: Runtime, c: Config) -> None:
    """The course home: home.html lists the user's courses; the hub root opens the first of them."""
    shelf = CourseShelf(str(runtime.paths.courses), order=tuple(course.name for course in settings.courses))
    c.JupyterHub.template_vars = {"coursehub_courses": HomeCourses(shelf)}
    c.JupyterHub.default_url = FirstCourse(shelf)
