"""Disk quotas as data: the kernel structures, project ids, mounts, the seccomp program (no side effects)."""

from __future__ import annotations

import struct

import pytest

from coursehub.hub.servers import ServerInfo
from coursehub.hub.status import disk_rows
from coursehub.payloads.forkserver import PROJECT_IOCTLS, project_lock_filter
from coursehub.settings import Settings
from coursehub.spawner import diskquota
from coursehub.spawner.diskquota import FIRST_PROJECT, DqBlk, FsXattr, MountEntry


def test_struct_layouts_match_the_kernel():
    # struct fsxattr is 28 bytes; struct if_dqblk 72 on 64-bit machines.
    assert diskquota.FSXATTR.size == 28 and diskquota.DQBLK.size == 72
    # The ioctl numbers are _IOR/_IOW('X', 31/32, struct fsxattr).
    assert diskquota.FS_IOC_FSGETXATTR == (2 << 30) | (28 << 16) | (ord("X") << 8) | 31
    assert diskquota.FS_IOC_FSSETXATTR == (1 << 30) | (28 << 16) | (ord("X") << 8) | 32
    assert diskquota.qcmd(diskquota.Q_SETQUOTA) == 0x80000802


def test_fsxattr_round_trip_and_project_move():
    attrs = FsXattr(xflags=0x8, extsize=4096, projid=0)
    assert FsXattr.unpack(attrs.pack()) == attrs
    moved = attrs.in_project(FIRST_PROJECT, directory=True)
    assert moved.projid == FIRST_PROJECT and moved.xflags == 0x8 | diskquota.FS_XFLAG_PROJINHERIT
    assert moved.extsize == 4096  # other attributes kept
    assert moved.tagged(FIRST_PROJECT, directory=True)
    # A folder without the inherit flag is not done: files created in it would escape the project.
    assert not FsXattr(projid=FIRST_PROJECT).tagged(FIRST_PROJECT, directory=True)
    assert FsXattr(projid=FIRST_PROJECT).tagged(FIRST_PROJECT, directory=False)
    assert attrs.in_project(7, directory=False).xflags == 0x8


def test_limits_in_quota_blocks():
    request = diskquota.limit_request(5 * 1024**3 + 1)
    assert request.bhardlimit == 5 * 1024**2 + 1 and request.bsoftlimit == 0  # rounded up
    assert request.valid == diskquota.QIF_BLIMITS
    assert DqBlk.unpack(request.pack()) == request
    assert not diskquota.needs_limit(DqBlk(bhardlimit=1024), 1024**2)
    assert diskquota.needs_limit(DqBlk(bhardlimit=1024), 2 * 1024**2)
    assert diskquota.needs_limit(DqBlk(bhardlimit=1024, bsoftlimit=10), 1024**2)


def test_usage_from_getquota():
    raw = struct.pack("=8QI4x", 2048, 0, 1536 * 1024, 0, 0, 3, 0, 0, 0x3F)
    usage = diskquota.usage_of(DqBlk.unpack(raw))
    assert (usage.used, usage.limit) == (1536 * 1024, 2048 * 1024) and usage.ratio == 0.75
    assert DqBlk(curinodes=1).in_use and not DqBlk().in_use


def test_project_ids_are_stable_and_never_shared():
    free = lambda _id: False  # noqa: E731
    first, table = diskquota.assign_project({}, "ch-alice", 0, free)
    assert first == FIRST_PROJECT
    again, same = diskquota.assign_project(table, "ch-alice", 0, free)
    assert again == first and same == table
    second, table = diskquota.assign_project(table, "ch-bob", 0, free)
    assert second == first + 1
    # Ids the file system already counts (a lost table, old homes) are skipped.
    third, table = diskquota.assign_project(table, "ch-carol", 0, lambda i: i <= first + 3)
    assert third == first + 4
    # A home keeps the id it carries, unless another home holds it.
    kept, _ = diskquota.assign_project(table, "ch-dave", FIRST_PROJECT + 50, free)
    assert kept == FIRST_PROJECT + 50
    stolen, _ = diskquota.assign_project(table, "ch-eve", first, free)
    assert stolen not in table.values()
    # An id below ours (an admin's own project) is never adopted.
    low, _ = diskquota.assign_project(table, "ch-fay", 42, free)
    assert low != 42


MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw,errors=remount-ro
30 22 0:27 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=8G
41 22 7:0 / /srv/homes rw,relatime shared:9 - ext4 /dev/loop0 rw,prjquota
42 22 7:1 / /srv/xfs\\040homes rw,relatime shared:10 - xfs /dev/loop1 rw,inode64,noquota
43 41 7:2 / /srv/homes/big rw,relatime shared:11 - xfs /dev/loop2 rw,inode64,prjquota
"""


def test_mounts_and_what_they_lack():
    mounts = diskquota.parse_mountinfo(MOUNTINFO)
    assert diskquota.mount_of(mounts, "/srv/homes/ch-a").source == "/dev/loop0"
    assert diskquota.mount_of(mounts, "/srv/homes/big/x").fstype == "xfs"
    assert diskquota.mount_of(mounts, "/srv/homesick").mount_point == "/"  # not a path prefix
    assert diskquota.mount_of(mounts, "/srv/xfs homes").source == "/dev/loop1"
    assert diskquota.quota_problem(diskquota.mount_of(mounts, "/srv/homes/ch-a"), "/srv/homes") is None
    assert diskquota.quota_problem(diskquota.mount_of(mounts, "/srv/homes/big"), "/srv/homes/big") is None
    ext4 = diskquota.quota_problem(diskquota.mount_of(mounts, "/home"), "/home")
    assert "tune2fs -O project,quota /dev/sda1" in ext4 and "prjquota" in ext4
    xfs = diskquota.quota_problem(diskquota.mount_of(mounts, "/srv/xfs homes"), "/srv/xfs homes")
    assert "mount it with -o prjquota" in xfs and "tune2fs" not in xfs
    tmpfs = diskquota.quota_problem(diskquota.mount_of(mounts, "/tmp/h"), "/tmp/h")
    assert "tmpfs" in tmpfs and "ext4 or XFS" in tmpfs
    accounting_only = MountEntry("/h", "xfs", "/dev/x", frozenset({"rw", "pqnoenforce"}))
    assert "prjquota" in diskquota.quota_problem(accounting_only, "/h")
    assert diskquota.off_message("x").startswith("Disk quotas are OFF")


def test_a_shared_home_gets_the_largest_limit_of_its_servers():
    assert diskquota.disk_limit(None, [10]) is None  # a server without a limit changes nothing
    assert diskquota.disk_limit(2, []) == 2
    assert diskquota.disk_limit(2, [None, 5, 3]) == 5
    assert diskquota.disk_limit(8, [5]) == 8


def test_settings_hub_wide_and_per_course():
    settings = Settings.model_validate(
        {
            "limits": {"disk": "5G"},
            "courses": [
                {"name": "big", "repo": "/x", "limits": {"disk": "20G"}},
                {"name": "plain", "repo": "/y"},
            ],
        }
    )
    big, plain = settings.courses
    assert settings.course_limits(big).disk == 20 * 1024**3
    assert settings.course_limits(plain).disk == 5 * 1024**3
    assert settings.disk_limited() and not Settings().disk_limited()
    assert Settings().limits.disk is None
    only_course = Settings.model_validate(
        {"courses": [{"name": "c", "repo": "/x", "limits": {"disk": "1G"}}]}
    )
    assert only_course.disk_limited()
    with pytest.raises(ValueError):
        Settings.model_validate({"limits": {"disk": "100K"}})  # below 1 MiB: a typo


def test_status_rows_one_per_home_fullest_first():
    servers = [
        ServerInfo("ann", "", "demo", True, "", disk_used=10, disk_limit=100),
        ServerInfo("ann", "bio", "bio", True, "", disk_used=10, disk_limit=100),
        ServerInfo("bea", "", "demo", True, "", disk_used=90, disk_limit=100),
        ServerInfo("cid", "", "demo", True, ""),  # no quota
    ]
    rows = disk_rows(servers)
    assert [(r.user, r.used, r.limit) for r in rows] == [("bea", 90, 100), ("ann", 10, 100)]


def unpack(program: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", program[i : i + 8]) for i in range(0, len(program), 8)]


def run_filter(program: bytes, arch: int, nr: int, arg1: int = 0) -> int:
    """A tiny classic-BPF interpreter for the instructions the filter uses."""
    data = struct.pack("=iIQ6Q", nr, arch, 0, 0, arg1, 0, 0, 0, 0)
    code, pc, acc = unpack(program), 0, 0
    while True:
        op, jt, jf, k = code[pc]
        if op == 0x20:
            acc = struct.unpack_from("=I", data, k)[0]
        elif op == 0x15:
            pc += jt if acc == k else jf
        elif op == 0x35:
            pc += jt if acc >= k else jf
        elif op == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected instruction {op:#x}")
        pc += 1


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_seccomp_filter_refuses_project_changes_only(machine):
    from coursehub.payloads.forkserver import ARCHES

    arch, ioctl, file_setattr = ARCHES[machine]
    program = project_lock_filter(machine)
    allow, eperm = 0x7FFF0000, 0x00050001
    for cmd in PROJECT_IOCTLS:
        assert run_filter(program, arch, ioctl, cmd) == eperm
        # The kernel reads an ioctl's cmd as 32 bits: high bits set do not slip past.
        assert run_filter(program, arch, ioctl, cmd | (0xDEAD << 32)) == eperm
    assert run_filter(program, arch, file_setattr) == eperm
    assert run_filter(program, arch, ioctl, diskquota.FS_IOC_FSGETXATTR) == allow  # reading is fine
    assert run_filter(program, arch, ioctl, 0x5401) == allow  # TCGETS: terminals work
    assert run_filter(program, arch, 0) == allow and run_filter(program, arch, 1, 0x401C5820) == allow
    assert run_filter(program, 0x40000003, 54, 0x401C5820) == eperm  # i386 code gets nothing
    if machine == "x86_64":
        assert run_filter(program, arch, 0x40000000 | 514, 0x401C5820) == eperm  # x32 ioctl
