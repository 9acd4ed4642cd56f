"""The side effects of disk quotas on real file systems: project ids, the walk, the kernel's answers."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest
from loopfs import loop_filesystem

from coursehub.spawner import homequota
from coursehub.spawner.diskquota import FIRST_PROJECT, FS_XFLAG_PROJINHERIT


def _attrs(path: Path):
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return homequota.get_xattr(fd)
    finally:
        os.close(fd)


@pytest.fixture(scope="module")
def loopfs():
    if os.geteuid() != 0:
        pytest.fail("the disk quota tests need root (loop devices, mounts)")
    with tempfile.TemporaryDirectory(prefix="coursehub-quota-") as base:
        with loop_filesystem(Path(base)) as fs:
            yield fs


def test_the_walk_puts_the_whole_home_in_the_project_and_never_leaves_it(loopfs):
    home = loopfs.mount / "walk-home"
    outside = loopfs.mount / "outside"
    for folder in (home / "a" / "b", outside):
        folder.mkdir(parents=True)
    (home / "a" / "b" / "notes.txt").write_text("x")
    (home / "top.txt").write_text("y")
    (outside / "secret.txt").write_text("z")
    (home / "link-dir").symlink_to(outside)
    (home / "link-file").symlink_to(outside / "secret.txt")
    os.mkfifo(home / "pipe")  # opened without blocking, and left alone
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        homequota.tag_tree(fd, FIRST_PROJECT + 7)
    finally:
        os.close(fd)
    for path in (home / "a", home / "a" / "b"):
        attrs = _attrs(path)
        assert attrs.projid == FIRST_PROJECT + 7 and attrs.xflags & FS_XFLAG_PROJINHERIT, path
    for path in (home / "a" / "b" / "notes.txt", home / "top.txt"):
        assert _attrs(path).projid == FIRST_PROJECT + 7, path
    # Nothing reached through a symlink moved.
    assert _attrs(outside).projid == 0 and _attrs(outside / "secret.txt").projid == 0
    # A new file in a tagged folder inherits the project (what makes the quota hold for any uid).
    (home / "a" / "new.txt").write_text("n")
    assert _attrs(home / "a" / "new.txt").projid == FIRST_PROJECT + 7


def test_the_problem_names_the_fix(loopfs):
    problem = homequota.quota_problem(loopfs.mount)
    if loopfs.enforced:
        assert problem is None
    else:
        assert problem and "prjquota" in problem and str(loopfs.mount) in problem
    # A folder that does not exist yet is judged by its nearest parent.
    assert homequota.quota_problem(loopfs.mount / "not" / "yet") == problem


def test_a_home_gets_its_project_and_limit_once(loopfs, tmp_path):
    if not loopfs.enforced:
        pytest.skip(f"this kernel enforces no project quotas on {loopfs.fstype} (see tests/loopfs.py)")
    table = homequota.ProjectTable(tmp_path / "projects.json")
    home = loopfs.mount / "ch-once"
    home.mkdir()
    (home / "old.bin").write_bytes(b"\0" * 300 * 1024)
    assert homequota.ensure_home_quota(home, "ch-once", 2 * 1024**2, table) is True
    assert homequota.ensure_home_quota(home, "ch-once", 2 * 1024**2, table) is False  # nothing to do
    usage = homequota.home_usage(home)
    assert usage.limit == 2 * 1024**2 and usage.used >= 300 * 1024  # the file from before counts
    projid = _attrs(home).projid
    assert projid >= FIRST_PROJECT and table.lookup("ch-once") == projid
    # As a plain user (root may pass hard limits: CAP_SYS_RESOURCE).
    os.chown(home, 65534, 65534)
    assert write_as(65534, home / "big.bin", 3 * 1024**2) == errno.EDQUOT


def write_as(uid: int, path: Path, size: int) -> int:
    """Write `size` bytes to `path` as `uid` in a child process; the errno it met (0: none)."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with open(path, "wb") as out:
                for _ in range(size // 65536):
                    out.write(b"\1" * 65536)
        except OSError as exc:
            code = exc.errno or 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_table_keeps_ids_per_name_across_processes_and_forgets_deleted_homes(loopfs, tmp_path):
    home = loopfs.mount / "table-home"
    home.mkdir()
    path = tmp_path / "p.json"
    fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        table = homequota.ProjectTable(path)
        if loopfs.enforced:  # a new id: the kernel says which ids are in use
            alice, bob = table.project_for("ch-alice", fd), table.project_for("ch-bob", fd)
        else:  # without quotas the kernel cannot answer: ids from an earlier table
            alice, bob = FIRST_PROJECT, FIRST_PROJECT + 1
            table._save({"ch-alice": alice, "ch-bob": bob})
            assert table.project_for("ch-alice", fd) == alice
        assert alice != bob
        again = homequota.ProjectTable(path)  # another process, the same file
        assert again.project_for("ch-alice", fd) == alice and again.lookup("ch-bob") == bob
        assert path.stat().st_mode & 0o777 == 0o600
        again.forget("ch-bob")
        assert again.lookup("ch-bob") is None and homequota.ProjectTable(path).lookup("ch-alice") == alice
    finally:
        os.close(fd)


def test_an_inbound_folder_joins_its_homes_project_and_its_quota(loopfs, tmp_path):
    home, inbound = loopfs.mount / "ch-sub", loopfs.mount / ".coursehub-grading" / "ch-sub"
    for folder in (home, inbound / "old"):
        folder.mkdir(parents=True)
    (inbound / "old" / "ps1.ipynb").write_text("{}")
    # A home without a project (no limits.disk, or no quotas): nothing to join.
    assert homequota.join_home_project(inbound, home) is False
    assert _attrs(inbound).projid == 0
    if loopfs.enforced:
        table = homequota.ProjectTable(tmp_path / "projects.json")
        homequota.ensure_home_quota(home, "ch-sub", 2 * 1024**2, table)
    else:  # project ids without limits: the home's project set by hand
        fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
        try:
            homequota.set_xattr(fd, homequota.get_xattr(fd).in_project(FIRST_PROJECT + 9, directory=True))
        finally:
            os.close(fd)
    projid = _attrs(home).projid
    (inbound / "link").symlink_to(loopfs.mount / "walk-home")  # never followed
    assert homequota.join_home_project(inbound, home) is True
    assert homequota.join_home_project(inbound, home) is False  # once
    for path in (inbound, inbound / "old", inbound / "old" / "ps1.ipynb"):
        assert _attrs(path).projid == projid, path
    assert _attrs(inbound).xflags & FS_XFLAG_PROJINHERIT
    (inbound / "new").mkdir()  # a new submission is in the project too
    assert _attrs(inbound / "new").projid == projid
    if not loopfs.enforced:
        pytest.skip(f"this kernel enforces no project quotas on {loopfs.fstype} (see tests/loopfs.py)")
    # As a plain user: the home and the inbound folder share one limit.
    os.chown(home, 65534, 65534)
    os.chown(inbound / "new", 65534, 65534)
    assert write_as(65534, home / "half.bin", 1024**2) == 0
    assert write_as(65534, inbound / "new" / "big.bin", 1536 * 1024) == errno.EDQUOT
