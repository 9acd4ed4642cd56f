"""Project quotas on homes: the ioctls and quotactl calls behind `diskquota`'s rules (side effects).

Why syscalls from Python rather than `chattr +P -p ID` and `setquota -P` (the quota package): they
are one ioctl and one quotactl each, need no package on the host, no process per spawn, and work
on a file descriptor opened without following symlinks, so a home cannot point them elsewhere.
quotactl_fd (Linux 5.14) takes that descriptor instead of the block device's path.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import logging
import os
import stat
import threading
from pathlib import Path

from ..errors import SandboxError
from . import diskquota
from .diskquota import DqBlk, FsXattr, Usage

log = logging.getLogger(__name__)
_libc = ctypes.CDLL(None, use_errno=True)
_LOCK = threading.Lock()
OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _quotactl(fd: int, command: int, projid: int, buffer: ctypes.Array | None) -> None:
    result = _libc.syscall(
        ctypes.c_long(diskquota.SYS_QUOTACTL_FD),
        ctypes.c_uint(fd),
        ctypes.c_uint(diskquota.qcmd(command)),
        ctypes.c_int(projid),
        buffer,
    )
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def get_quota(fd: int, projid: int) -> DqBlk:
    """Q_GETQUOTA of project `projid` on the file system of `fd`."""
    buffer = ctypes.create_string_buffer(diskquota.DQBLK.size)
    _quotactl(fd, diskquota.Q_GETQUOTA, projid, buffer)
    return DqBlk.unpack(buffer.raw)


def set_limit(fd: int, projid: int, limit: int) -> None:
    """Q_SETQUOTA: `limit` bytes as the project's hard block limit."""
    buffer = ctypes.create_string_buffer(diskquota.limit_request(limit).pack(), diskquota.DQBLK.size)
    _quotactl(fd, diskquota.Q_SETQUOTA, projid, buffer)


def get_xattr(fd: int) -> FsXattr:
    return FsXattr.unpack(fcntl.ioctl(fd, diskquota.FS_IOC_FSGETXATTR, bytes(diskquota.FSXATTR.size)))


def set_xattr(fd: int, attrs: FsXattr) -> None:
    fcntl.ioctl(fd, diskquota.FS_IOC_FSSETXATTR, attrs.pack())


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (the homes' folder may not exist yet)."""
    path = path.resolve()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def quota_problem(home_root: Path) -> str | None:
    """Why homes under `home_root` cannot get project quotas now (None: they can)."""
    where = _existing(home_root)
    try:
        mounts = diskquota.parse_mountinfo(Path("/proc/self/mountinfo").read_text())
    except OSError as exc:
        return f"cannot read /proc/self/mountinfo: {exc}"
    problem = diskquota.quota_problem(diskquota.mount_of(mounts, str(where)), str(where))
    if problem:
        return problem
    fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        buffer = ctypes.create_string_buffer(64)
        _quotactl(fd, diskquota.Q_GETINFO, 0, buffer)
    except OSError as exc:
        return f"the kernel refuses project quota calls on {where}: {exc.strerror}"
    finally:
        os.close(fd)
    return None


class ProjectTable:
    """Project ids of homes by Unix name, in a root-only JSON file in the state folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cache: dict[str, int] = {}

    def project_for(self, name: str, home_fd: int) -> int:
        """The id of `name`'s home: from the table, else allocated (and stored) under a file lock."""
        if name in self.cache:
            return self.cache[name]
        with _LOCK, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ids = self._load()
            current = get_xattr(home_fd).projid
            projid, table = diskquota.assign_project(
                ids, name, current, lambda candidate: get_quota(home_fd, candidate).in_use
            )
            if table != ids:
                self._save(table)
            self.cache = table
        return projid

    def forget(self, name: str) -> None:
        """Drop a deleted home's entry. Its id is not handed out again while the file system still
        counts a limit or files under it (`assign_project`'s `taken`)."""
        with _LOCK, open(self.path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ids = self._load()
            if ids.pop(name, None) is not None:
                self._save(ids)
            self.cache = ids

    def lookup(self, name: str) -> int | None:
        """The stored id of `name`'s home, if any."""
        return self.cache.get(name) or self._load().get(name)

    def _load(self) -> dict[str, int]:
        try:
            return {str(k): int(v) for k, v in json.loads(self.path.read_text()).items()}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError) as exc:
            raise SandboxError(f"{self.path} is unreadable ({exc}); restore it or remove it") from exc

    def _save(self, table: dict[str, int]) -> None:
        partial = self.path.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(table, out, indent=0, sort_keys=True)
        os.replace(partial, self.path)


def ensure_home_quota(home: Path, name: str, limit: int, table: ProjectTable) -> bool:
    """Give `home` its project (once) and `limit` bytes as its quota; True if anything changed."""
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        projid = table.project_for(name, fd)
        changed = False
        if not get_xattr(fd).tagged(projid, directory=True):
            # Files from before the quota join the project too; the home itself last, so that
            # its flag means the whole tree is done (an interrupted walk is redone next time).
            tag_tree(fd, projid)
            set_xattr(fd, get_xattr(fd).in_project(projid, directory=True))
            changed = True
        if diskquota.needs_limit(get_quota(fd, projid), limit):
            set_limit(fd, projid, limit)
            changed = True
        return changed
    except (OSError, ValueError, RecursionError) as exc:
        raise SandboxError(f"the disk quota of {home} could not be set: {exc!r}") from exc
    finally:
        os.close(fd)


def join_home_project(folder: Path, home: Path) -> bool:
    """Put `folder` and all below it into the project of `home`, if it has one; True if anything changed.

    For a student's nbgrader inbound folder: their submissions count against their home's quota. Both are
    opened without following a symlink; the folder's own flag is set last (as for a home).
    """
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        projid, device = get_xattr(home_fd).projid, os.fstat(home_fd).st_dev
    except OSError:
        return False  # a file system without project ids: the home has no quota either
    finally:
        os.close(home_fd)
    if not projid:
        return False
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_dev != device:  # a home mounted on its own: its project counts nothing here
            log.warning("%s is not on the file system of %s: it gets no disk quota", folder, home)
            return False
        if get_xattr(fd).tagged(projid, directory=True):
            return False
        tag_tree(fd, projid)
        set_xattr(fd, get_xattr(fd).in_project(projid, directory=True))
        return True
    except (OSError, ValueError, RecursionError) as exc:
        raise SandboxError(f"{folder} could not join the disk quota of {home}: {exc!r}") from exc
    finally:
        os.close(fd)


def tag_tree(top_fd: int, projid: int) -> None:
    """Put every folder and regular file below `top_fd` into `projid`, never following a symlink.

    os.fwalk opens each folder relative to its parent's descriptor and checks it is the folder
    it listed, so a student renaming things meanwhile cannot lead it out of the home.
    """
    for _, dirs, files, dir_fd in os.fwalk(".", dir_fd=top_fd, follow_symlinks=False):
        for entry in [*dirs, *files]:
            try:
                fd = os.open(entry, OPEN_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENXIO):
                    continue  # a symlink, gone meanwhile, or a socket: nothing to tag
                raise
            try:
                mode = os.fstat(fd).st_mode
                if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                    attrs = get_xattr(fd)
                    if not attrs.tagged(projid, stat.S_ISDIR(mode)):
                        set_xattr(fd, attrs.in_project(projid, stat.S_ISDIR(mode)))
            finally:
                os.close(fd)


def home_usage(home: Path) -> Usage | None:
    """The use of `home` against its quota, or None when it has no project or quotas are off."""
    try:
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        projid = get_xattr(fd).projid
        if not projid:
            return None
        return diskquota.usage_of(get_quota(fd, projid))
    except OSError as exc:
        log.debug("no quota usage for %s: %s", home, exc)
        return None
    finally:
        os.close(fd)
