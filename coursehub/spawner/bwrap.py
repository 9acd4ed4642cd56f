"""The bubblewrap command line of a user server: a pure function of paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# Under /run, which the sandbox replaces with a tmpfs: a mount point can be made there.
COURSE_MOUNT = Path("/run/coursehub/course")

# Merge the course into ~/<course>/ without overwriting anything the student has
# (cp -n), then become the server. Runs as the user, inside the sandbox, so a
# symlink planted in the home cannot make a privileged process write elsewhere.
SYNC_AND_EXEC = (
    'if [ -n "$COURSEHUB_COURSE" ] && [ -d "$COURSEHUB_COURSE_SRC" ]; then '
    'mkdir -p "$HOME/$COURSEHUB_COURSE" && '
    'cp -Rn "$COURSEHUB_COURSE_SRC/." "$HOME/$COURSEHUB_COURSE/" 2>/dev/null; fi; '
    'exec "$@"'
)


@dataclass(frozen=True)
class SandboxSpec:
    """What a server's sandbox shows and hides."""

    home: Path
    home_root: Path
    environment: Path
    course_src: Path | None = None
    hidden: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()
    hostname: str = "jupyter"
    extra_binds: tuple[tuple[Path, Path], ...] = field(default=())


def bwrap_args(spec: SandboxSpec, command: list[str], bwrap: str = "bwrap") -> list[str]:
    """argv that runs `command` in a sandbox: read-only root, own home, private /tmp and PIDs."""
    args = [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
        "--tmpfs",
        "/run",
    ]
    for path in (spec.home_root, *spec.hidden):
        args += ["--tmpfs", str(path)]
    # Binds come after the tmpfs that hide their parents, so they show through.
    args += ["--ro-bind", str(spec.environment), str(spec.environment)]
    for path in spec.readonly:
        args += ["--ro-bind", str(path), str(path)]
    if spec.course_src is not None:
        args += ["--ro-bind", str(spec.course_src), str(COURSE_MOUNT)]
    for src, dest in spec.extra_binds:
        args += ["--bind", str(src), str(dest)]
    args += [
        "--bind",
        str(spec.home),
        str(spec.home),
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
