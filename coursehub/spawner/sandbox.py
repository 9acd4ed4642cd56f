"""SandboxSpawner: each server runs as its user's own uid, in bubblewrap, inside its own cgroup."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import pwd
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any, TypeVar

from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Dict, Integer, List, Unicode, default

from .. import metrics
from ..courses.access import group_names, is_temporary, is_unregistered, may_open, openable
from ..courses.catalog import CourseRecord, load_catalog
from ..courses.grading import (
    CONFIG_MOUNT,
    GradingPaths,
    Role,
    frame_args,
    grading_binds,
    role_of,
    server_extension_args,
)
from ..errors import CoursehubError
from ..names import BINDER_GROUP
from ..payloads.activity import warn_seconds
from . import cgroups, diskquota, homequota, listeners, netns
from .accounts import UnixAccount, ensure_unix_account, remove_account_and_home, unix_name
from .bwrap import SandboxSpec, bwrap_args, find_bwrap
from .exchange import ensure_staff_group, prepare_grading, prepare_own_inbound, write_config
from .forkclient import SCRIPT as FORKSERVER
from .forkclient import ensure_forkserver, fork_request, fork_spawn
from .ports import server_port

T = TypeVar("T")
# Exec mode's server program (its arguments follow `-c` in sys.argv): coursehub_kernels.singleuser.
EXEC_SERVER = "import coursehub_kernels; coursehub_kernels.singleuser()"

try:  # JupyterHub >= 6
    from jupyterhub.spawner import SpawnException
except ImportError:  # JupyterHub 5.3+: HTTPError with a user-facing message
    SpawnException = None  # type: ignore[assignment,misc]


def spawn_error(message: str, reason: str, status: int = 500) -> web.HTTPError:
    """A failure the user sees as `message`, on any supported JupyterHub."""
    if SpawnException is not None:
        return SpawnException(message, reason=reason, status_code=status)
    error = web.HTTPError(status, message)
    error.jupyterhub_message = message  # type: ignore[attr-defined]
    return error


def isolation_step(step: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs), its wall and thread CPU time recorded as one isolation step (the
    benchmark reads them from /hub/metrics); run in a worker thread, so the time is the step's own."""
    wall, cpu = time.perf_counter(), time.thread_time()
    try:
        return fn(*args, **kwargs)
    finally:
        metrics.observe_isolation_step(step, time.perf_counter() - wall, time.thread_time() - cpu)


def kernel_cull_args(timeout: int) -> list[str]:
    """Jupyter Server's own culling of idle kernels, never of busy ones (pure; none for 0)."""
    if timeout <= 0:
        return []
    return [
        f"--MappingKernelManager.cull_idle_timeout={timeout}",
        f"--MappingKernelManager.cull_interval={max(10, min(300, timeout // 4))}",
        "--MappingKernelManager.cull_busy=False",
        # Idle means no execution: an open notebook tab alone does not keep a kernel.
        "--MappingKernelManager.cull_connected=True",
    ]


def cull_terms(groups: set[str], timeout: int, deleting: dict[str, int]) -> tuple[int, bool]:
    """Idle seconds before a culler ends this user's server, and whether their files go too (pure).

    `timeout` is the idle culler's (0: none); `deleting` maps the groups whose culler deletes its
    users with their files (temporary and Binder guests) to that culler's timeout.
    """
    guest = [seconds for group, seconds in deleting.items() if group in groups and seconds > 0]
    every = [seconds for seconds in (timeout, *guest) if seconds > 0]
    return (min(every) if every else 0), bool(guest)


def cull_env(timeout: int, warn_before: int | None, deletes: bool) -> dict[str, str]:
    """What coursehub_activity and jupyterhub-singleuser read to warn before a cull (pure; none for 0)."""
    if timeout <= 0:
        return {}
    return {
        "COURSEHUB_CULL_TIMEOUT": str(timeout),
        "COURSEHUB_CULL_WARNING": str(warn_seconds(timeout, warn_before)),
        "COURSEHUB_CULL_DELETES": "1" if deletes else "0",
        # The hub knows only the activity a server reports (hub/proxy.py): every timeout/10
        # seconds, within 10 s to 5 min (jupyterhub-singleuser's default).
        "JUPYTERHUB_ACTIVITY_INTERVAL": str(max(10, min(300, timeout // 10))),
    }


class SandboxSpawner(LocalProcessSpawner):
    """Runs each server as a per-user Unix account inside bubblewrap and a cgroup."""

    home_root = Unicode("/home/coursehub", help="Parent folder of users' homes.").tag(config=True)
    user_prefix = Unicode("ch-", help="Prefix of the Unix accounts created.").tag(config=True)
    environment_path = Unicode(help="Environment the server runs from (read-only).").tag(config=True)
    pids_limit = Integer(512, help="Maximum processes per server.").tag(config=True)
    readonly_paths = List(Unicode(), help="Host paths shown read-only.").tag(config=True)
    hidden_paths = List(Unicode(), help="Host paths replaced by an empty folder.").tag(config=True)
    courses_root = Unicode(help="Folder with the course catalog and checkouts.").tag(config=True)
    sync_script = Unicode("", help="Host path of coursehub's content sync script.").tag(config=True)
    course_order = List(
        Unicode(),
        help="Courses in coursehub.yaml's order: the default server opens the first one the user may.",
    ).tag(config=True)
    log_dir = Unicode("", help="Folder for servers' output logs (root-only).").tag(config=True)
    log_max = Integer(16 << 20, help="Bytes of a server's output kept (the newest).").tag(config=True)
    run_dir = Unicode("/run/coursehub", help="Folder for fork servers' sockets (root-only).").tag(config=True)
    max_parallel_starts = Integer(
        8, help="Servers being started at once; more wait in a queue with their position shown."
    ).tag(config=True)
    spawn_mode = Unicode(
        "fork", help="'fork': from the environment's fork server (fast); 'exec': a fresh process."
    ).tag(config=True)
    merge_memory = Bool(
        False, help="Fork mode: the kernel may merge the server's and kernels' equal pages (KSM)."
    ).tag(config=True)
    bwrap_path = Unicode(help="The bubblewrap executable, by absolute path.").tag(config=True)
    cgroup_parent = Unicode(
        help="Parent cgroup of servers' cgroups (default: the service's subtree, or coursehub)."
    ).tag(config=True)

    @default("cgroup_parent")
    def _default_cgroup_parent(self) -> str:
        return cgroups.parent_group()

    network_subnet = Unicode("", help="Servers' namespaces' range; empty: no network namespace.").tag(
        config=True
    )
    network_tag = Unicode("", help="This hub's tag in interface and table names.").tag(config=True)
    disk_limit = Integer(0, help="Quota on each home, in bytes (0: none unless the course sets one).").tag(
        config=True
    )
    project_table = Unicode("", help="JSON file of the homes' project ids (root-only).").tag(config=True)
    grading = Dict(
        help="Courses with grading: nbgrader -> their staff's usernames (the LTI staff group counts too)."
    ).tag(config=True)
    state_root = Unicode("", help="The hub's state folder (nbgrader's exchanges and config live in it).").tag(
        config=True
    )

    oom_seen = Integer(0, help="OOM kills already reported for this server.")
    limit_overrides = Dict(help="Limits of this one server over its course's (Binder launches).")
    kernel_cull_timeout = Integer(0, config=True, help="Idle seconds before a kernel is shut down; 0: never.")
    cull_timeout = Integer(0, config=True, help="Idle seconds before the culler stops a server; 0: never.")
    cull_warning = Integer(
        -1, config=True, help="Seconds before a cull that JupyterLab warns (-1: min(300, timeout/4))."
    )
    deleting_cullers = Dict(
        config=True, help="Groups whose culler deletes idle users with their files: its timeout."
    )
    account: UnixAccount | None = None
    _log_writer: Popen | None = None
    server_net: netns.ServerNet | None = None
    _pidfd = -1
    # nbgrader for this start: the role, its generated config folder, the staff group's gid (staff only).
    _grading: tuple[Role, tuple[tuple[Path, Path, bool], ...], int | None] = ("off", (), None)

    @default("bwrap_path")
    def _default_bwrap_path(self) -> str:
        return find_bwrap() or ""

    @default("poll_interval")
    def _default_poll_interval(self) -> int:
        return 10

    @default("args")
    def _default_args(self) -> list[str]:
        return [
            # Fail rather than quietly listen elsewhere than where the hub will route.
            "--ServerApp.port_retries=0",
            # Start-up costs that buy nothing here: no language servers are installed in course
            # environments (jupyter_lsp probes for them, and for node), and the environment is
            # read-only, so the PyPI extension manager (an HTTP client, network calls) cannot act.
            "--ServerApp.jpserver_extensions=jupyter_lsp=False",
            # A busy kernel is activity (coursehub_activity, in every environment): the hub's idle
            # culler never stops a server whose kernel computes, however quietly.
            "--ServerApp.jpserver_extensions=coursehub_activity=True",
            "--LabApp.extension_manager=readonly",
            # Kernels talk to their server over Unix sockets in the user's private runtime
            # folder, not TCP: in a burst, kernels picking random free TCP ports collided with
            # each other (a kernel dying at start, ~1 in 50), and no other user can reach them.
            # Only the server's own kernel manager: kernels that code in the server starts itself
            # through nbclient (nbgrader's autograde and validate) get no connection file before their
            # socket name, so with ipc they were "kernel-ipc-N" relative to the working folder, and the
            # formgrader's autograde (kernel in the notebook's folder, client in the server's) never
            # reached its kernel. Those use TCP, as nbgrader's command line does.
            "--ServerKernelManager.transport=ipc",
            # A kernel the OOM killer stopped: the running cell says so (coursehub_oom, installed in
            # every environment), not only "the kernel died".
            "--ServerApp.kernel_websocket_connection_class=coursehub_oom.OOMNoticeConnection",
            # A folder listing that meets a file renamed meanwhile is taken again, not a 404 for the
            # folder (coursehub_contents, in every environment, says why).
            "--ServerApp.contents_manager_class=coursehub_contents.SteadyListingContentsManager",
            # jupyter-resource-usage warns from the sum of the processes' RSS, which counts the pages
            # a forked server shares with its kernels once per process: it warned at half
            # the limit. The status bar shows PSS against the limit without that warning.
            "--ResourceUseDisplay.mem_warning_threshold=0",
            # Its Prometheus gauges walk the server's processes with psutil every second, in every
            # idle server (~1 ms of CPU a second each, three quarters of an idle server's CPU), and
            # nothing reads them. The status bar asks its API on demand; the hub watches the cgroups.
            "--ResourceUseDisplay.enable_prometheus_metrics=False",
        ]

    @default("disable_user_config")
    def _default_disable_user_config(self) -> bool:
        # ~/.jupyter and the Jupyter paths in the home are the student's to write: the server (which
        # holds the hub's token and decides who gets in) runs only the environment's config.
        return True

    def get_args(self) -> list[str]:
        """The server's arguments, with JupyterLab's settings and workspaces in the user's home."""
        # JupyterLab computes these two defaults when it is imported: in a forked server that was
        # in the fork server, as root, so they named /root/.jupyter/lab and saving failed (500).
        lab = f"{self.home_dir}/.jupyter/lab"
        return [
            *super().get_args(),
            f"--LabApp.user_settings_dir={lab}/user-settings",
            f"--LabApp.workspaces_dir={lab}/workspaces",
            *kernel_cull_args(self.kernel_cull_timeout),
            # nbgrader is in every environment: its server extensions run only where the course grades.
            *server_extension_args(self._grading[0]),
            *frame_args(self._grading[0], own_origin=bool(self.user.settings.get("subdomain_host"))),
        ]

    @default("env_keep")
    def _env_keep_default(self) -> list[str]:
        return ["LANG", "LC_ALL"]

    _record: CourseRecord | None = None
    _default_course = ""  # the course a running default server was started with (kept in its state)

    @property
    def record(self) -> CourseRecord | None:
        """The catalog record of this server's course: its name's, or the default server's choice."""
        if self._record is None and self.courses_root:
            records = load_catalog(Path(self.courses_root))
            if self.name:
                self._record = records.get(self.name)
            elif self._default_course in records:
                self._record = records[self._default_course]
            else:
                mine = openable(records, self.course_order, self.user)
                self._record = mine[0] if mine else None
        return self._record

    def _has_courses(self) -> bool:
        """True when the catalog holds a course of the config (not only anonymous readers' builds)."""
        records = load_catalog(Path(self.courses_root)) if self.courses_root else {}
        return any(r.ready and not is_unregistered(r) for r in records.values())

    @property
    def course(self) -> str:
        """The course this server belongs to."""
        return self.record.name if self.record else ""

    @property
    def env_dir(self) -> str:
        """The environment this server runs from: its course's, else the configured one."""
        return self.record.environment if self.record else self.environment_path

    @property
    def stack_dir(self) -> str:
        """The stack environment whose fork server starts this server ('' when the course has none yet)."""
        return self.record.stack if self.record else self.environment_path

    @property
    def cgroup(self) -> cgroups.Cgroup:
        """This server's cgroup (derived from the Unix account and the server name)."""
        leaf = f"{unix_name(self.user.name, self.user_prefix)}--{self.name or 'default'}"
        return cgroups.group_for(leaf, self.cgroup_parent)

    @property
    def home_dir(self) -> str:
        """The home of this server's Unix account (also for a server re-attached after a restart)."""
        if self.account is not None:
            return str(self.account.home)
        return str(Path(self.home_root) / unix_name(self.user.name, self.user_prefix))

    def limits(self) -> dict[str, Any]:
        """Memory, cpu and pids for this server: the course's, else the global ones."""
        course = self.record.limits if self.record else {}
        limits = {
            "memory": course.get("memory") or self.mem_limit,
            "cpu": course.get("cpu") or self.cpu_limit or 1.0,
            "pids": course.get("pids") or self.pids_limit,
            "disk": course.get("disk") or self.disk_limit or None,
        }
        return {**limits, **self.limit_overrides}

    def load_state(self, state: dict) -> None:
        """Restore the pid (to re-attach) and the OOM count already reported."""
        super().load_state(state)
        self.oom_seen = state.get("oom_seen", 0)
        self._default_course = state.get("course", "") if not self.name else ""
        self.port = state.get("port", self.port)
        if state.get("netns"):
            self.server_net = netns.ServerNet(**state["netns"])
            self.ip = self.server_net.address

    def get_state(self) -> dict:
        """Save the pid, and oom_seen so that a restart does not count old kills again."""
        state = super().get_state()
        if self.pid:
            state["oom_seen"] = self.oom_seen
            state["port"] = self.port  # what poll checks the server still owns, after a restart
            if not self.name and self.record is not None:
                state["course"] = self.record.name  # re-attached with the course it started with
            if self.server_net is not None:
                state["netns"] = vars(self.server_net)
        return state

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        """HOME, USER and PATH of the sandboxed account; nothing of the hub's own environment."""
        assert self.account is not None
        env.update(
            HOME=str(self.account.home),
            USER=self.account.name,
            SHELL="/bin/bash",
            PATH=f"{self.env_dir}/bin:/usr/local/bin:/usr/bin:/bin",
            # pip install --user persists in the home, separately for each course.
            PYTHONUSERBASE=f"{self.account.home}/.local/share/coursehub/{self.course or 'default'}",
            COURSEHUB_COURSE=self.course,
            COURSEHUB_KERNEL_NPROC=str(kernel_nproc(self.limits()["pids"])),
            # What jupyter-resource-usage shows in JupyterLab's status bar: this server's own limits
            # (the course's, not the hub-wide ones JupyterHub sets).
            MEM_LIMIT=str(int(self.limits()["memory"] or 0)),
            CPU_LIMIT=str(float(self.limits()["cpu"] or 0)),
            # The server's private runtime files (kernel sockets, connection files) in the
            # sandbox's own /tmp: a Unix socket path must fit in 107 bytes, a home may not.
            JUPYTER_RUNTIME_DIR="/tmp/.jupyter-runtime",
            # nbgrader_config.py and JupyterLab's page config (nbgrader's plugins for this role): root's.
            JUPYTER_CONFIG_PATH=str(CONFIG_MOUNT),
        )
        timeout, deletes = cull_terms(set(group_names(self.user)), self.cull_timeout, self.deleting_cullers)
        # JupyterLab's warning before a cull (coursehub_activity and coursehub-cullwarn).
        env.update(cull_env(timeout, None if self.cull_warning < 0 else self.cull_warning, deletes))
        return env

    async def progress(self):  # type: ignore[override]
        """Tell the user what is happening: their place in the queue, then the start."""
        while self in START_QUEUE.waiting:
            ahead = START_QUEUE.waiting.index(self)
            yield {"progress": 5, "message": f"Many people are starting at once: {ahead} ahead of you…"}
            await asyncio.sleep(1)
        yield {"progress": 20, "message": "Preparing your private workspace…"}
        yield {"progress": 60, "message": "Starting your Jupyter server…"}

    async def start(self) -> tuple[str, int]:
        """Wait for a start slot (a burst queues instead of failing), then start the server."""
        async with START_QUEUE.slot(self, self.max_parallel_starts):
            return await self._start()

    async def _start(self) -> tuple[str, int]:
        """Create account and cgroup, then run the server in its sandbox as the user."""
        # Re-read: the course may have been rebuilt, the default server's choice may have changed.
        self._record, self._default_course = None, ""
        if self.record is None and self.name:
            raise spawn_error(f"There is no course called '{self.name}'.", "unknown-course")
        if self.record is None and self._has_courses():
            message = "You are not enrolled in any course on this hub. Ask your instructor to add you."
            raise spawn_error(message, "not-enrolled", 403)
        if self.record is not None and not may_open(self.record.access, self.user):
            raise spawn_error(f"You are not enrolled in '{self.course}'.", "not-enrolled", 403)
        if BINDER_GROUP in group_names(self.user) and not self.limit_overrides:
            # Only the launch gives a reader's server Binder's limits and counts it in Binder's quotas;
            # any other server (the default one, through the reader's cookie) would escape both.
            message = (
                "An anonymous Binder reader runs only the server its launch started: open its link again."
            )
            raise spawn_error(message, "binder-one-server", 403)
        if self.record is not None and is_unregistered(self.record) and not is_temporary(self.user):
            # A repository anyone could name (binder.allow_any_repo) never runs with a real home.
            message = f"'{self.course}' is not a course: it opens only for anonymous Binder readers."
            raise spawn_error(message, "not-a-course", 403)
        try:
            self.account = await asyncio.to_thread(
                isolation_step,
                "account",
                ensure_unix_account,
                self.user.name,
                self.user_prefix,
                Path(self.home_root),
            )
            group = self.cgroup
            limits = self.limits()
            await asyncio.to_thread(self._apply_disk_quota, limits["disk"])
            await asyncio.to_thread(
                isolation_step,
                "cgroup",
                cgroups.create,
                group,
                memory=limits["memory"],
                cpu=limits["cpu"],
                pids=limits["pids"],
            )
            self._grading = await asyncio.to_thread(self._prepare_grading)
        except CoursehubError as exc:
            self.log.error("cannot start server for %s: %s", self.user.name, exc)
            raise spawn_error(f"Your server could not be prepared: {exc}", "sandbox") from exc
        self.port = await asyncio.to_thread(server_port)
        if self.network_subnet:
            try:
                self.server_net = await asyncio.to_thread(
                    isolation_step, "namespace", self._make_namespace, group
                )
            except CoursehubError as exc:
                await asyncio.to_thread(group.kill_and_remove)
                raise spawn_error(f"Your server's network could not be prepared: {exc}", "network") from exc
            self.ip = self.server_net.address
        self.log.info("Starting %s's server (%s) in %s", self.user.name, self.course, group.dirs[0])
        self.oom_seen = group.oom_kills()
        log_path = Path(self.log_dir or "/tmp") / f"{group.dirs[0].name}.log"
        started = False
        # The fork server runs as root: never for a repository anyone could name (binder.allow_any_repo),
        # though it imports only from the stack environment; nor for a course built before it had one.
        unregistered = self.record is not None and is_unregistered(self.record)
        if self.spawn_mode == "fork" and self.stack_dir and not unregistered:
            started = await self._start_forked(group, log_path)
        if not started:
            await self._start_exec(group, log_path)
        await self._wait_listening(group, log_path)
        return (self.ip or "127.0.0.1", self.port)

    def grading_role(self) -> Role:
        """This server's part in its course's nbgrader: 'staff', 'student', or 'off'."""
        if not self.course or self.course not in self.grading:
            return "off"
        return role_of(self.user, self.course, self.grading[self.course])

    def _prepare_grading(self) -> tuple[Role, tuple[tuple[Path, Path, bool], ...], int | None]:
        """On the host, as root: the exchange, a student's inbound or the staff folder, the config."""
        assert self.account is not None
        if not self.state_root:
            return ("off", (), None)
        role = self.grading_role()
        paths = GradingPaths(Path(self.state_root), self.course or "_off", Path(self.home_root))
        gid = None
        if role != "off":
            gid = ensure_staff_group(self.course, self.user_prefix)
            prepare_grading(paths, gid)
        if role == "student":
            prepare_own_inbound(paths, self.account.name, self.account.uid, gid or 0)
            # After _apply_disk_quota: the home has its project (if quotas hold), which now covers
            # the student's submissions too.
            if homequota.join_home_project(paths.own_inbound(self.account.name), self.account.home):
                self.log.info(
                    "%s's inbound folder of %s joined their home's disk quota", self.user.name, self.course
                )
        write_config(paths, role)
        binds = tuple(grading_binds(paths, role, self.account.name))
        return (role, binds, gid if role == "staff" else None)

    async def _start_forked(self, group: cgroups.Cgroup, log_path: Path) -> bool:
        """Ask the environment's fork server for the server; False (logged) if it cannot."""
        assert self.account is not None
        argv = ["jupyterhub-singleuser", *self.get_args()]
        request = fork_request(
            self.sandbox_spec(),
            argv,
            self.get_env(),
            self.account.uid,
            self.account.gid,
            group.procs_files,
            log_path,
            self.log_max,
        )
        if self.server_net is not None:
            request["netns"] = netns.namespace_path(self.server_net)
        request["groups"] = self._groups()
        if self.limits()["disk"]:
            # Outside a user namespace, an owner may move their files out of the home's project.
            request["lock_project"] = True
        if self.merge_memory:
            request["merge_memory"] = True  # the server and its kernels (memmerge.py)
        # The fork server imports the stack from the stack environment; the child, once it is the
        # user, takes on the course's environment (same versions of the stack, its own packages).
        request["environment"] = self.env_dir
        run_dir = Path(self.run_dir)
        try:
            sock = await asyncio.to_thread(
                ensure_forkserver, Path(self.stack_dir), run_dir, Path(self.log_dir or "/tmp")
            )
            self.pid = await asyncio.to_thread(fork_spawn, sock, request)
        except (OSError, ValueError, CoursehubError) as exc:
            self.log.warning(
                "fork server unavailable (%s): starting %s's server the slow way", exc, self.user.name
            )
            return False
        self.proc = None
        return True

    async def _start_exec(self, group: cgroups.Cgroup, log_path: Path) -> None:
        """Start the server as a fresh process under bubblewrap."""
        assert self.account is not None
        # -s: nothing of the user site (pip install --user) is imported or run by the server, so a
        # student's packages cannot shadow its stack; kernels and terminals, fresh interpreters, see them.
        python = f"{self.env_dir}/bin/python"
        # jupyterhub-singleuser through coursehub_kernels (in every environment), which keeps
        # jupyterlab from starting Node.js for yarn's registry (0.6 CPU-s of every start).
        server = [python, "-s", "-c", EXEC_SERVER, *self.get_args()]
        if not os.path.isabs(self.bwrap_path):
            # A bare name would be looked up in the server's PATH, the course environment first.
            await asyncio.to_thread(group.kill_and_remove)
            raise spawn_error("The sandbox is not available: bubblewrap was not found.", "sandbox")
        cmd = bwrap_args(self.sandbox_spec(), server, self.bwrap_path)
        out, into = os.pipe()
        try:
            # The fork server's own log writer, run by itself: the output capped at log_max.
            self._log_writer = Popen(
                [sys.executable, str(FORKSERVER), "--log", str(log_path), str(self.log_max)],
                stdin=out,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,
                env={"PATH": "/usr/bin:/bin"},
            )
            self.proc = Popen(
                cmd,
                env=self.get_env(),
                cwd="/",
                start_new_session=True,
                preexec_fn=self._preexec(group, self.account, self.server_net, self._groups()),
                stdout=into,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            await asyncio.to_thread(group.kill_and_remove)
            raise spawn_error(f"The sandbox could not start: {exc}", "sandbox") from exc
        finally:
            os.close(out)
            os.close(into)
        self.pid = self.proc.pid

    def _exited(self, group: cgroups.Cgroup) -> bool:
        """True once the server's top process is gone."""
        if self.proc is not None:
            return self.proc.poll() is not None
        return not _alive(self.pid)  # forked: it may not have joined its cgroup yet

    async def _wait_listening(self, group: cgroups.Cgroup, log_path: Path | None) -> None:
        """Return as soon as the server accepts connections; fail fast, with its log, if it dies."""
        started = time.monotonic()
        deadline = started + self.start_timeout
        while time.monotonic() < deadline:
            # A forked server listens ~0.1 s after its fork: look every 10 ms for the first second
            # (a refused connect on loopback costs microseconds; at most max_parallel_starts look at
            # once), then every 50 ms for slow starts.
            pause = 0.01 if time.monotonic() - started < 1 else 0.05
            if await asyncio.to_thread(self._exited, group):
                await asyncio.to_thread(group.kill_and_remove)
                tail = _tail(log_path)
                self.log.error("server of %s exited during start:\n%s", self.user.name, tail)
                self.clear_state()
                raise spawn_error(
                    f"Your server stopped while starting. An admin can find the reason in {log_path}.",
                    "server-exited",
                )
            try:
                _, writer = await asyncio.open_connection(self.ip or "127.0.0.1", self.port)
                writer.close()
            except OSError:
                await asyncio.sleep(pause)
                continue
            owner = await self._owner(group)
            if owner == "ours":
                return
            if owner == "foreign":
                # Someone else bound the port first: never route this user (or send their
                # browser) there.
                await asyncio.to_thread(group.kill_and_remove)
                self.clear_state()
                self.log.warning(
                    "port %s of %s's server was taken by another process", self.port, self.user.name
                )
                raise spawn_error(
                    "Your server's network port was taken. Please start it again.", "port-taken"
                )
            await asyncio.sleep(pause)
        raise spawn_error(f"Your server did not start within {self.start_timeout} s.", "timeout")

    def _apply_disk_quota(self, own: int | None) -> None:
        """Give the home its project quota (the largest limit of the user's servers); once per home."""
        others = [
            spawner.limits().get("disk")
            for spawner in list(getattr(self.user, "spawners", {}).values())
            if spawner is not self and spawner.active and isinstance(spawner, SandboxSpawner)
        ]
        limit = diskquota.disk_limit(own, others)
        if limit is None or self.account is None:
            return
        problem = quota_problem(Path(self.home_root))
        if problem:
            return  # `coursehub up` has said so, once
        table = project_table(Path(self.project_table or Path(self.home_root) / ".coursehub-projects.json"))
        started = time.perf_counter()
        changed = homequota.ensure_home_quota(self.account.home, self.account.name, limit, table)
        self.log.info(
            "disk quota of %s's home: %s bytes (%s in %.1f ms)",
            self.user.name,
            limit,
            "set" if changed else "already set",
            (time.perf_counter() - started) * 1000,
        )

    def _make_namespace(self, group: cgroups.Cgroup) -> netns.ServerNet:
        """A network namespace of this server's own, named after its cgroup."""
        net = netns.HubNet(self.network_tag, ipaddress.IPv4Network(self.network_subnet))
        return netns.allocate(net, group.dirs[0].name)

    def _reap_log_writer(self) -> None:
        """Collect exec mode's log writer, which ends when the sandbox's output closes."""
        if self._log_writer is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._log_writer.wait(5)
            self._log_writer = None

    def _remove_namespace(self) -> None:
        if self.server_net is not None:
            netns.remove(self.server_net)
            self.server_net = None

    async def _owner(self, group: cgroups.Cgroup) -> listeners.Ownership:
        """Whose listener is on this server's port: 'ours', 'absent' or 'foreign'."""
        if self.server_net is None:
            return await asyncio.to_thread(self._listener_owner, group)
        # A namespace of the server's own: nobody but the processes the fork server or bubblewrap put
        # there (the server's, in its cgroup, as its user) can listen in it, so a listener is ours and
        # only its absence is news. Asked with a connect, not /proc/<pid>/net/tcp: reading that file
        # walks the whole machine's TCP tables (every namespace's), and in a burst of 100 those reads
        # were a quarter of the hub's CPU (py-spy).
        return await listeners.listening(self.ip or "127.0.0.1", self.port)

    def _listener_owner(self, group: cgroups.Cgroup) -> listeners.Ownership:
        """Whether the listener on this server's port is the server's own (its uid and cgroup)."""
        name = self.account.name if self.account else unix_name(self.user.name, self.user_prefix)
        try:
            uid = pwd.getpwnam(name).pw_uid
        except KeyError:
            return "absent"
        return listeners.ownership(self.port, uid, group.pids())

    def start_polling(self) -> None:
        """Poll every poll_interval, and at once when the server exits or its listener closes."""
        super().start_polling()
        self._stop_watching()
        if not self.pid:
            return
        loop = asyncio.get_event_loop()
        try:
            pidfd = os.pidfd_open(self.pid)
        except OSError:
            pidfd = -1  # already gone: the next poll sees it
        if pidfd >= 0:
            self._pidfd = pidfd
            loop.add_reader(pidfd, self._exited_now)
        if self.port:
            LISTENERS.watch(loop, self.port, self)

    def stop_polling(self) -> None:
        """Stop the periodic poll and the watchers of the process and its port."""
        super().stop_polling()
        self._stop_watching()

    def _stop_watching(self) -> None:
        if self._pidfd >= 0:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_event_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        LISTENERS.forget(self)

    def _exited_now(self) -> None:
        """The server's top process exited (its pidfd is readable from now on: watch it once)."""
        if self._pidfd >= 0:
            asyncio.get_event_loop().remove_reader(self._pidfd)
        self._changed()

    def _changed(self) -> None:
        """The server's process exited or a listener on its port closed: poll now."""
        asyncio.ensure_future(self.poll_and_notify())

    def sandbox_spec(self) -> SandboxSpec:
        """What this server's sandbox shows and hides."""
        assert self.account is not None
        record = self.record
        return SandboxSpec(
            home=self.account.home,
            home_root=Path(self.home_root),
            environment=Path(self.env_dir),
            course_src=_folder(record.content) if record else None,
            sync_script=Path(self.sync_script) if self.sync_script else None,
            shared_data=_folder(record.shared_data) if record else None,
            scratch=_folder(record.scratch) if record else None,
            grading=self._grading[1],
            hidden=tuple(Path(p) for p in self.hidden_paths),
            # The stack environment too: a forked server keeps importing the stack's modules from it.
            readonly=tuple(Path(p) for p in self.readonly_paths)
            + ((Path(self.stack_dir),) if self.stack_dir and self.stack_dir != self.env_dir else ()),
            hostname=self.course or "jupyter",
            # Files in /tmp count against the memory limit: a quarter of it leaves room for the
            # server and kernels, so a full /tmp is "No space left" rather than the OOM killer.
            tmp_size=int(self.limits()["memory"] or 0) // 4,
            cgroup_binds=tuple(self.cgroup.view_binds()),
        )

    def _groups(self) -> list[int]:
        """Supplementary groups of the server: the course's staff group for its staff, else none."""
        gid = self._grading[2]
        return [gid] if gid is not None else []

    @staticmethod
    def _preexec(
        group: cgroups.Cgroup,
        account: UnixAccount,
        server_net: netns.ServerNet | None = None,
        groups: list[int] | None = None,
    ):
        """Between fork and exec: join the cgroup and the network namespace as root, then become the user."""
        namespace = netns.namespace_path(server_net) if server_net else None

        def preexec() -> None:
            group.join(os.getpid())
            if namespace:
                netns.join(namespace)
            os.setgroups(groups or [])
            os.setgid(account.gid)
            os.setuid(account.uid)

        return preexec

    async def poll(self) -> int | None:
        """None while the server process lives in its cgroup; else clean up and give its status."""
        pid = self.pid
        await self._report_oom()
        if self.proc is not None:
            status = self.proc.poll()
            if status is not None:
                self.proc = None
        elif pid and self._spawn_pending and _alive(pid):
            return None  # forked a moment ago: it joins its cgroup first thing
        elif pid and pid in await asyncio.to_thread(self.cgroup.pids):
            status = None  # running (also when re-attached after a hub restart)
        else:
            status = 0
        if status is None:
            if self._spawn_pending or not self.port:
                return None
            owner = await self._owner(self.cgroup)
            if owner == "ours":
                return None
            # The server closed its port (shutting down) or another process holds it: its route
            # must go now, not once the process has finished exiting.
            self.log.info(
                "%s's server no longer owns port %s (%s): removing it", self.user.name, self.port, owner
            )
            status = 1
        if self.pid != pid:
            # A new server started while this poll looked at the old one (a periodic poll in
            # flight across a stop and the next start): its cgroup is not ours to remove.
            return None
        if self.pid:
            await asyncio.to_thread(self.cgroup.kill_and_remove)
        await asyncio.to_thread(self._remove_namespace)
        await asyncio.to_thread(self._reap_log_writer)
        self.clear_state()
        return status

    async def _report_oom(self) -> None:
        """Log and count kernel OOM kills in this server since we last looked."""
        if not self.pid:
            return
        try:
            kills = await asyncio.to_thread(self.cgroup.oom_kills)
        except (OSError, CoursehubError):
            return
        if kills > self.oom_seen:
            new = kills - self.oom_seen
            self.oom_seen = kills
            self.log.warning(
                "OOM: %d process(es) of user %s in course %s killed (memory limit %s)",
                new,
                self.user.name,
                self.course or "-",
                self.limits()["memory"],
            )
            metrics.OOM_KILLS.labels(course=self.course or "-").inc(new)

    async def stop(self, now: bool = False) -> None:
        """Ask the server to shut down, then kill whatever is left in its cgroup."""
        group = self.cgroup
        if not now and self.pid:
            await asyncio.to_thread(_signal_all, group, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and await asyncio.to_thread(group.pids):
                await asyncio.sleep(0.2)
        await self._report_oom()
        await asyncio.to_thread(group.kill_and_remove)
        await asyncio.to_thread(self._remove_namespace)
        await asyncio.to_thread(self._reap_log_writer)
        if self.proc is not None:
            await asyncio.to_thread(self.proc.wait, 5)
            self.proc = None
        self.clear_state()

    async def delete_forever(self) -> None:
        """A deleted temporary user leaves nothing behind: account, home and files go too."""
        if not is_temporary(self.user):
            return  # real users' files outlive their hub record
        name = unix_name(self.user.name, self.user_prefix)
        await asyncio.to_thread(remove_account_and_home, name, Path(self.home_root))
        if self.project_table and Path(self.project_table).exists():
            await asyncio.to_thread(project_table(Path(self.project_table)).forget, name)
        self.log.info("deleted temporary user %s with their files", self.user.name)


def _signal_all(group: cgroups.Cgroup, sig: int) -> None:
    """Send `sig` to every process of `group`."""
    for pid in group.pids():
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class StartQueue:
    """A first-come queue of starting servers shared by all spawners of the hub."""

    def __init__(self) -> None:
        self.waiting: list[Any] = []
        self._slots: asyncio.Semaphore | None = None

    @contextlib.asynccontextmanager
    async def slot(self, spawner: Any, size: int):
        """Hold one of `size` start slots for the duration of a start."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(size)
        self.waiting.append(spawner)
        try:
            await self._slots.acquire()
        finally:
            self.waiting.remove(spawner)
        try:
            yield
        finally:
            self._slots.release()


START_QUEUE = StartQueue()
_QUOTA_PROBLEMS: dict[Path, str | None] = {}
_PROJECT_TABLES: dict[Path, homequota.ProjectTable] = {}


def quota_problem(home_root: Path) -> str | None:
    """Why the homes cannot get quotas (None: they can), asked of the kernel once per hub process."""
    if home_root not in _QUOTA_PROBLEMS:
        problem = _QUOTA_PROBLEMS[home_root] = homequota.quota_problem(home_root)
        if problem:
            logging.getLogger(__name__).info("homes get no disk quota: %s", problem)
    return _QUOTA_PROBLEMS[home_root]


def project_table(path: Path) -> homequota.ProjectTable:
    """The hub's one table of project ids at `path`."""
    return _PROJECT_TABLES.setdefault(path, homequota.ProjectTable(path))


class ListenerWatch:
    """One netlink socket for the hub: a closed listener on a server's port polls that server at once."""

    def __init__(self) -> None:
        self.by_port: dict[int, Any] = {}
        self._sock: socket.socket | None = None
        self._tried = False

    def watch(self, loop: asyncio.AbstractEventLoop, port: int, spawner: Any) -> None:
        """Poll `spawner` whenever a listening socket on `port` closes."""
        if not self._tried:
            self._tried = True
            self._sock = listeners.watch_destroyed(loop, self._closed)
        self.by_port[port] = spawner

    def forget(self, spawner: Any) -> None:
        for port in [p for p, s in self.by_port.items() if s is spawner]:
            del self.by_port[port]

    def _closed(self, port: int) -> None:
        spawner = self.by_port.get(port)
        if spawner is not None:
            spawner._changed()


LISTENERS = ListenerWatch()


def _alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _folder(path: str) -> Path | None:
    """`path` as a Path when it names an existing folder."""
    return Path(path) if path and Path(path).is_dir() else None


def kernel_nproc(pids_limit: int) -> int:
    """Processes a server's kernels may have: what is left after headroom for the server."""
    return max(8, pids_limit - max(32, pids_limit // 4))


def _tail(path: Path | None, lines: int = 20) -> str:
    """The last lines of a server's log, for error messages."""
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
