"""The sandbox every build step runs in: an unprivileged builder account, bubblewrap, its own cgroup.

Course repositories and what they pull in are untrusted: their setup.py, build backends and
postBuild run here, never as root, never with the hub's environment or state folder in view.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from ..errors import EnvironmentBuildError, SandboxError
from ..spawner import cgroups, netns
from ..spawner.accounts import _file_lock
from ..spawner.bwrap import find_bwrap, host_root
from ..spawner.view import RootEntry, root_bind_args
from . import buildnet

log = logging.getLogger(__name__)
BUILDER = "coursehub-builder"
# The group of each build's proxy, the one way out of the build's namespace: the build's nftables
# table (spawner/netns.py build_ruleset) filters its sockets. Not the builder's own group: the git
# fetch, also the builder's, connects where the admin's URL says (a campus git server, say).
BUILD_NET_GROUP = "coursehub-buildnet"
PROXY_SCRIPT = Path(__file__).resolve().parent.parent / "payloads" / "buildproxy.py"
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
BUILD_MEMORY = 4 << 30
BUILD_PIDS = 1024
BUILD_CPU = 2.0
# What one build may write (its environment, caches, the course copy): a hostile repository must not
# fill the state folder's disk. Counted as the builder's own files, polled every DISK_POLL seconds.
BUILD_DISK = 10 << 30
DISK_POLL = 2.0
# What a build may take from the admin's environment: how to reach the package index, nothing else.
INDEX_VARIABLES = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NATIVE_TLS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "UV_HTTP_RETRIES",
    "UV_HTTP_TIMEOUT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
# uv gives up on a download after 3 retries (~45 s of connect timeouts); an index that stalls for a
# minute then failed a whole first start (seen: five hubs' first builds at once). An admin's own value wins.
HTTP_RETRIES = "8"


def build_environ(
    work: Path, inherited: Mapping[str, str], path: str = SYSTEM_PATH, proxy: str | None = None
) -> dict[str, str]:
    """The whole environment of a build step (pure): a private home and uv cache, copies only.

    `proxy`: the build's own, the one way out of its namespace, for every URL (no NO_PROXY).
    """
    env = {"UV_HTTP_RETRIES": HTTP_RETRIES}
    env.update({name: inherited[name] for name in INDEX_VARIABLES if name in inherited})
    if proxy is not None:
        for name in ("NO_PROXY", "no_proxy"):
            env.pop(name, None)
        env.update(dict.fromkeys(PROXY_VARIABLES, proxy))
    env.update(
        PATH=path,
        HOME=str(work / "home"),
        LANG="C.UTF-8",
        TMPDIR="/tmp",
        UV_CACHE_DIR=str(work / "cache"),
        # Copies, never hard links: an installed file must not be an inode a cache shares.
        UV_LINK_MODE="copy",
        UV_PYTHON_DOWNLOADS="never",
        UV_NO_PROGRESS="1",
        GIT_TERMINAL_PROMPT="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def sandbox_argv(
    bwrap: str,
    writable: Sequence[tuple[Path, Path]],
    hidden: Sequence[Path],
    cwd: Path,
    command: Sequence[str],
    readable: Sequence[Path] = (),
    *,
    root: Sequence[RootEntry],
) -> list[str]:
    """bwrap argv of one build step (pure): read-only root (`root`: bwrap.host_root()), hidden state,
    only `writable` writable."""
    # The root one top-level entry at a time, never /run: a recursive bind of / failed when another
    # hub removed a network namespace meanwhile (spawner/view.py ROOT_REPLACED).
    args = [bwrap, *root_bind_args(root), "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for folder in ("/run", *map(str, hidden)):
        args += ["--tmpfs", folder]
    for path in readable:  # e.g. a course's local git repository under the host's /tmp
        args += ["--ro-bind", str(path), str(path)]
    tool = Path(command[0]) if command and os.path.isabs(command[0]) else None
    if tool and tool.parts[1:2] in (("tmp",), ("run",)) and not any(tool.is_relative_to(h) for h in hidden):
        # coursehub's own uv, when coursehub is installed under /tmp or /run (a clone in /tmp to try
        # it): the tmpfs above hides it, and the step would fail with bwrap's "No such file".
        args += ["--ro-bind", str(tool), str(tool)]
    for src, dst in writable:  # after the tmpfs that hide their parents, so they show through
        args += ["--bind", str(src), str(dst)]
    args += [
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "coursehub-build",
        "--die-with-parent",
        "--new-session",
        "--chdir",
        str(cwd),
        "--remount-ro",  # bwrap's own root tmpfs, once every mount point in it exists
        "/",
        "--",
        *command,
    ]
    return args


def builder_account() -> tuple[int, int]:
    """uid and gid of the account builds run as (created once; the caller's own when not root)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    with _file_lock():
        try:
            entry = pwd.getpwnam(BUILDER)
        except KeyError:
            entry = None
        if entry is None:
            cmd = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent"]
            cmd += ["--shell", "/usr/sbin/nologin", "--comment", "coursehub builder", "--user-group", BUILDER]
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
            if result.returncode != 0:
                raise SandboxError(f"could not create the build account {BUILDER}: {result.stderr.strip()}")
            entry = pwd.getpwnam(BUILDER)
    if entry.pw_uid == 0:
        raise SandboxError(f"the build account {BUILDER} has uid 0; remove it (coursehub recreates it)")
    return entry.pw_uid, entry.pw_gid


def build_net_group() -> int:
    """gid of BUILD_NET_GROUP (created once; root only)."""
    with _file_lock():
        try:
            return grp.getgrnam(BUILD_NET_GROUP).gr_gid
        except KeyError:
            pass
        cmd = ["groupadd", "--system", BUILD_NET_GROUP]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SandboxError(f"could not create the group {BUILD_NET_GROUP}: {result.stderr.strip()}")
        return grp.getgrnam(BUILD_NET_GROUP).gr_gid


class BuildBox:
    """One build's sandbox: a private work folder (uv cache, home, course copy) and a cgroup per step."""

    def __init__(
        self,
        staging: Path,
        hidden: Sequence[Path],
        source: Path | None,
        timeout: float,
        readable: Sequence[Path] = (),
        network: buildnet.BuildNetwork | None = None,
    ) -> None:
        # `network`: steps run in the build's namespace, its proxy their one way out (buildnet.py). None:
        # the host's network, for the git fetch alone, which runs no course code and connects only
        # where the admin's URL (or Binder's checked pin, with redirects off) says.
        self.staging, self.hidden, self.source, self.timeout = staging, tuple(hidden), source, timeout
        self.readable = tuple(readable)
        self.network = network
        self.net: netns.BuildNet | None = None
        self.proxy: subprocess.Popen | None = None
        self.proxy_url: str | None = None
        # Decided before anything is made: an unregistered repository that cannot be isolated is refused.
        self.notes: list[str] = []
        self.warning = buildnet.decide(network, buildnet.problems()) if network is not None else None
        if self.warning:
            self.notes.append(f"warning: {self.warning}")
        self.work = staging.with_name(staging.name + ".work")
        self.bwrap = find_bwrap()
        if self.bwrap is None:
            raise EnvironmentBuildError("bubblewrap is not installed: apt-get install bubblewrap")
        self.uid, self.gid = builder_account()
        self.net_gid = build_net_group() if network is not None and self.warning is None else self.gid

    def __enter__(self) -> BuildBox:
        try:
            self._make_work()
            if self.network is not None and self.warning is None:
                self._make_network(self.network)
        except BaseException:
            self.__exit__()
            raise
        return self

    def _make_work(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(mode=0o700)
        for sub in ("home", "cache"):
            (self.work / sub).mkdir(mode=0o700)
        if self.source is not None:
            # A private, writable copy: setup.py writes into its source tree, the checkout stays intact.
            shutil.copytree(self.source, self.work / "src", symlinks=True)
        self.staging.mkdir(mode=0o755)
        # Handing over folders before anything is installed: nothing is chowned to the builder later.
        for path in (self.staging, *_tree(self.work)):
            os.chown(path, self.uid, self.gid, follow_symlinks=False)

    def _make_network(self, policy: buildnet.BuildNetwork) -> None:
        """The build's namespace, its proxy, then its table: all before the first step."""
        services, warnings = buildnet.index_services(buildnet.index_endpoints(os.environ), buildnet.resolve)
        self.notes += [f"warning: {w}" for w in warnings]
        self.net = netns.create_build()
        port = self._start_proxy(self.net)
        netns.filter_build(
            self.net,
            self.net_gid,
            port,
            allow=policy.allow,
            deny=policy.deny,
            dns=buildnet.resolvers(),
            services=services,
        )
        self.proxy_url = f"http://{self.net.gateway}:{port}"

    def __exit__(self, *exc: object) -> None:
        self._end_network()  # every step's processes have ended with their cgroups
        remove_tree(self.work)

    def _start_proxy(self, net: netns.BuildNet) -> int:
        """Start the build's proxy on the builds' gateway as the builder, in the filtered group; its port."""
        python = shutil.which("python3", path=SYSTEM_PATH)
        if python is None:
            raise EnvironmentBuildError("no python3 on /usr/bin for the build's proxy")
        upstream = buildnet.upstream_proxy(os.environ)
        argv = [python, "-I", "-c", PROXY_SCRIPT.read_text(), net.gateway, *([upstream] if upstream else [])]
        self.proxy = subprocess.Popen(
            argv,
            env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"},
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
            preexec_fn=_become(None, self.uid, self.net_gid),
        )
        assert self.proxy.stdout is not None
        ready = threading.Timer(30, self.proxy.kill)  # a proxy that never says its port
        ready.start()
        try:
            line = self.proxy.stdout.readline().strip()
        finally:
            ready.cancel()
        if not line.isdigit():
            raise EnvironmentBuildError("the build's network proxy did not start")
        return int(line)

    def _end_network(self) -> None:
        if self.proxy is not None:
            self.proxy.kill()
            self.proxy.wait(timeout=30)
            if self.proxy.stdout is not None:
                self.proxy.stdout.close()
            self.proxy = None
        if self.net is not None:
            netns.remove_build(self.net)
            self.net = None

    def writable(self) -> list[tuple[Path, Path]]:
        binds = [(self.staging, self.staging), (self.work, self.work)]
        if self.source is not None:
            binds.append((self.work / "src", self.source))
        return binds

    def run(
        self,
        name: str,
        command: Sequence[str],
        on_output: Callable[[str], None],
        path: str = SYSTEM_PATH,
        cwd: Path | None = None,
    ) -> None:
        """Run one step as the builder in the sandbox; raise naming the step when it fails."""
        assert self.bwrap is not None
        cwd = cwd or self.work / "home"
        argv = sandbox_argv(
            self.bwrap, self.writable(), self.hidden, cwd, command, self.readable, root=host_root()
        )
        group = cgroups.group_for(f"build-{self.staging.name.strip('.')}") if os.geteuid() == 0 else None
        if group is not None:
            cgroups.create(group, memory=BUILD_MEMORY, cpu=BUILD_CPU, pids=BUILD_PIDS)
        expired, overfull, ended = threading.Event(), threading.Event(), threading.Event()

        def stop(reason: threading.Event = expired) -> None:
            reason.set()
            proc.kill()
            if group is not None:
                group.kill_and_remove()

        def watch_disk() -> None:
            while not ended.wait(DISK_POLL):
                if builder_bytes((self.staging, self.work), self.uid) > BUILD_DISK:
                    stop(overfull)
                    return

        try:
            proc = subprocess.Popen(
                argv,
                env=build_environ(self.work, os.environ, path, self.proxy_url),
                cwd="/",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,
                preexec_fn=_become(group, self.uid, self.gid, self.net),
            )
            timer = threading.Timer(self.timeout, stop)
            timer.start()
            watcher = threading.Thread(target=watch_disk, name="coursehub-build-disk", daemon=True)
            watcher.start()
            try:
                assert proc.stdout is not None
                for line in proc.stdout:
                    on_output(line)
                code = proc.wait()
            finally:
                timer.cancel()
                ended.set()
                watcher.join()
        finally:
            if group is not None:
                group.kill_and_remove()  # the step's whole process tree ends with it
        if overfull.is_set():
            raise EnvironmentBuildError(
                f"environment build stopped at step '{name}': it wrote more than its disk limit of "
                f"{BUILD_DISK / (1 << 30):.1f} GiB"
            )
        if expired.is_set():
            raise EnvironmentBuildError(
                f"environment build stopped at step '{name}': over its time limit of {self.timeout:.0f} s"
            )
        if code != 0:
            raise EnvironmentBuildError(f"environment build failed at step '{name}' (exit status {code})")


def builder_bytes(roots: Sequence[Path], uid: int) -> int:
    """Disk used by `uid`'s files under `roots` (files linked from a stack environment are root's)."""
    return sum(st.st_blocks * 512 for root in roots for _, st in _entries(root) if st.st_uid == uid)


def _become(
    group: cgroups.Cgroup | None, uid: int, gid: int, net: netns.BuildNet | None = None
) -> Callable[[], None]:
    """Between fork and exec: join the step's cgroup and the build's namespace, then become the builder."""
    namespace = netns.build_namespace_path(net) if net is not None else None

    def preexec() -> None:
        if group is not None:
            group.join(os.getpid())
        if namespace is not None:
            netns.join(namespace)
        if os.geteuid() == 0:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)

    return preexec


def remove_tree(path: Path) -> None:
    """Delete a build's folder (rm is several times faster than shutil.rmtree on a uv cache)."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], timeout=600, check=False)


def _tree(root: Path) -> list[Path]:
    """`root` and everything under it, symlinks not followed."""
    return [Path(path) for path, _ in _entries(root)]


def _entries(root: Path) -> Iterator[tuple[str, os.stat_result]]:
    """`root` and everything under it with their lstat, symlinks not followed; vanished entries skipped.

    One scandir per folder and one lstat per entry: these walks run over the ~28,000 files of a
    stack environment, twice per build and every DISK_POLL seconds of a build step.
    """
    try:
        yield str(root), os.lstat(root)
    except FileNotFoundError:
        return
    folders = [str(root)]
    while folders:
        try:
            with os.scandir(folders.pop()) as listing:
                for entry in listing:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:  # removed while walked (a disk poll during a step)
                        continue
                    yield entry.path, st
                    if stat.S_ISDIR(st.st_mode):
                        folders.append(entry.path)
        except (FileNotFoundError, NotADirectoryError):
            continue


def hand_over(root: Path, uid: int, gid: int, folders_only: bool = False) -> None:
    """Give a tree to the builder before a build step; with `folders_only` its files stay root's."""
    for path, st in _entries(root):
        if folders_only and not stat.S_ISDIR(st.st_mode):
            continue
        os.chown(path, uid, gid, follow_symlinks=False)


def seal(root: Path) -> None:
    """Make a finished build root's and read-only for everyone else (run once no builder process is left).

    lchown and no chmod through symlinks: the builder chose this tree's shape. What is already
    root's with its final mode is left as it is: most of a course's tree are the stack's files,
    linked and sealed before (a chmod there would also be a write to the stack's inode).
    """
    for path, st in _entries(root):
        if st.st_uid != 0 or st.st_gid != 0:
            os.chown(path, 0, 0, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            continue
        mode = 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644
        # A chown clears set-id bits: the mode read before it decides, and any such bit differs.
        if stat.S_IMODE(st.st_mode) != mode:
            os.chmod(path, mode)


def inside(root: Path, path: Path) -> Path:
    """`path`, refusing it when it or a folder between it and `root` is a symlink (builder-made tree)."""
    rel = path.relative_to(root)
    current = root
    for part in rel.parts:
        current = current / part
        if current.is_symlink():
            raise EnvironmentBuildError(f"the environment has a symlink at {current}; not writing there")
    return path


def safe_write(root: Path, path: Path, text: str) -> None:
    """Write `path` under builder-made `root` as root: no symlink followed, replaced atomically."""
    inside(root, path.parent).mkdir(parents=True, exist_ok=True)
    inside(root, path)
    tmp = path.with_name(f".{path.name}.coursehub-tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
