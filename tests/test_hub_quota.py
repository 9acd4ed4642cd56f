"""limits.disk on a real hub whose homes are on a loop-mounted file system of their own.

With a kernel that enforces project quotas (ext4 with quota,project, or XFS, mounted with prjquota):
alice's kernel meets "Disk quota exceeded", bob and the hub carry on, status shows each home's use.
Without (tests/loopfs.py falls back to XFS without quotas): `up` says so once and servers still start.
Either way a forked server cannot move its files out of the home's project.
"""

from __future__ import annotations

import re
import shutil

import pytest
import requests
from conftest import Hub, hub_root, needs_root_sandbox, wait_for
from loopfs import loop_filesystem

pytestmark = pytest.mark.hub
QUOTA = 64 * 1024**2
OFF = "Disk quotas are OFF"


@pytest.fixture(scope="module")
def quota_hub():
    """One hub for the module: homes on their own loop file system, limits.disk 64M."""
    needs_root_sandbox()
    base = hub_root()
    try:
        with loop_filesystem(base) as fs:
            homes = fs.mount / "homes"
            hub = Hub(hub_root(), {"limits": {"disk": "64M"}, "sandbox": {"home_root": str(homes)}})
            try:
                hub.start()
                yield hub, fs
            finally:
                hub.teardown()  # servers stopped before the file system is unmounted
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def students(quota_hub):
    hub, fs = quota_hub
    alice, bob, carol = hub.create_accounts("quo", 3)
    tokens = {name: hub.token_for(name) for name in (alice, bob)}
    for name in (alice, bob):
        hub.spawn(name, tokens[name])
    return hub, fs, alice, bob, carol, tokens


FILL = """
import errno
written, failure = 0, ""
try:
    with open("fill.bin", "wb") as out:
        for _ in range({chunks}):
            out.write(b"\\1" * 2**20)
            out.flush()
            written += 1
except OSError as exc:
    failure = errno.errorcode.get(exc.errno, str(exc.errno))
print(written, failure or "none")
"""


def test_quota_stops_alice_and_nobody_else(students):
    hub, fs, alice, bob, carol, tokens = students
    if not fs.enforced:
        pytest.skip(f"this kernel enforces no project quotas on {fs.fstype} (see tests/loopfs.py)")
    written, failure = hub.run(alice, tokens[alice], FILL.format(chunks=100)).split()
    assert failure == "EDQUOT" and int(written) < 64, (written, failure)
    # Bob's home has its own quota; the hub still logs people in and starts servers.
    assert hub.run(bob, tokens[bob], FILL.format(chunks=20)).split() == ["20", "none"]
    carol_token = hub.token_for(carol)
    hub.spawn(carol, carol_token)
    assert "2" in hub.run(carol, carol_token, "print(1 + 1)")
    # Alice makes room and can write again.
    assert hub.run(alice, tokens[alice], "import os; os.remove('fill.bin'); print('ok')").strip() == "ok"
    assert hub.run(alice, tokens[alice], FILL.format(chunks=4)).split() == ["4", "none"]


def test_status_shows_each_home_against_its_quota(students):
    hub, fs, alice, bob, carol, tokens = students
    if not fs.enforced:
        pytest.skip(f"this kernel enforces no project quotas on {fs.fstype} (see tests/loopfs.py)")
    hub.run(bob, tokens[bob], "open('some.bin', 'wb').write(b'x' * 8 * 2**20); print('ok')")
    out = hub.cli("status").stdout
    bob_line = next(line for line in out.splitlines() if line.strip().startswith(bob))
    assert "home " in bob_line and "of 0.06G" in bob_line, out

    def bob_row():
        headers = {"Authorization": f"token {hub.api().token}"}
        report = requests.get(hub.url + "hub/coursehub/status.json", headers=headers, timeout=30).json()
        return next((row for row in report["disk"] if row["user"] == bob and row["used"] > 8 * 2**20), None)

    row = wait_for(bob_row, timeout=60, what="bob's home on the status report")
    assert row["limit"] == QUOTA


PROJECT_CHANGES = """
import ctypes, errno, fcntl, os, struct
open("mine.txt", "w").close()
fd = os.open("mine.txt", os.O_RDONLY)
home = os.open(".", os.O_RDONLY)
x = list(struct.unpack("=5I8x", fcntl.ioctl(fd, 0x801C581F, bytes(28))))
x[3] = 4242  # another project id
results = []
for target, request, argument in (
    (fd, 0x401C5820, struct.pack("=5I8x", *x)),  # FS_IOC_FSSETXATTR
    (home, 0x40086602, struct.pack("=q", 0)),  # FS_IOC_SETFLAGS: clear the inherit flag
):
    try:
        fcntl.ioctl(target, request, argument)
        results.append("allowed")
    except OSError as exc:
        results.append(errno.errorcode[exc.errno])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall(469, -100, b"mine.txt", None, 0, 0)  # file_setattr (Linux 6.17)
results.append(errno.errorcode.get(ctypes.get_errno(), "?"))
after = struct.unpack("=5I8x", fcntl.ioctl(fd, 0x801C581F, bytes(28)))[3]
print(*results, after == x[3])
"""


def test_a_forked_server_cannot_move_files_out_of_the_project(students):
    hub, fs, alice, bob, carol, tokens = students
    setxattr, setflags, file_setattr, moved = hub.run(alice, tokens[alice], PROJECT_CHANGES).split()
    assert (setxattr, setflags, file_setattr) == ("EPERM", "EPERM", "EPERM")
    assert moved == "False"


def test_up_says_once_whether_quotas_hold(students):
    hub, fs, alice, bob, carol, tokens = students
    log = hub.log()
    if fs.enforced:
        assert OFF not in log
        assert "disk quota of" in log  # the spawner set the homes' quotas
    else:
        lines = [line for line in log.splitlines() if OFF in line]
        assert len(lines) == 1, lines  # once, though several servers started
        assert "prjquota" in lines[0] and str(fs.mount) in lines[0]


def test_the_status_page_has_the_disk_table(students):
    hub, fs, alice, bob, carol, tokens = students
    password = re.search(r"admin: (\S+)", hub.cli("accounts", "reset", "admin").stdout)
    assert password is not None
    hub.passwords["admin"] = password.group(1)
    page = hub.login("admin").get(hub.url + "hub/coursehub/status", timeout=30)
    assert page.status_code == 200
    table = page.text[page.text.index('id="disk"') :]
    table = table[: table.index("</table>")]
    if fs.enforced:
        assert f'data-user="{alice}"' in table and f'data-user="{bob}"' in table
    else:
        assert "No running server&#39;s home has a quota" in table or "No running server's home" in table
