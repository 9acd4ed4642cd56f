"""The bubblewrap command line of a user server: a pure function of paths."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

# Under /run, which the sandbox replaces with a tmpfs: mount points can be made there.
MOUNTS = Path("/run/coursehub")
COURSE_MOUNT = MOUNTS / "course"
SYNC_MOUNT = MOUNTS / "sync.py"

# Merge the course into ~/<course>/ with nbgitpuller's rules, then become the server. This
# runs as the user, inside the sandbox, so a symlink planted in the home cannot make a
# privileged process write elsewhere. A failed merge is reported but does not stop the server.
SYNC_AND_EXEC = (
    'if [ -n "$COURSEHUB_COURSE" ] && [ -f /run/coursehub/sync.py ]; then '
    'python3 /run/coursehub/sync.py /run/coursehub/course "$HOME/$COURSEHUB_COURSE" '
    '|| echo "coursehub: course sync failed" >&2; fi; '
    'exec "$@"'
)


@dataclass(frozen=True)
class SandboxSpec:
    """What a server's sandbox shows and hides."""

    home: Path
    home_root: Path
    environment: Path
    course_src: Path | None = None
    sync_script: Path | None = None
    shared_data: Path | None = None
    scratch: Path | None = None
    hidden: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()
    hostname: str = "jupyter"
    # Bytes of the private /tmp (and half of it for /dev/shm); 0 leaves the kernel's default,
    # half the machine's RAM, where a full /tmp ends in the OOM killer rather than "disk full".
    tmp_size: int = 0


def find_bwrap() -> str | None:
    """bubblewrap's absolute path, looked up once in the admin's PATH (never a user's or a course's)."""
    found = shutil.which("bwrap", path=os.environ.get("PATH", os.defpath))
    return os.path.realpath(found) if found else None


# Tmpfs that only hide host folders: nothing needs to write there.
HIDING_TMPFS_SIZE = 1 << 20


def _sized(size: int) -> list[str]:
    return ["--size", str(size)] if size > 0 else []


def bwrap_args(spec: SandboxSpec, command: list[str], bwrap: str = "bwrap") -> list[str]:
    """argv that runs `command` in a sandbox: read-only root, own home, private /tmp and PIDs."""
    args = [bwrap, "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    args += [*_sized(spec.tmp_size), "--tmpfs", "/tmp", *_sized(spec.tmp_size // 2), "--tmpfs", "/dev/shm"]
    hiding = ["/run", *map(str, (spec.home_root, *spec.hidden))]
    for folder in hiding:
        args += ["--size", str(HIDING_TMPFS_SIZE), "--tmpfs", folder]
    # Binds come after the tmpfs that hide their parents, so they show through.
    args += ["--ro-bind", str(spec.environment), str(spec.environment)]
    for path in spec.readonly:
        args += ["--ro-bind", str(path), str(path)]
    if spec.course_src is not None:
        args += ["--ro-bind", str(spec.course_src), str(COURSE_MOUNT)]
    if spec.sync_script is not None:
        args += ["--ro-bind", str(spec.sync_script), str(SYNC_MOUNT)]
    if spec.shared_data is not None:
        args += ["--ro-bind", str(spec.shared_data), str(MOUNTS / "data")]
    if spec.scratch is not None:
        args += ["--bind", str(spec.scratch), str(MOUNTS / "scratch")]
    args += [
        "--bind",
        str(spec.home),
        str(spec.home),
        # In bwrap's user namespace those tmpfs belong to the user: make them read-only once
        # the binds inside them exist, so they cannot become more unbounded scratch space.
        *[arg for folder in hiding for arg in ("--remount-ro", folder)],
        "--chdir",
        str(spec.home),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        spec.hostname,
        "--new-session",
        "--",
        "/bin/sh",
        "-c",
        SYNC_AND_EXEC,
        "coursehub-start",
        *command,
    ]
    return args
