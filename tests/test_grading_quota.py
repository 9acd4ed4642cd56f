"""nbgrader's exchange and the disk: a student's submissions are on the homes' file system (a loop-mounted
one of its own here), in the project of their home, so `limits.disk` covers them; the state folder gets none.

With a kernel that enforces project quotas, the home and the inbound folder share one limit; without
(tests/loopfs.py falls back to XFS without quotas) the placement is still checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import Hub, hub_root, needs_root_sandbox
from loopfs import loop_filesystem

from coursehub.courses.grading import staff_group
from coursehub.spawner import homequota

pytestmark = pytest.mark.hub
COURSE = "gq"
STAFF, STUDENT = "gq-01", "gq-02"

FILL = """
import errno, os
written, failure = 0, ""
try:
    with open({path!r}, "wb") as out:
        for _ in range({chunks}):
            out.write(b"\\1" * 2**20)
            out.flush()
            written += 1
except OSError as exc:
    failure = errno.errorcode.get(exc.errno, str(exc.errno))
print(written, failure or "none")
"""


@pytest.fixture(scope="module")
def hub_and_fs():
    """A hub whose homes are on their own loop file system, limits.disk 64M, one grading course."""
    needs_root_sandbox()
    base = hub_root()
    repo = base / "repo"
    repo.mkdir()
    (repo / "README.md").write_text(f"# {COURSE}\n")
    try:
        with loop_filesystem(base) as fs:
            course = {
                "name": COURSE,
                "repo": str(repo),
                "access": [STUDENT],
                "staff": [STAFF],
                "grading": "nbgrader",
            }
            settings = {
                "limits": {"disk": "64M"},
                "sandbox": {"home_root": str(fs.mount / "homes")},
                "courses": [course],
            }
            hub = Hub(hub_root(), settings)
            try:
                hub.start()
                assert hub.create_accounts("gq", 2) == [STAFF, STUDENT]
                hub.tokens = {STUDENT: hub.token_for(STUDENT)}
                hub.spawn(STUDENT, hub.tokens[STUDENT], COURSE)
                yield hub, fs
            finally:
                hub.teardown()  # servers stopped before the file system is unmounted
                subprocess.run(
                    ["groupdel", staff_group(COURSE, hub.prefix)],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _projid(path) -> int:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        return homequota.get_xattr(fd).projid
    finally:
        os.close(fd)


def test_submissions_are_on_the_homes_file_system_and_count_against_the_homes_quota(hub_and_fs):
    hub, fs = hub_and_fs
    token, account = hub.tokens[STUDENT], hub.prefix + STUDENT
    inbound = f"/run/coursehub/exchange/{COURSE}/inbound"
    assert hub.run(STUDENT, token, FILL.format(path=f"{inbound}/small.bin", chunks=1), COURSE).split() == [
        "1",
        "none",
    ]
    home = fs.mount / "homes" / account
    folder = fs.mount / "homes" / ".coursehub-grading" / COURSE / "inbound" / account
    # On the homes' file system, not the state folder's (where <state>/grading/.../inbound/<account> was).
    assert (folder / "small.bin").stat().st_dev == os.stat(fs.mount).st_dev != os.stat(hub.state_dir).st_dev
    if not fs.enforced:
        pytest.skip(f"this kernel enforces no project quotas on {fs.fstype} (see tests/loopfs.py)")
    assert _projid(folder) == _projid(folder / "small.bin") == _projid(home) != 0
    # One limit for both: 40 MiB in the home, then the inbound folder meets the quota before 24 more.
    assert hub.run(STUDENT, token, FILL.format(path="home.bin", chunks=40), COURSE).split() == ["40", "none"]
    written, failure = hub.run(
        STUDENT, token, FILL.format(path=f"{inbound}/big.bin", chunks=40), COURSE
    ).split()
    assert failure == "EDQUOT" and int(written) < 24, (written, failure)
