"""sandbox.merge_memory on real hubs: which processes the kernel may merge, read from /proc/<pid>/ksm_stat.

Only users' processes (servers, kernels), and only when the setting is on: never the
root fork server or its log collector, whose pages would then be merged with what students write.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from pathlib import Path

import pytest
from conftest import wait_for
from reliability import processes_of_uids

from coursehub.clients.kernel import KernelSession
from coursehub.spawner import memmerge
from coursehub.spawner.accounts import unix_name

pytestmark = pytest.mark.hub


def ksm_stat(pid: int) -> dict[str, str]:
    """/proc/<pid>/ksm_stat as a dict (empty once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/ksm_stat").read_text()
    except OSError:
        return {}
    fields = (line.replace(":", " ", 1).split(None, 1) for line in text.splitlines())
    return {field[0]: field[1].strip() for field in fields if len(field) == 2}


def processes(hub, name: str) -> tuple[list[int], list[int]]:
    """(the user's processes, the root processes in their server's cgroup: none since the log collector)."""
    account = unix_name(name, hub.prefix)
    users = sorted(processes_of_uids({pwd.getpwnam(account).pw_uid}, zombies=False))
    roots = [pid for pid in processes_of_uids({0}, zombies=False) if account in _read(f"/proc/{pid}/cgroup")]
    return users, roots


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def root_forked(hub) -> list[int]:
    """Root's processes running the fork server's script for this hub: fork servers, their log collectors."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            if entry.isdigit() and os.stat(f"/proc/{entry}").st_uid == 0:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"forkserver.py" in cmdline and str(hub.state_dir).encode() in cmdline:
                    found.append(int(entry))
    return found


def test_by_default_no_process_of_a_student_is_mergeable(fork_hub):
    (name,) = fork_hub.create_accounts("nomerge", 1)
    token = fork_hub.token_for(name)
    with KernelSession(fork_hub.spawn(name, token), token) as kernel:
        assert kernel.execute("print(1 + 1)").stdout.strip() == "2"
        users, _ = processes(fork_hub, name)
        assert len(users) >= 2  # server, kernel
        assert {ksm_stat(pid).get("ksm_merge_any") for pid in users} == {"no"}


@pytest.fixture
def ksm_settings():
    """Put the machine's KSM settings back after the test (`up` turns ksmd on for the hub)."""
    before = memmerge.read_state()
    if not before.present:
        pytest.skip("this kernel has no KSM")
    yield
    (memmerge.KSM / "pages_to_scan").write_text(str(before.pages_to_scan))
    (memmerge.KSM / "run").write_text(str(before.run))


def test_with_merge_memory_the_students_processes_are_merged_and_roots_are_not(make_hub, ksm_settings):
    hub = make_hub(sandbox={"merge_memory": True})
    assert memmerge.read_state().run == 1
    names = hub.create_accounts("merge", 2)
    tokens = {name: hub.token_for(name) for name in names}
    kernels = [KernelSession(hub.spawn(name, tokens[name]), tokens[name]) for name in names]
    try:
        for kernel in kernels:
            assert kernel.execute("print(1 + 1)").stdout.strip() == "2"
        users, roots = [], []
        for name in names:
            own, monitor = processes(hub, name)
            users += own
            roots += monitor
        assert len(users) >= 4 and not roots  # two servers, their kernels
        assert {ksm_stat(pid).get("ksm_merge_any") for pid in users} == {"yes"}
        forked = root_forked(hub)
        assert any(b"--collect" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in forked)
        assert {ksm_stat(pid).get("ksm_merge_any") for pid in forked} == {"no"}
        # And ksmd does merge their pages (two servers forked alike hold many equal ones).
        wait_for(
            lambda: sum(int(ksm_stat(pid).get("ksm_merging_pages", 0)) for pid in users) > 0,
            timeout=300,
            what="ksmd to merge pages of the students' processes",
        )
    finally:
        for kernel in kernels:
            kernel.close()
