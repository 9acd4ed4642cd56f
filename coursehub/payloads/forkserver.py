"""coursehub fork server: pre-imports the Jupyter server stack once, then forks sandboxed servers.

Runs as root with the stack environment's Python (coursehub's pinned stack, nothing of any course):
    python -I -S forkserver.py SOCKET
One JSON request per connection on a root-only Unix socket; see `serve`. Each child, before it
runs anything the user controls: joins the server's cgroup, enters new mount, PID, IPC and UTS
namespaces, builds the same view of the filesystem as the bubblewrap sandbox (read-only root,
private /tmp, only its own home, the environment and course read-only, hub state hidden), drops
privileges for good (setgroups, setgid, setuid, no_new_privs), closes inherited file
descriptors, and replaces the environment. The parent holds no threads, event loop or secrets.

Every server's output goes to one log collector, started with the fork server (`--collect`):
one root process for all servers instead of a monitor per server (1.5 MiB of private memory
and 0.3 MiB of page tables each, measured with 6 users).

Kernels are forked here too, straight into their server's sandbox as its user: each server gets
its end of a socket (fd KERNEL_CHANNEL_FD, PID 1 of the sandbox only). A message on it is a
kernel request this process never reads: it forks a child that joins that server's cgroup and
namespaces and drops to that server's user (all from what the spawn recorded, nothing from the
message); only then is the message parsed (coursehub_kernels.serve_request). One process fewer
per user than a kernel zygote in each sandbox (4.2 MiB private, 0.3 MiB page tables, 6 users).
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import heapq
import itertools
import json
import os
import resource
import runpy
import select
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

libc = ctypes.CDLL(None, use_errno=True)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWPID = 0x20000, 0x4000000, 0x8000000, 0x20000000
CLONE_NEWCGROUP, CLONE_NEWNET = 0x2000000, 0x40000000
PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 38, 4
PR_SET_MEMORY_MERGE = 67  # Linux 6.4
PR_SET_CHILD_SUBREAPER = 36
PRELOAD = (
    "jupyterhub.singleuser",
    "jupyter_server.serverapp",
    "jupyterlab.labapp",
    "jupyter_server_terminals",
    "nbgitpuller",
    "jupyter_client.manager",
    # What a kernel imports, up to the end of its initialisation: imported here once, these
    # pages are shared by every user's kernels instead of copied into each (measured: kernel
    # start 0.25 -> 0.03 CPU-s).
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "debugpy",
    "debugpy.server.api",
    "IPython.core.debugger",
    "pdb",
    "pydoc",
    "psutil",
    "argcomplete",
    # What IPKernelApp.initialize imports on first use besides (traitlets' lazy class names, the
    # history's sqlite3), measured in a forked child: 0.25 s per kernel when left to each kernel.
    "IPython.core.completerlib",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "sqlite3",
    "tornado.platform.asyncio",
    "traitlets.config.argcomplete_config",
    # What every server imports as it starts (measured: sys.modules of a started server against this
    # process's), besides the service handlers listed in serverapp (see preload_server_handlers).
    "ipykernel.kernelspec",
    "jinja2.ext",
    "jupyter_core.migrate",
    "jupyter_resource_usage.server_extension",
    "jupyter_resource_usage.api",
    "jupyter_resource_usage.prometheus",
    "nbgitpuller.handlers",
    "notebook.app",
    "notebook_shim.nbserver",
    "coursehub_kernels",  # what a kernel request's child runs, as the user (installed in every environment)
)
# This file's digest: the hub replaces a fork server of another version (requests change with it).
with open(__file__, "rb") as _script:
    VERSION = hashlib.sha256(_script.read()).hexdigest()[:16].encode()
SYNC = "/run/coursehub/sync.py"
REQUEST_MAX = 1 << 20
LOG_MAX = 16 << 20  # settings' sandbox.server_log_max
# What the collector copies for one server, and for all, before it stops reading their pipes for a
# while (the writers then wait): it runs outside the users' cgroups, so a student's flood of output
# must not become root's CPU. A server's own start-up writes a few kilobytes.
LOG_RATE, LOG_BURST = 4 << 20, 16 << 20  # bytes per second, bytes at once
LOG_RATE_ALL, LOG_BURST_ALL = 32 << 20, 64 << 20
# Kernel starts a server may ask for: as many at once, then one a second (a flood waits in its socket).
KERNEL_RATE, KERNEL_BURST = 1.0, 8.0
KERNEL_CHANNEL_FD = 3  # the server's end of its kernel channel
KERNEL_CHANNEL_ENV = "COURSEHUB_KERNEL_CHANNEL"
# The namespaces a kernel joins, as /proc/<pid>/ns names: the mount namespace last (it moves root and cwd).
NAMESPACES = (
    ("net", CLONE_NEWNET),
    ("ipc", CLONE_NEWIPC),
    ("uts", CLONE_NEWUTS),
    ("cgroup", CLONE_NEWCGROUP),
    ("pid_for_children", CLONE_NEWPID),
    ("mnt", CLONE_NEWNS),
)
PID_NAMESPACE = [name for name, _ in NAMESPACES].index("pid_for_children")
# What the child that forked a server reports of it: enough to put kernels beside it; no secret.
RECORD_KEYS = ("uid", "gid", "groups", "lock_project", "home", "environment", "merge_memory", "cgroup_procs")
# How long a forked child may take to say its server's pid (a whole class starting on a small machine).
REPORT_TIMEOUT = 20  # under forkclient._ask's 30 s: the hub never gives up on a spawn that then starts
COURSE = "/run/coursehub/course"
# A private /tmp's inodes (the kernel's default is millions); the hiding tmpfs stay small.
TMP_INODES = 65536
SCRATCH_INODES = {"/tmp": TMP_INODES, "/dev/shm": TMP_INODES // 4}
HIDING_SIZE = 1 << 20
# The minimal /dev, as bubblewrap's --dev makes it.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_LINKS = {
    "stdin": "/proc/self/fd/0",
    "stdout": "/proc/self/fd/1",
    "stderr": "/proc/self/fd/2",
    "fd": "/proc/self/fd",
    "core": "/proc/kcore",
    "ptmx": "pts/ptmx",
}


# seccomp: what a server with a disk quota may not do (see lock_project_changes).
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
SECCOMP_RET_ALLOW, SECCOMP_RET_ERRNO, EPERM = 0x7FFF0000, 0x00050000, 1
BPF_LD_W_ABS, BPF_JEQ_K, BPF_JGE_K, BPF_RET_K = 0x20, 0x15, 0x35, 0x06
# machine: (AUDIT_ARCH_*, __NR_ioctl, __NR_file_setattr)
ARCHES = {"x86_64": (0xC000003E, 16, 469), "aarch64": (0xC00000B7, 29, 469)}
X32_SYSCALL_BIT = 0x40000000
# The ioctls that change a file's project id or its inherit flag: FS_IOC_FSSETXATTR, FS_IOC_SETFLAGS
# and its 32-bit twin.
PROJECT_IOCTLS = (0x401C5820, 0x40086602, 0x40046602)


def project_lock_filter(machine: str) -> bytes:
    """A seccomp program refusing (EPERM) project id changes, for the machine `machine` (pure)."""
    arch, nr_ioctl, nr_file_setattr = ARCHES[machine]
    deny, allow = ("deny", "allow")
    program: list[tuple[int, object, object, int]] = [
        (BPF_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (BPF_JEQ_K, "next", deny, arch),  # another ABI (32-bit code) gets nothing
        (BPF_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (BPF_JGE_K, deny, "next", X32_SYSCALL_BIT),  # x32 calls
        (BPF_JEQ_K, deny, "next", nr_file_setattr),
        (BPF_JEQ_K, "next", allow, nr_ioctl),
        (BPF_LD_W_ABS, 0, 0, 24),  # the low half of args[1], all the kernel reads of an ioctl's cmd
        *((BPF_JEQ_K, deny, "next", cmd) for cmd in PROJECT_IOCTLS),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
        (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | EPERM),
    ]
    where = {allow: len(program) - 2, deny: len(program) - 1}
    code = b""
    for index, (op, true, false, k) in enumerate(program):
        jumps = [0 if j == "next" or j == 0 else where[j] - index - 1 for j in (true, false)]  # type: ignore[index]
        code += struct.pack("=HBBI", op, jumps[0], jumps[1], k)
    return code


def lock_project_changes() -> None:
    """Files in a home with a quota stay in its project: refuse the calls that would move them.

    Inside a user namespace (bubblewrap's exec mode) the kernel refuses by itself; forked servers
    run in the initial one, where a file's owner may change its project id or the inherit flag.
    """
    program = project_lock_filter(os.uname().machine)
    count = len(program) // 8
    buffer = ctypes.create_string_buffer(program, len(program))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = SockFprog(count, ctypes.addressof(buffer))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """mount(2)."""
    _check(
        libc.mount(_bytes(source), target.encode(), _bytes(fstype), flags, _bytes(data)), f"mount {target}"
    )


def _bytes(text: str | None) -> bytes | None:
    return text.encode() if text else None


def mount_points() -> list[tuple[str, set[str]]]:
    """Every mount point of this namespace with its per-mount options."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            path = fields[4].encode().decode("unicode_escape")
            points.append((path, set(fields[5].split(","))))
    return points


def remount_readonly() -> None:
    """Make every mount read-only in this namespace (what bwrap's --ro-bind / / does)."""
    for path, options in mount_points():
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= (MS_NOSUID if "nosuid" in options else 0) | (MS_NODEV if "nodev" in options else 0)
        flags |= MS_NOEXEC if "noexec" in options else 0
        try:
            mount(None, path, None, flags)
        except OSError:
            pass  # e.g. a mount hidden under another: unreachable anyway


def bind(fd: int, target: str, readonly: bool, is_file: bool = False) -> None:
    """Bind the object open at `fd` onto `target` (created in a tmpfs when missing)."""
    if is_file:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    else:
        os.makedirs(target, exist_ok=True)
    mount(f"/proc/self/fd/{fd}", target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if readonly else 0)
    mount(None, target, None, flags)


def tmpfs(target: str, options: str) -> None:
    """A fresh tmpfs at `target`."""
    os.makedirs(target, exist_ok=True)  # it may sit in a tmpfs mounted just before
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, options)


def minimal_dev(target: str, devices: list[tuple[int, str]]) -> None:
    """What bubblewrap's --dev builds: a few device nodes, links into /proc, a private devpts."""
    tmpfs(target, f"mode=755,size={HIDING_SIZE}")
    for fd, name in devices:
        node = os.path.join(target, name)
        open(node, "w").close()
        mount(f"/proc/self/fd/{fd}", node, None, MS_BIND)  # no nodev: these are the devices
        os.close(fd)
    for name, link in DEV_LINKS.items():
        os.symlink(link, os.path.join(target, name))
    os.makedirs(os.path.join(target, "shm"))
    pts = os.path.join(target, "pts")
    os.makedirs(pts)
    # Terminals get a devpts of their own: no one else's terminals in it.
    mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")


def build_view(req: dict) -> None:
    """The sandbox's filesystem: coursehub/spawner/view.py's mounts, in order, in the new mount namespace."""
    mounts = req["mounts"]
    # Open what must show through before the tmpfs mounts hide it.
    sources = {
        i: (os.open(m["source"], os.O_PATH), os.path.isfile(m["source"]))
        for i, m in enumerate(mounts)
        if m["kind"] == "bind"
    }
    devices = [(os.open(f"/dev/{name}", os.O_PATH), name) for name in DEVICES]
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for i, m in enumerate(mounts):
        kind, target, size = m["kind"], m["target"], m["size"]
        sized = f",size={size}" if size else ""
        if kind == "root":
            remount_readonly()
        elif kind == "proc":
            mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        elif kind == "dev":
            minimal_dev(target, devices)
        elif kind == "scratch":
            tmpfs(target, f"mode=1777,nr_inodes={SCRATCH_INODES.get(target, TMP_INODES // 4)}{sized}")
        elif kind == "hide":
            tmpfs(target, f"mode=755{sized}")
        elif kind == "bind":
            fd, is_file = sources.pop(i)
            bind(fd, target, m["readonly"], is_file)
            os.close(fd)
        elif kind == "remount-ro":
            mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
        else:
            raise ValueError(f"unknown mount kind {kind!r}")


def become_user(req: dict, channel: int | None = None) -> None:
    """Drop root for good; leave nothing of the fork server behind but `channel` (as KERNEL_CHANNEL_FD)."""
    # Only the course's staff group, for a course's staff (nbgrader's exchange and staff folder).
    os.setgroups(req.get("groups", []))
    os.setgid(req["gid"])
    os.setuid(req["uid"])
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    if req.get("lock_project"):
        lock_project_changes()
    # setuid made the process non-dumpable (its /proc files root's); it is the user's own now.
    _check(libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")
    if channel is None:
        os.closerange(3, 65536)
    else:
        if channel != KERNEL_CHANNEL_FD:
            os.dup2(channel, KERNEL_CHANNEL_FD, inheritable=False)
        os.set_inheritable(KERNEL_CHANNEL_FD, False)  # the server's own: no terminal or subprocess gets it
        os.closerange(KERNEL_CHANNEL_FD + 1, 65536)
    os.environ.clear()
    os.environ.update(req["env"])
    os.chdir(req["home"])
    # Nothing of the fork server's own interpreter state: its script folder, root's user site.
    import site

    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if p not in ("", here)]
    site.USER_BASE = site.USER_SITE = None
    if req.get("environment"):
        enter_environment(req["environment"])
    # Only now, as the user, what the site module does at a normal start: the course environment's
    # .pth files and system site-packages (the fork server runs with -S). Never the user site
    # (pip install --user): it would run the student's .pth files and shadow the server's imports;
    # kernels add it themselves (coursehub_kernels).
    site.ENABLE_USER_SITE = False
    site.main()


def enter_environment(env: str) -> None:
    """Become the course environment's interpreter (as the user): prefix, executable, Jupyter's paths.

    The stack stays imported from the stack environment: the course's has the very same versions
    (it is built with them as constraints), plus the course's own packages, which site adds next.
    """
    stack = sys.prefix
    if os.path.realpath(env) == os.path.realpath(stack):
        return
    sys.prefix = sys.exec_prefix = env
    sys.executable = os.path.join(env, "bin", "python")
    sys.path[:] = [p for p in sys.path if not p.startswith(stack + os.sep)]
    # jupyter_core computes its environment paths (kernelspecs, lab extensions, config) from
    # sys.prefix at import, which happened in the fork server: point them at the course's.
    paths = sys.modules.get("jupyter_core.paths")
    for value in vars(paths).values() if paths else ():
        if isinstance(value, list):
            value[:] = [
                env + v[len(stack) :] if isinstance(v, str) and v.startswith(stack) else v for v in value
            ]


def run_server(req: dict, channel: int | None) -> None:
    """PID 1 of the new namespace: build the view, become the user, sync, serve."""
    build_view(req)
    _check(libc.sethostname(req["hostname"].encode(), len(req["hostname"])), "sethostname")
    if req.get("merge_memory"):
        merge_memory()
    become_user(req, channel)
    if channel is not None:
        os.environ[KERNEL_CHANNEL_ENV] = str(KERNEL_CHANNEL_FD)
    course = os.environ.get("COURSEHUB_COURSE")
    if course and os.path.exists(SYNC) and os.path.isdir(COURSE):
        try:
            sys.argv = [SYNC, COURSE, os.path.join(req["home"], course)]
            runpy.run_path(SYNC, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (0, None):
                print(f"coursehub: course sync failed with status {exc.code}", file=sys.stderr)
        except BaseException as exc:  # noqa: BLE001 - a failed merge must not stop the server
            print(f"coursehub: course sync failed: {exc}", file=sys.stderr)
    sys.argv = req["argv"]
    from jupyterhub.singleuser import main

    sys.exit(main())


def merge_memory() -> None:
    """Let the kernel merge this server's pages, or a kernel's (sandbox.merge_memory).

    Set here, while still root (it needs CAP_SYS_RESOURCE), and inherited by every child. Never in the
    fork server itself or its log collector: only users' processes share pages with each other.
    """
    if libc.prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        print(f"coursehub: memory merging unavailable ({os.strerror(errno)})", file=sys.stderr)


def child(req: dict, collector: socket.socket | None, report: socket.socket, channel: int) -> None:
    """The forked process: cgroup, log, namespaces; forks the server as PID 1 and reports it.

    The report (on `report`) is the server's pid, what its kernels need of the request (RECORD_KEYS,
    no secret), this process's namespaces, which the server shares, and the server's output. The
    server keeps `channel`, its end of the kernel channel. Its output goes to the log collector; if
    the collector cannot take it, this process stays and copies the output itself (its monitor).
    """
    for name in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(name, signal.SIG_DFL)
    os.setsid()
    for path in req["cgroup_procs"]:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    if req.get("netns"):  # the server's own network namespace, made by the hub
        fd = os.open(req["netns"], os.O_RDONLY)
        _check(libc.setns(fd, CLONE_NEWNET), "setns")
        os.close(fd)
    # The server writes into a pipe; the collector copies it to the log, capped. The log's folder
    # is passed open: the sandbox's view hides it by path.
    name, cap = os.path.basename(req["log"]), req.get("log_max", LOG_MAX)
    folder = os.open(os.path.dirname(req["log"]), os.O_RDONLY | os.O_DIRECTORY)
    out, into = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(into, 1)
    os.dup2(into, 2)
    os.close(into)
    handed = collector is not None and hand_over_log(collector, out, folder, name, cap)
    if collector is not None:
        collector.close()
    if handed:
        os.close(out)
        os.close(folder)
    # In its cgroup already: a new cgroup namespace makes that group the root of what it sees.
    cgroupns = CLONE_NEWCGROUP if req.get("cgroup_namespace") else 0
    _check(libc.unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | cgroupns), "unshare")
    # The server mounts its own /proc over this namespace's (where this process has no entry): the
    # namespaces are opened through this /proc, held before the fork.
    proc = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    pid = os.fork()
    if pid == 0:
        try:
            report.close()
            os.close(proc)
            if not handed:
                os.close(out)
            run_server(req, channel)
        except BaseException as exc:  # noqa: BLE001
            print(f"coursehub fork server: {exc!r}", file=sys.stderr)
            os._exit(70)
    os.close(channel)
    try:
        # After the fork: until its first process exists, the new PID namespace has no file to open.
        namespaces = [os.open(f"self/ns/{name}", os.O_RDONLY, dir_fd=proc) for name, _ in NAMESPACES]
        message = json.dumps({"pid": pid, **{key: req.get(key) for key in RECORD_KEYS}}).encode()
        socket.send_fds(report, [message], [*namespaces, 1])  # and the server's output, for its kernels
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # nobody would know of this server
        raise
    report.close()
    for fd in (*namespaces, proc):
        os.close(fd)
    if handed:
        os._exit(0)  # the server is re-parented to the fork server (a subreaper), which reaps it
    # No collector: copy the output here, relay stop signals, exit with the server's status.
    low = 3
    for keep in sorted((out, folder, null)):
        os.closerange(low, keep)
        low = keep + 1
    os.closerange(low, 65536)
    os.dup2(null, 1)
    os.dup2(null, 2)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _f: os.kill(pid, number))
    copy_capped(out, folder, name, cap)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def kernel_child(channel: Channel, message: bytes) -> None:
    """A kernel request's child (born in the server's PID namespace): into its cgroup and other
    namespaces, as its user; then it becomes the kernel the request asks for.

    Everything done as root comes from what the server's spawn recorded; the message, which the
    server's user wrote, is read only after the privileges are gone.
    """
    record = channel.record
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    for path in record["cgroup_procs"]:
        with open(path, "w") as f:
            f.write(str(os.getpid()))
    # Joining a cgroup ignores its process limit, which a fork would have met: checked here instead.
    refuse = pids_limit_reached(record["cgroup_procs"])
    for fd, (name, kind) in zip(channel.namespaces, NAMESPACES, strict=True):
        if kind != CLONE_NEWPID:
            _check(libc.setns(fd, kind), f"setns {name}")
    os.dup2(channel.output, 1)  # the kernel writes where its server does
    os.dup2(channel.output, 2)
    if record.get("merge_memory"):
        merge_memory()
    become_user({**record, "env": {}})
    import coursehub_kernels

    coursehub_kernels.serve_request(message, refuse)


def pids_limit_reached(cgroup_procs: list[str]) -> str:
    """Why no kernel may start when this process's cgroup holds more processes than its pids limit ('')."""
    for path in cgroup_procs:
        folder = os.path.dirname(path)
        try:
            with open(os.path.join(folder, "pids.max")) as f:
                limit = f.read().strip()
            with open(os.path.join(folder, "pids.current")) as f:
                current = int(f.read())
        except (OSError, ValueError):
            continue  # not the pids controller's folder (cgroup v1 has one per controller)
        if limit.isdigit() and current > int(limit):
            return f"the server's process limit ({limit}) is reached: stop a kernel or a process first"
    return ""


def hand_over_log(collector: socket.socket, out: int, folder: int, name: str, cap: int) -> bool:
    """Give a server's output pipe and log folder to the collector; False if it does not take them."""
    try:
        collector.settimeout(10)
        message = json.dumps({"name": name, "cap": cap}).encode()
        socket.send_fds(collector, [message], [out, folder])
    except OSError:
        return False
    return True


class CappedLog:
    """A log keeping at most `cap` bytes of the newest output: two files of half the cap.

    When `name` is full it becomes `name`.1 (replacing the older one) and a new `name` starts.
    """

    def __init__(self, folder: int, name: str, cap: int) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"not a log file name: {name!r}")
        self.folder, self.name = folder, name
        self.half = max(cap // 2, 4096)
        self.fd = self._open()
        self.written = 0

    def _open(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        return os.open(self.name, flags, 0o600, dir_fd=self.folder)

    def write(self, data: bytes) -> None:
        """Append `data` (only its newest half-cap), starting a new file when this one is full."""
        data = data[-self.half :]
        try:
            if self.written + len(data) > self.half:
                os.close(self.fd)
                self.fd = -1
                os.replace(self.name, self.name + ".1", src_dir_fd=self.folder, dst_dir_fd=self.folder)
                self.fd = self._open()
                self.written = 0
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError:
            pass  # the disk is full: drop this chunk, keep draining (never block the server)
        self.written += len(data)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def copy_capped(source: int, folder: int, name: str, cap: int) -> None:
    """Copy `source` into a CappedLog `name` in `folder` until EOF (exec mode's writer, a lone monitor)."""
    log = CappedLog(folder, name, cap)
    while True:
        try:
            data = os.read(source, 1 << 16)
        except OSError:
            break
        if not data:
            break
        log.write(data)
    log.close()


class Budget:
    """A token bucket: `rate` bytes a second, at most `burst` at once (pure but for the clock)."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, now

    def refill(self, now: float) -> None:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now

    def wait(self, now: float) -> float:
        """Seconds until there is something to spend again (0: now)."""
        self.refill(now)
        return 0.0 if self.tokens > 0 else -self.tokens / self.rate + 0.01


def collect(control: socket.socket) -> None:
    """The log collector: each server's output pipe, as handed over on `control`, into its CappedLog.

    Runs until the fork server and its children have closed `control` and every pipe has ended.
    """
    os.setsid()  # its own session: whatever stops the fork server's group leaves the logs running
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # two descriptors per server
    rate, burst, rate_all, burst_all = LOG_RATE, LOG_BURST, LOG_RATE_ALL, LOG_BURST_ALL
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    folders: dict[tuple[int, int], int] = {}
    logs: dict[int, tuple[CappedLog, Budget]] = {}
    paused: list[tuple[float, int]] = []  # (when to read again, pipe)
    everyone = Budget(rate_all, burst_all, time.monotonic())
    while logs or control.fileno() >= 0:
        timeout = max(0.0, paused[0][0] - time.monotonic()) if paused else None
        for key, _ in selector.select(timeout):
            if key.fileobj is control:
                if not _take_log(control, selector, folders, logs, rate, burst):
                    selector.unregister(control)
                    control.close()
                continue
            pipe = key.fd
            log, budget = logs[pipe]
            now = time.monotonic()
            wait = max(budget.wait(now), everyone.wait(now))
            if wait:
                selector.unregister(pipe)
                heapq.heappush(paused, (now + wait, pipe))
                continue
            try:
                data = os.read(pipe, 1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                budget.tokens -= len(data)
                everyone.tokens -= len(data)
                log.write(data)
            else:
                selector.unregister(pipe)
                os.close(pipe)
                log.close()
                del logs[pipe]
        now = time.monotonic()
        while paused and paused[0][0] <= now:
            _, pipe = heapq.heappop(paused)
            selector.register(pipe, selectors.EVENT_READ)


def _take_log(control, selector, folders, logs, rate: int, burst: int) -> bool:  # noqa: ANN001
    """Register the pipe and log handed over in one message; False once `control` has ended."""
    try:
        message, fds, _flags, _address = socket.recv_fds(control, 4096, 2)
    except OSError:
        return False
    if not message and not fds:
        return False
    try:
        if len(fds) != 2:
            raise ValueError(f"{len(fds)} descriptors")
        out, folder = fds
        meta = json.loads(message)
        log = CappedLog(folder, meta["name"], int(meta["cap"]))
    except (ValueError, KeyError, TypeError, OSError) as exc:
        print(f"coursehub log collector: refused a log ({exc!r})", file=sys.stderr)
        for fd in fds:
            os.close(fd)
        return True
    stat = os.fstat(folder)
    kept = folders.setdefault((stat.st_dev, stat.st_ino), folder)
    if kept != folder:  # every server's log is in the same folder: one descriptor for all
        log.folder = kept
        os.close(folder)
    os.set_blocking(out, False)
    logs[out] = (log, Budget(rate, burst, time.monotonic()))
    selector.register(out, selectors.EVENT_READ)
    return True


def add_environment_path() -> None:
    """The environment's site-packages on sys.path, without running its .pth files (we are root)."""
    import sysconfig

    # Without the site module nothing has made this interpreter the venv's: sys.prefix is still the
    # base Python's, and sysconfig's default scheme names the base's site-packages (Debian's
    # posix_local), so the pre-imports below found nothing and every server imported the whole stack
    # itself (benchmark: 0.9 s -> 4.3 s to a first result). Do what site does for a venv, minus .pth.
    env = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    sys.prefix = sys.exec_prefix = env
    scheme = "venv" if "venv" in sysconfig.get_scheme_names() else "posix_prefix"
    paths = sysconfig.get_paths(scheme=scheme, vars={"base": env, "platbase": env})
    for key in ("purelib", "platlib"):
        if paths[key] not in sys.path:
            sys.path.append(paths[key])


def skip_yarn_config() -> None:
    """Keep jupyterlab from starting Node.js as it is pre-imported here (coursehub_kernels says why)."""
    try:
        import coursehub_kernels  # in every environment
    except ImportError:
        return
    coursehub_kernels.skip_yarn_config()


def preload_server_handlers() -> None:
    """The handler modules Jupyter Server imports for its services at each start (named in serverapp)."""
    serverapp = sys.modules.get("jupyter_server.serverapp")
    for locations in getattr(serverapp, "JUPYTER_SERVICE_HANDLERS", {}).values():
        for module in locations or ():
            try:
                __import__(module)
            except ImportError:
                pass


COLLECTOR = {"pid": 0}
EXITED: set[int] = set()  # reaped since the main loop last looked: servers among them lose their channel


def reap(_signum: int, _frame: object) -> None:
    """Collect exited children (and servers re-parented to us) so none stays a zombie."""
    try:
        while True:
            pid = os.waitpid(-1, os.WNOHANG)[0]
            if pid <= 0:
                return
            EXITED.add(pid)
            if pid == COLLECTOR["pid"]:
                COLLECTOR["pid"] = 0  # the next spawn starts another
    except ChildProcessError:
        pass


def start_collector(tag: str) -> socket.socket | None:
    """Start the log collector, a fresh interpreter running this file; the socket that hands it logs.

    Spawned, not forked: a small process of its own rather than a copy of this one's pages. `tag`
    (this fork server's socket) names it in `ps`.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    os.set_inheritable(theirs.fileno(), True)
    script = os.path.abspath(__file__)
    argv = [sys.executable, "-I", "-S", script, "--collect", str(theirs.fileno()), tag]
    try:
        COLLECTOR["pid"] = os.posix_spawn(sys.executable, argv, {"PATH": "/usr/bin:/bin"})
    except OSError as exc:
        print(f"coursehub fork server: no log collector ({exc}); servers get a monitor each", file=sys.stderr)
        ours.close()
        return None
    finally:
        theirs.close()
    return ours


def _read_report(report: socket.socket, timeout: float) -> tuple[dict, list[int]] | str:
    """What the child that forks a server reports of it (see `child`), or why there is no report."""
    if not select.select([report], [], [], timeout)[0]:
        return f"no word from the child that starts it in {timeout:.0f} s"
    try:
        message, fds, _flags, _address = socket.recv_fds(report, 1 << 16, len(NAMESPACES) + 1)
    except OSError as exc:
        return f"its report could not be read ({exc})"
    if not message:
        return "the child that starts it exited first"
    try:
        record = json.loads(message)
        if "error" in record:
            raise ValueError(record["error"])
        int(record["pid"])
        if len(fds) != len(NAMESPACES) + 1:
            raise ValueError(f"a report with {len(fds)} descriptors")
    except (ValueError, KeyError, TypeError) as exc:
        for fd in fds:
            os.close(fd)
        return str(exc)
    return record, fds


class Channel:
    """A running server's kernel channel: its socket, what its kernels need, how many it may start.

    `output` is the server's output (the write end of its log's pipe, opened by root before the server
    ran), for its kernels: never anything the server could have replaced, as /proc/<pid>/fd/1 is.
    """

    __slots__ = ("sock", "record", "namespaces", "output", "budget")

    def __init__(self, sock: socket.socket, record: dict, fds: list[int]) -> None:
        self.sock, self.record = sock, record
        self.namespaces, self.output = fds[:-1], fds[-1]
        self.budget = Budget(KERNEL_RATE, KERNEL_BURST, time.monotonic())

    def close(self) -> None:
        self.sock.close()
        for fd in (*self.namespaces, self.output):
            os.close(fd)


class ForkServer:
    """One socket for the hub's requests, one per running server for its kernel requests."""

    def __init__(self, path: str) -> None:
        self.path = path
        if os.path.exists(path):
            os.unlink(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        os.chmod(path, 0o600)
        self.server.listen(128)
        self.collector = start_collector(path)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.server, selectors.EVENT_READ)
        self.channels: dict[int, Channel] = {}
        self.paused: list[tuple[float, int, Channel]] = []  # (when to read again, tie-breaker, channel)
        self.pauses = itertools.count()
        # Spawn requests carry a user's API token, kernel requests the server's environment: both are
        # read into a buffer that is zeroed after each fork and parsed only in the child, so no later
        # child inherits an earlier secret.
        self.buf = bytearray(REQUEST_MAX)
        self.kernel_buf = bytearray(REQUEST_MAX)
        self.own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY)

    def run(self) -> None:
        while True:
            timeout = max(0.0, self.paused[0][0] - time.monotonic()) if self.paused else None
            events = self.selector.select(timeout)
            self.forget_exited()
            for key, _ in events:
                if key.fileobj is self.server:
                    self.answer()
                elif key.fd in self.channels:
                    self.kernel_request(self.channels[key.fd])
            now = time.monotonic()
            while self.paused and self.paused[0][0] <= now:
                channel = heapq.heappop(self.paused)[2]
                if self.channels.get(channel.sock.fileno()) is channel:
                    self.selector.register(channel.sock, selectors.EVENT_READ)

    def forget_exited(self) -> None:
        """Close the channels of servers that have exited: what they still had queued starts nothing."""
        exited = set(EXITED)
        EXITED.difference_update(exited)
        for channel in [c for c in self.channels.values() if int(c.record["pid"]) in exited]:
            self.close_channel(channel)

    def close_channel(self, channel: Channel) -> None:
        fd = channel.sock.fileno()
        if fd in self.selector.get_map():
            self.selector.unregister(fd)
        del self.channels[fd]
        channel.close()

    def answer(self) -> None:
        """One request of the hub's: a ping, or a spawn."""
        conn, _ = self.server.accept()
        with conn:
            size = _receive(conn, self.buf)
            if self.buf.find(b'"spawn"', 0, size) < 0:
                conn.sendall(b'{"ok": true, "pid": %d, "version": "%s"}\n' % (os.getpid(), VERSION))
            else:
                try:
                    conn.sendall(self.spawn(conn, size))
                except OSError as exc:  # e.g. out of descriptors: this spawn fails, the server goes on
                    conn.sendall(json.dumps({"ok": False, "error": str(exc)}).encode() + b"\n")
            self.buf[:size] = bytes(size)

    def spawn(self, conn: socket.socket, size: int) -> bytes:
        """Fork the child that starts a server; the answer for the hub once it has reported."""
        if not COLLECTOR["pid"]:
            if self.collector is not None:
                self.collector.close()
            self.collector = start_collector(self.path)
        report, reported = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = os.fork()
        except OSError:
            for sock in (report, reported, ours, theirs):
                sock.close()
            raise
        if pid == 0:
            try:
                self.server.close()
                conn.close()
                report.close()
                ours.close()
                child(json.loads(bytes(self.buf[:size])), self.collector, reported, theirs.detach())
            except BaseException as exc:  # noqa: BLE001 - report, never return into the loop
                traceback.print_exc()
                try:  # and tell the hub, which logs it
                    reported.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
                except OSError:
                    pass
            finally:
                os._exit(71)
        self.buf[:size] = bytes(size)
        reported.close()
        theirs.close()
        got = _read_report(report, REPORT_TIMEOUT)
        report.close()
        if isinstance(got, str):
            ours.close()
            # Late: it must not start a server nobody waits for. Unless reaped already (then its pid
            # may be anybody's): SIGCHLD held meanwhile, so that reap cannot run in between.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                if pid not in EXITED:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            print(f"coursehub fork server: a sandbox did not start: {got}", file=sys.stderr)
            return json.dumps({"ok": False, "error": f"the sandbox did not start: {got}"}).encode() + b"\n"
        record, namespaces = got
        self.channels[ours.fileno()] = Channel(ours, record, namespaces)
        self.selector.register(ours, selectors.EVENT_READ)
        return b'{"ok": true, "pid": %d}\n' % int(record["pid"])

    def kernel_request(self, channel: Channel) -> None:
        """Fork a kernel for a message on a server's channel (unread here), within its budget."""
        now = time.monotonic()
        wait = channel.budget.wait(now)
        if wait:  # the message waits in the socket; so do the sender's next ones
            self.selector.unregister(channel.sock)
            heapq.heappush(self.paused, (now + wait, next(self.pauses), channel))
            return
        try:
            size = channel.sock.recv_into(self.kernel_buf, 0, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            size = 0
        if not size:  # the server is gone (or sent nothing: it gets no more kernels from here)
            self.close_channel(channel)
            return
        channel.budget.tokens -= 1
        # The child is born in the server's PID namespace (setns sets where the next children go), so
        # it becomes the kernel itself, without a second fork (10 ms of a process this size); this
        # process's own namespace is set back at once, before anything else is forked.
        pid = -1
        try:
            _check(libc.setns(channel.namespaces[PID_NAMESPACE], CLONE_NEWPID), "setns pid")
            pid = os.fork()
        except OSError as exc:  # the server's namespace has ended, or no memory
            print(f"coursehub fork server: no kernel forked ({exc})", file=sys.stderr)
        if pid == 0:
            code = 0
            try:
                kernel_child(channel, bytes(self.kernel_buf[:size]))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - report, never return into the loop
                traceback.print_exc()
                code = 1
            finally:
                os._exit(code)
        _check(libc.setns(self.own_pid_namespace, CLONE_NEWPID), "setns pid back")  # or stop here
        self.kernel_buf[:size] = bytes(size)


def serve(path: str) -> None:
    """Pre-import the stack, then answer the hub's pings and spawns and the servers' kernel requests."""
    add_environment_path()
    skip_yarn_config()
    for module in PRELOAD:
        try:
            __import__(module)
        except ImportError:
            pass
    preload_server_handlers()
    gc.collect()
    gc.freeze()  # pages shared with children stay shared (no refcount writes on old objects)
    signal.signal(signal.SIGCHLD, reap)
    # Servers outlive the child that forks them: they become this process's children, reaped here.
    _check(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "subreaper")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # seven descriptors per running server
    ForkServer(path).run()


def _receive(conn: socket.socket, buf: bytearray) -> int:
    """Read one newline-terminated request into `buf` (no copies left behind); its length."""
    view, size = memoryview(buf), 0
    while size < len(buf):
        got = conn.recv_into(view[size:])
        if not got:
            break
        size += got
        if buf.find(b"\n", size - got, size) >= 0:
            break
    view.release()
    return size


if __name__ == "__main__":
    if sys.argv[1] == "--collect":  # the log collector: FD is its end of the fork server's socket
        collect(socket.socket(fileno=int(sys.argv[2])))
    elif sys.argv[1] == "--log":  # exec mode's log writer: stdin to LOG, at most MAX bytes
        path, cap = sys.argv[2], int(sys.argv[3])
        copy_capped(
            0, os.open(os.path.dirname(path), os.O_RDONLY | os.O_DIRECTORY), os.path.basename(path), cap
        )
    else:
        serve(sys.argv[1])
