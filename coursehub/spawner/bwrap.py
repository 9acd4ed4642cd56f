"""The bubblewrap command line of a user server: a pure function of paths."""

from __future__ import annotations

import os
import shutil

from .view import (
    COURSE_MOUNT,
    HIDING_TMPFS_SIZE,
    MOUNTS,
    SYNC_MOUNT,
    RootEntry,
    SandboxSpec,
    bwrap_mount_args,
    sandbox_view,
)

__all__ = [
    "COURSE_MOUNT",
    "HIDING_TMPFS_SIZE",
    "MOUNTS",
    "SYNC_MOUNT",
    "SandboxSpec",
    "bwrap_args",
    "find_bwrap",
    "host_root",
]


# Merge the course into ~/<course>/ with nbgitpuller's rules, then become the server. This
# runs as the user, inside the sandbox, so a symlink planted in the home cannot make a
# privileged process write elsewhere. A failed merge is reported but does not stop the server.
# -I: the merge (stdlib only) runs nothing of the user site (pip install --user), as the server.
SYNC_AND_EXEC = (
    'if [ -n "$COURSEHUB_COURSE" ] && [ -f /run/coursehub/sync.py ]; then '
    'python3 -I /run/coursehub/sync.py /run/coursehub/course "$HOME/$COURSEHUB_COURSE" '
    '|| echo "coursehub: course sync failed" >&2; fi; '
    'exec "$@"'
)


def find_bwrap() -> str | None:
    """bubblewrap's absolute path, looked up once in the admin's PATH (never a user's or a course's)."""
    found = shutil.which("bwrap", path=os.environ.get("PATH", os.defpath))
    return os.path.realpath(found) if found else None


def host_root() -> tuple[RootEntry, ...]:
    """The host root's top-level entries with their symlink targets, read at each start (a folder the
    admin adds to / later shows up, as it did with one bind of /; ~20 entries, microseconds)."""
    entries = []
    for entry in sorted(os.scandir("/"), key=lambda e: e.name):
        entries.append((entry.name, os.readlink(entry.path) if entry.is_symlink() else None))
    return tuple(entries)


def bwrap_args(
    spec: SandboxSpec, command: list[str], bwrap: str = "bwrap", root: tuple[RootEntry, ...] | None = None
) -> list[str]:
    """argv that runs `command` in a sandbox: read-only root, own home, private /tmp and PIDs."""
    args = [bwrap, *bwrap_mount_args(sandbox_view(spec), host_root() if root is None else root)]
    args += [
        "--chdir",
        str(spec.home),
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        *(["--unshare-cgroup"] if spec.cgroup_binds else []),
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
