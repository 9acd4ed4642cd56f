"""The host side of a course's nbgrader: its staff group, exchange and staff folder, generated config."""

from __future__ import annotations

import grp
import os
import pwd
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from ..courses.grading import (
    INBOUND_FOLDER,
    OWN_INBOUND_MODE,
    SOURCE_MODE,
    GradingPaths,
    Role,
    config_files,
    exchange_dirs,
    inbound_dirs,
    staff_group,
)
from ..errors import SandboxError

_LOCK = threading.Lock()


def ensure_staff_group(course: str, prefix: str) -> int:
    """The gid of the course's staff group, created (as a system group) the first time."""
    name = staff_group(course, prefix)
    with _LOCK:
        try:
            pwd.getpwnam(name)
        except KeyError:
            pass
        else:  # a user's own group of that name would let that user into the staff's files
            raise SandboxError(f"group {name} is also a user's name; refusing to use it for {course}'s staff")
        try:
            return grp.getgrnam(name).gr_gid
        except KeyError:
            result = subprocess.run(
                ["groupadd", "--system", name], capture_output=True, text=True, timeout=60
            )
            if result.returncode not in (0, 9):  # 9: created meanwhile by another hub
                raise SandboxError(f"could not create group {name}: {result.stderr.strip()}") from None
        return grp.getgrnam(name).gr_gid


def _folder(path: Path, mode: int, gid: int = 0) -> None:
    """A root-owned folder of exactly this mode and group; never through a symlink."""
    try:
        path.mkdir()
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0:
        raise SandboxError(f"{path} is not a folder owned by root; refusing to use it")
    os.chown(path, 0, gid, follow_symlinks=False)
    os.chmod(path, mode)  # after chown, which clears set-group-id


def prepare_grading(paths: GradingPaths, gid: int) -> None:
    """The course's exchange and staff folder, with the modes nbgrader's groupshared layout expects."""
    _folder(paths.state / "grading", 0o711)
    _folder(paths.root, 0o711)
    for relative, mode in exchange_dirs(paths.course):
        _folder(paths.exchange / relative if relative else paths.exchange, mode, gid)
    _folder(paths.source, SOURCE_MODE, gid)
    if paths.homes is not None:  # the students' inbound folders: on the homes' file system
        top = paths.homes / INBOUND_FOLDER
        for relative, mode in inbound_dirs(paths.course):
            _folder(top / relative if relative else top, mode, gid if relative else 0)


def prepare_own_inbound(paths: GradingPaths, account: str, uid: int, gid: int) -> None:
    """A student's inbound folder: theirs, readable by the staff group, no one else's; no symlink."""
    folder = paths.own_inbound(account)
    try:
        folder.mkdir()
    except FileExistsError:
        pass
    info = folder.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (0, uid):
        raise SandboxError(f"{folder} is not a folder of {account}; refusing to use it")
    os.chown(folder, uid, gid, follow_symlinks=False)
    os.chmod(folder, OWN_INBOUND_MODE)


def write_config(paths: GradingPaths, role: Role) -> Path:
    """The generated Jupyter config folder of a server of this course and role (root's, world-readable)."""
    folder = paths.config(role)
    for parent in reversed(folder.relative_to(paths.state).parents):
        if parent != Path("."):
            _folder(paths.state / parent, 0o711)
    _folder(folder, 0o755)
    for relative, text in config_files(paths.course, role).items():
        target = folder / relative
        if target.parent != folder:
            _folder(target.parent, 0o755)
        # A file of its own per writer: servers of a course start in parallel threads.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    return folder
