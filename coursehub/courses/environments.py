"""Content-addressed user environments built with uv: same spec, same folder, built once."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentBuildError
from .buildbox import BuildBox, hand_over, inside, safe_write, seal
from .buildnet import ISOLATED, BuildNetwork
from .stacklock import HEADER, LOCK, compile_command, lock_pins, lock_text

# Files installed into environments (they import nothing of coursehub).
PAYLOADS = Path(__file__).resolve().parent.parent / "payloads"

log = logging.getLogger(__name__)
READY = ".coursehub-ready"
STACK_VERSIONS = "coursehub-stack-versions.txt"  # in a stack environment: what its courses are built with
# coursehub's own server stack, pinned so that every environment serves the same UI.
# nbgitpuller keeps instructors' existing /hub/user-redirect/git-pull links working;
# jupyter-resource-usage shows the server's memory against its limit in JupyterLab's status bar.
SERVER_STACK = (
    "jupyterlab==4.6.6",
    "ipykernel==7.4.0",
    "jupyter-server==2.21.1",
    "nbgitpuller==1.3.0",
    "jupyter-resource-usage==1.3.0",
    # Assignments for courses with `grading: nbgrader`; its extensions are off in every other course.
    "nbgrader==0.9.6",
)
PYTHON_CANDIDATES = ("/usr/bin/python3", "/usr/local/bin/python3")
BUILD_TIMEOUT = 1800
# Kernels get a process cap below the server's cgroup pids limit (COURSEHUB_KERNEL_NPROC,
# set per server), so that a fork bomb in a kernel leaves the server room to keep running.
KERNEL_ARGV = [
    "/bin/bash",
    "-c",
    'ulimit -u "${COURSEHUB_KERNEL_NPROC:-unlimited}" && exec "$@"',
    "coursehub-kernel",
    "{python}",
    "-m",
    "ipykernel_launcher",
    "-f",
    "{connection_file}",
]
LAYOUT_VERSION = 12  # bump when the environment layout below changes
# The files coursehub copies into every environment: a change to them is a new environment too.
CULL_WARNING = "coursehub-cullwarn"
INSTALLED_PAYLOADS = ("kernels.py", "oomnotice.py", "activity.py", "contents.py", "cullwarn.js")


@dataclass(frozen=True)
class EnvSpec:
    """Everything that decides an environment's contents."""

    python: str
    packages: tuple[str, ...]
    extra: str = ""  # hash of anything else that shapes the environment (course files)
    post_build: Path | None = None  # a course's postBuild script, run in the new environment
    source: Path | None = None  # the course checkout the build reads (shown as a private copy)
    # The stack environment's exact versions: a course gets the very packages the fork server pre-imports.
    constraints: str = ""
    # A hash-pinned lock installed instead of `packages` (the stack environment's: stacklock.py).
    lock: str = ""

    @property
    def digest(self) -> str:
        """A short hash naming the environment's folder."""
        text = json.dumps(
            {
                "python": self.python,
                "packages": sorted(self.packages),
                "layout": LAYOUT_VERSION,
                "payloads": payloads_digest(),
                "extra": self.extra,
                **({"constraints": self.constraints} if self.constraints else {}),
                **({"lock": hashlib.sha256(self.lock.encode()).hexdigest()} if self.lock else {}),
            }
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def payloads_digest() -> str:
    """A hash of the files coursehub copies into every environment."""
    text = b"".join((PAYLOADS / name).read_bytes() for name in INSTALLED_PAYLOADS)
    return hashlib.sha256(text).hexdigest()[:16]


def server_stack() -> tuple[str, ...]:
    """The packages every environment gets, with the hub's own JupyterHub version."""
    import jupyterhub

    return (f"jupyterhub=={jupyterhub.__version__}", *SERVER_STACK)


def stack_spec(python: str) -> EnvSpec:
    """The environment of coursehub's own server stack for `python`: nothing of any course in it."""
    return EnvSpec(python=python, packages=server_stack(), lock=lock_text(server_stack()))


def refresh_lock() -> None:
    """Compile the stack's hash-pinned lock again from SERVER_STACK (`./run lock`; needs the index)."""
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        requirements = Path(folder) / "stack.in"
        requirements.write_text("".join(f"{pin}\n" for pin in server_stack()))
        # Relative: the lock says "via -r stack.in", the same on every refresh.
        command = compile_command(uv_binary(), Path(requirements.name), LOCK)
        subprocess.run(command, check=True, timeout=600, cwd=folder)
    LOCK.write_text(HEADER + LOCK.read_text())
    print(f"{LOCK}: {len(lock_pins(LOCK.read_text()))} distributions pinned with their hashes")


def installed_versions(env: Path) -> str:
    """`name==version` lines of every distribution in an environment, read from its metadata (no code run)."""
    lines = set()
    for metadata in env.glob("lib/python3*/site-packages/*.dist-info/METADATA"):
        fields: dict[str, str] = {}
        with metadata.open(errors="replace") as f:
            for line in f:
                if not line.strip():
                    break  # the headers end at the first blank line
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
        if fields.get("name") and fields.get("version") and fields["name"] != "coursehub-kernels":
            lines.add(f"{fields['name']}=={fields['version']}")
    return "".join(f"{line}\n" for line in sorted(lines, key=str.lower))


def stack_constraints(stack_env: Path) -> str:
    """The constraints every course environment of this stack environment is built with."""
    return (stack_env / STACK_VERSIONS).read_text()


def stack_store() -> Path:
    """Where finished stack environments are kept for every hub of this machine (root's cache home)."""
    explicit = os.environ.get("COURSEHUB_CACHE_DIR")
    if explicit:
        return Path(explicit) / "stacks"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "coursehub" / "stacks"


def world_runnable(path: Path) -> bool:
    """True when an unprivileged user can execute `path` (every parent searchable)."""
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    if not real.stat().st_mode & stat.S_IXOTH:
        return False
    return all(p.stat().st_mode & stat.S_IXOTH for p in real.parents)


def find_user_python(explicit: Path | None = None) -> Path:
    """An interpreter users can run: the configured one, or the first suitable candidate."""
    candidates = [explicit] if explicit else [Path(sys.executable), *map(Path, PYTHON_CANDIDATES)]
    for candidate in candidates:
        if candidate and world_runnable(candidate) and _version_ok(candidate):
            return candidate
    raise EnvironmentBuildError(
        "no Python >= 3.9 that unprivileged users can run was found "
        f"(tried {', '.join(map(str, candidates))}); install Debian's python3-venv "
        "or set sandbox.python in coursehub.yaml"
    )


def _version_ok(python: Path) -> bool:
    code = "import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)"
    return subprocess.run([str(python), "-c", code], timeout=30).returncode == 0


def uv_binary() -> str:
    """The uv executable installed with coursehub."""
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise EnvironmentBuildError("uv is missing: reinstall coursehub (it depends on uv)") from None
        return found


def ensure_environment(
    spec: EnvSpec,
    envs_dir: Path,
    on_line: Callable[[str], None] | None = None,
    hidden: Sequence[Path] = (),
    seed: Path | None = None,
    network: BuildNetwork = ISOLATED,
) -> Path:
    """The environment for `spec`, built (atomically, in the build sandbox) if it is not there yet.

    `seed`: a finished environment `spec` only adds to (the course's stack environment), which the
    build starts from instead of installing every package again. `network`: what its steps may reach.
    """
    target = envs_dir / spec.digest
    if (target / READY).exists():
        return target
    envs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(envs_dir, 0o755)
    staging = envs_dir / f".{spec.digest}.{os.getpid()}.{threading.get_ident()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    log_path = envs_dir / f"{spec.digest}.log"
    # The stack's environment is the same for every hub of this machine: built once, then cloned.
    stored = stack_store() / spec.digest if spec == stack_spec(spec.python) else None
    if stored is not None and (stored / READY).exists() and _clone(stored, staging):
        install_kernelspec(staging, final=target)  # a new file: the clone's links stay the store's
        return _swap_in(staging, target)
    started = time.monotonic()
    # The state folder (database, secrets, other environments) is out of the build's sight.
    box = BuildBox(staging, (envs_dir.parent, *hidden), spec.source, BUILD_TIMEOUT, network=network)
    try:
        with log_path.open("w") as log_file, box:
            for note in box.notes:
                log.warning("building %s: %s", spec.digest, note)
                log_file.write(note + "\n")
                if on_line:
                    on_line(note)
            constraints = None
            if spec.constraints:
                constraints = box.work / "stack-versions.txt"
                safe_write(box.work, constraints, spec.constraints)
            lock = None
            if spec.lock:
                lock = box.work / "stack-lock.txt"
                safe_write(box.work, lock, spec.lock)
            if seed is not None:
                _seed(staging, seed, spec.post_build is None, box)
            for name, cmd, kwargs in _build_steps(spec, staging, constraints, seed is not None, lock):
                _run_step(box, name, cmd, log_file, log_path, on_line, **kwargs)
        # No builder process is left: from here the tree is root's and nobody else can change it.
        seal(staging)
        install_kernelspec(staging, final=target)
        if stored is not None:
            safe_write(staging, staging / STACK_VERSIONS, installed_versions(staging))
        install_kernels_module(staging)
        install_lab_overrides(staging)
        install_cull_warning(staging)
        seconds = round(time.monotonic() - started, 1)
        safe_write(staging, staging / READY, json.dumps({"seconds": seconds}))
        seal(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # the previous environment stays in service
        raise
    if stored is not None:
        _keep(staging, stored)
    return _swap_in(staging, target)


def _swap_in(staging: Path, target: Path) -> Path:
    """Rename a finished environment into place, unless a concurrent build finished first."""
    if target.exists():
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.rename(staging, target)
    return target


def _hard_link_copy(source: Path, target: Path) -> bool:
    """`target` as a tree of new folders whose files are hard links to `source`'s; False if impossible.

    Safe for sealed stack environments only: every file is root's and writable by nobody else, so a
    file shared by two trees can be changed through neither (unlike the cache links of issue 3).
    """
    result = subprocess.run(["cp", "-al", "--", str(source), str(target)], capture_output=True, timeout=600)
    if result.returncode != 0:  # e.g. the store and the state folder on different file systems
        shutil.rmtree(target, ignore_errors=True)
        log.info("no hard-link copy of %s: %s", source, result.stderr.decode(errors="replace").strip())
    return result.returncode == 0


def _clone(stored: Path, staging: Path) -> bool:
    """The stored stack environment as `staging` (hard links, a second or two instead of a build)."""
    shutil.rmtree(staging, ignore_errors=True)
    return _hard_link_copy(stored, staging)


def _keep(staging: Path, stored: Path) -> None:
    """Add a freshly built stack environment to the machine's store (root only; first one wins)."""
    if (stored / READY).exists():
        return
    stored.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(stored.parent, 0o700)
    partial = stored.with_name(f".{stored.name}.{os.getpid()}.{threading.get_ident()}")
    shutil.rmtree(partial, ignore_errors=True)
    if not _hard_link_copy(staging, partial):
        return
    try:
        os.rename(partial, stored)  # atomic: a stored environment is always whole
    except OSError:  # another hub stored it meanwhile
        shutil.rmtree(partial, ignore_errors=True)


def _seed(staging: Path, seed: Path, linked: bool, box: BuildBox) -> None:
    """Start a course's build from its stack environment: hard links, or copies when postBuild runs.

    Without this, uv installs the whole stack again from the build's private (empty) cache: a
    download of some 300 MiB, about a minute here, for a course that adds one package. Linked files
    stay root's and read-only, shared with the stack (and the machine's store) like a stack clone:
    the builder may add files and replace its own links, never change a shared inode. A postBuild
    may edit any file of its environment (e.g. `jupyter labextension disable`), so it gets copies.
    """
    flags = "-al" if linked else "-a"
    done = subprocess.run(["cp", flags, "--", f"{seed}/.", str(staging)], capture_output=True, timeout=600)
    if done.returncode != 0 and linked:  # e.g. another file system: copies are always possible
        log.info("no hard-link seed from %s: %s", seed, done.stderr.decode(errors="replace").strip())
        for child in staging.iterdir():  # cp would write through the links it made: start empty
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        return _seed(staging, seed, False, box)
    if done.returncode != 0:
        raise EnvironmentBuildError(
            f"could not copy the stack environment {seed} to start the build: "
            f"{done.stderr.decode(errors='replace').strip()[-400:]}"
        )
    for name in (READY, STACK_VERSIONS):  # the stack's own marks, not this environment's
        (staging / name).unlink(missing_ok=True)
    hand_over(staging, box.uid, box.gid, folders_only=linked)


def _build_steps(
    spec: EnvSpec,
    staging: Path,
    constraints: Path | None = None,
    seeded: bool = False,
    lock: Path | None = None,
) -> list[tuple[str, list[str], dict]]:
    """The commands that build an environment, each named for error messages, with how to run it."""
    python = str(staging / "bin" / "python")
    uv = uv_binary()
    pinned = ["--constraint", str(constraints)] if constraints else []
    # --no-deps: the lock is the whole environment, minus what stack-overrides.txt leaves out on purpose.
    wanted = ["--require-hashes", "--no-deps", "-r", str(lock)] if lock else list(spec.packages)
    # System site packages on, so that user site packages (pip install --user) are seen too.
    venv = [uv, "venv", "--relocatable", "--system-site-packages", "--seed", "--link-mode", "copy"]
    steps: list[tuple[str, list[str], dict]] = (
        []
        if seeded
        else [
            ("create venv", [*venv, "--python", spec.python, str(staging)], {}),
        ]
    )
    steps += [
        (
            "install packages",
            # Bytecode now: the environment is read-only once sealed, so without it every process
            # (each server and kernel in exec mode) compiled what it imported, every time.
            [uv, "pip", "install", "--link-mode", "copy", "--compile-bytecode", "--python", python]
            + [*pinned, *wanted],
            {},
        ),
    ]
    if spec.post_build is not None:
        # The course's own script, with the new environment first on PATH, in its checkout.
        path = f"{staging / 'bin'}:/usr/local/bin:/usr/bin:/bin"
        cwd = spec.source or spec.post_build.parent
        steps.append(("postBuild", ["/bin/bash", str(spec.post_build)], {"path": path, "cwd": cwd}))
    return steps


def install_kernelspec(env: Path, final: Path) -> None:
    """The environment's python3 kernelspec, run under the per-server process cap."""
    spec_file = env / "share" / "jupyter" / "kernels" / "python3" / "kernel.json"
    spec = json.loads(inside(env, spec_file).read_text())
    python = str(final / "bin" / "python")
    spec["argv"] = [python if part == "{python}" else part for part in KERNEL_ARGV]
    spec.setdefault("metadata", {})["kernel_provisioner"] = {"provisioner_name": "coursehub-fork"}
    safe_write(env, spec_file, json.dumps(spec, indent=1))


def install_kernels_module(env: Path) -> None:
    """The modules coursehub puts in every environment: coursehub_kernels, _oom, _activity, _contents."""
    (site,) = env.glob("lib/python3*/site-packages")
    # Copied as a file: it imports jupyter_client, which only the environment has.
    safe_write(env, site / "coursehub_kernels.py", (PAYLOADS / "kernels.py").read_text())
    dist = site / "coursehub_kernels-1.0.dist-info"
    safe_write(env, dist / "METADATA", "Metadata-Version: 2.1\nName: coursehub-kernels\nVersion: 1.0\n")
    safe_write(
        env,
        dist / "entry_points.txt",
        "[jupyter_client.kernel_provisioners]\ncoursehub-fork = coursehub_kernels:ForkProvisioner\n",
    )
    safe_write(env, dist / "RECORD", "")
    # coursehub_oom: the server's kernel connection, which tells a cell its kernel died of memory
    # (SandboxSpawner's arguments name it).
    safe_write(env, site / "coursehub_oom.py", (PAYLOADS / "oomnotice.py").read_text())
    # coursehub_activity: a server extension by which a busy kernel keeps its server from the culler.
    safe_write(env, site / "coursehub_activity.py", (PAYLOADS / "activity.py").read_text())
    # coursehub_contents: folder listings that survive a file renamed while they are taken.
    safe_write(env, site / "coursehub_contents.py", (PAYLOADS / "contents.py").read_text())


def install_cull_warning(env: Path) -> None:
    """coursehub-cullwarn, the JupyterLab extension that warns before the culler stops a server."""
    script = (PAYLOADS / "cullwarn.js").read_text()
    # A hand-written prebuilt extension (the file says why): JupyterLab finds it by its package.json
    # in share/jupyter/labextensions. The script's name carries its hash, so that a browser never
    # runs a cached older copy.
    load = f"static/remoteEntry.{hashlib.sha256(script.encode()).hexdigest()[:20]}.js"
    folder = env / "share" / "jupyter" / "labextensions" / CULL_WARNING
    package = {
        "name": CULL_WARNING,
        "version": "1.0.0",
        "description": "Warns before the hub stops an idle server (coursehub).",
        "jupyterlab": {"extension": True, "_build": {"load": load, "extension": "./extension"}},
    }
    safe_write(env, folder / "package.json", json.dumps(package, indent=1))
    safe_write(env, folder / load, script)


def install_lab_overrides(env: Path) -> None:
    """JupyterLab defaults for a class: no news or update checks reaching out to the internet."""
    overrides = env / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    safe_write(
        env,
        overrides,
        json.dumps(
            {
                "@jupyterlab/apputils-extension:notification": {
                    "fetchNews": "false",
                    "checkForUpdates": False,
                },
            },
            indent=1,
        ),
    )


def _run_step(
    box: BuildBox, name: str, cmd: Sequence[str], log_file, log_path: Path, on_line, **kwargs
) -> None:
    """Run one build step in the sandbox, teeing its output to the log; raise naming the step on failure."""
    log_file.write(f"$ {' '.join(cmd)}\n")
    log_file.flush()

    def output(line: str) -> None:
        log_file.write(line)
        if on_line:
            on_line(line.rstrip())

    try:
        box.run(name, cmd, output, **kwargs)
    except EnvironmentBuildError as exc:
        log_file.flush()
        tail = "\n".join(log_path.read_text().splitlines()[-15:])
        raise EnvironmentBuildError(f"{exc} (log: {log_path}):\n{tail}") from None
