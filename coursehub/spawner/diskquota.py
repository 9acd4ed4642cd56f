"""Disk quotas on homes with project quotas (ext4, XFS): the kernel's structures and rules, as data (pure).

A home gets a project id of its own and the inherit flag, so everything created under it counts
against that project whatever uid owns it; the block limit of the project is the home's quota.
The side effects (ioctl, quotactl) are in `homequota`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import PurePath

# <linux/fs.h>: struct fsxattr and the ioctls that read and write it.
FSXATTR = struct.Struct("=5I8x")  # xflags, extsize, nextents, projid, cowextsize, pad[8]
FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
FS_XFLAG_PROJINHERIT = 0x200

# <linux/quota.h>: quotactl commands and struct if_dqblk (limits in 1 KiB blocks, usage in bytes).
PRJQUOTA = 2
Q_GETINFO, Q_GETQUOTA, Q_SETQUOTA = 0x800005, 0x800007, 0x800008
QIF_BLIMITS = 1
QIF_DQBLKSIZE = 1024
DQBLK = struct.Struct("=8QI4x")  # 64-bit layout: eight u64, u32 dqb_valid, padding to 8
SYS_QUOTACTL_FD = 443  # the same number on x86_64 and aarch64 (Linux 5.14+)

FIRST_PROJECT = 2_000_000  # ours start here, clear of small ids an admin may use in /etc/projects
LAST_PROJECT = 2**32 - 2  # 2**32-1 is the kernel's invalid id


@dataclass(frozen=True)
class FsXattr:
    """struct fsxattr."""

    xflags: int = 0
    extsize: int = 0
    nextents: int = 0
    projid: int = 0
    cowextsize: int = 0

    def pack(self) -> bytes:
        return FSXATTR.pack(self.xflags, self.extsize, self.nextents, self.projid, self.cowextsize)

    @classmethod
    def unpack(cls, data: bytes) -> FsXattr:
        return cls(*FSXATTR.unpack(data[: FSXATTR.size]))

    def in_project(self, projid: int, directory: bool) -> FsXattr:
        """These attributes moved into project `projid` (inheriting it, for a directory)."""
        flags = self.xflags | FS_XFLAG_PROJINHERIT if directory else self.xflags
        return replace(self, projid=projid, xflags=flags)

    def tagged(self, projid: int, directory: bool) -> bool:
        """Whether the inode already is in `projid` (and passes it on, for a directory)."""
        return self.projid == projid and (not directory or bool(self.xflags & FS_XFLAG_PROJINHERIT))


@dataclass(frozen=True)
class DqBlk:
    """struct if_dqblk."""

    bhardlimit: int = 0
    bsoftlimit: int = 0
    curspace: int = 0
    ihardlimit: int = 0
    isoftlimit: int = 0
    curinodes: int = 0
    btime: int = 0
    itime: int = 0
    valid: int = 0

    def pack(self) -> bytes:
        return DQBLK.pack(
            self.bhardlimit,
            self.bsoftlimit,
            self.curspace,
            self.ihardlimit,
            self.isoftlimit,
            self.curinodes,
            self.btime,
            self.itime,
            self.valid,
        )

    @classmethod
    def unpack(cls, data: bytes) -> DqBlk:
        return cls(*DQBLK.unpack(data[: DQBLK.size]))

    @property
    def limit_bytes(self) -> int:
        """The hard block limit in bytes (0: none)."""
        return self.bhardlimit * QIF_DQBLKSIZE

    @property
    def in_use(self) -> bool:
        """Whether any file or limit already belongs to this project."""
        return bool(self.curspace or self.curinodes or self.bhardlimit or self.ihardlimit)


def qcmd(command: int, kind: int = PRJQUOTA) -> int:
    """QCMD(cmd, type) of <linux/quota.h>."""
    return (command << 8) | (kind & 0xFF)


def limit_request(limit: int) -> DqBlk:
    """The Q_SETQUOTA argument that makes `limit` bytes the hard block limit (no soft limit)."""
    return DqBlk(bhardlimit=blocks(limit), valid=QIF_BLIMITS)


def blocks(size: int) -> int:
    """`size` bytes in quota blocks (1 KiB), rounded up."""
    return -(-size // QIF_DQBLKSIZE)


def needs_limit(current: DqBlk, limit: int) -> bool:
    """Whether the project's hard block limit differs from `limit` bytes."""
    return current.bhardlimit != blocks(limit) or current.bsoftlimit != 0


@dataclass(frozen=True)
class Usage:
    """A home's use against its quota, in bytes."""

    used: int
    limit: int

    @property
    def ratio(self) -> float:
        return self.used / self.limit if self.limit else 0.0


def usage_of(dq: DqBlk) -> Usage:
    """Usage from what Q_GETQUOTA answered."""
    return Usage(used=dq.curspace, limit=dq.limit_bytes)


def assign_project(
    ids: Mapping[str, int], name: str, current: int, taken: Callable[[int], bool]
) -> tuple[int, dict[str, int]]:
    """The project id of home `name` and the table with it: stable per name, never another's.

    `ids` is the stored table (name -> id); `current` the id the home already carries (0: none);
    `taken(id)` says whether the file system already counts files or limits under an id. A home
    that already carries an id nobody else holds keeps it (after the table was lost, say).
    """
    if name in ids:
        return ids[name], dict(ids)
    held = set(ids.values())
    if FIRST_PROJECT <= current <= LAST_PROJECT and current not in held:
        return current, {**ids, name: current}
    candidate = max([FIRST_PROJECT - 1, *held]) + 1
    while candidate in held or taken(candidate):
        candidate += 1
    if candidate > LAST_PROJECT:
        raise ValueError("no project id left")
    return candidate, {**ids, name: candidate}


@dataclass(frozen=True)
class MountEntry:
    """One line of /proc/self/mountinfo, what quotas need of it."""

    mount_point: str
    fstype: str
    source: str
    options: frozenset[str]


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[MountEntry]:
    """Every mount of a mountinfo text, in order (later mounts hide earlier ones)."""
    entries = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 6 or len(tail) < 3:
            continue
        options = set(fields[5].split(",")) | set(tail[2].split(","))
        entries.append(MountEntry(_unescape(fields[4]), tail[0], _unescape(tail[1]), frozenset(options)))
    return entries


def mount_of(entries: list[MountEntry], path: str) -> MountEntry | None:
    """The mount `path` (absolute, resolved) lives on: the last one of the longest matching point."""
    target = PurePath(path)
    best: MountEntry | None = None
    for entry in entries:
        point = PurePath(entry.mount_point)
        if (target == point or point in target.parents) and (
            best is None or len(point.parts) >= len(PurePath(best.mount_point).parts)
        ):
            best = entry
    return best


PROJECT_OPTIONS = {"ext4": {"prjquota"}, "xfs": {"prjquota", "pquota", "pqnoenforce"}}
ENFORCING = {"prjquota", "pquota"}


def quota_problem(entry: MountEntry | None, path: str) -> str | None:
    """Why homes under `path` cannot get project quotas, from their mount alone (None: they can)."""
    if entry is None:
        return f"{path} is on no mount coursehub can see"
    where = f"{path} is on {entry.mount_point} ({entry.fstype}, {entry.source})"
    if entry.fstype not in PROJECT_OPTIONS:
        return f"{where}, which has no project quotas: put the homes on ext4 or XFS"
    if not entry.options & ENFORCING:
        if entry.fstype == "ext4":
            how = (
                f"unmount it, run `tune2fs -O project,quota {entry.source}`, then mount it with -o prjquota "
                "(and add prjquota to its /etc/fstab line)"
            )
        else:
            how = "mount it with -o prjquota (and add prjquota to its /etc/fstab line)"
        return f"{where}, mounted without enforced project quotas: {how}"
    return None


def off_message(problem: str) -> str:
    """What `coursehub up` prints when limits.disk is set and cannot be enforced."""
    return f"Disk quotas are OFF (limits.disk is set): {problem}. Servers run without disk quotas."


def disk_limit(own: int | None, others: list[int | None]) -> int | None:
    """The quota of a home when a server with limit `own` starts beside servers with `others`.

    A home is shared by a student's courses: the largest limit among the servers starting or
    running wins, so that opening a smaller course never pushes a running one over quota.
    None: the starting server has no disk limit (nothing to do).
    """
    if own is None:
        return None
    return max([own, *(o for o in others if o is not None)])
