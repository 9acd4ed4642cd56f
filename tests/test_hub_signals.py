"""A hub started in the background still stops cleanly: its services can be interrupted."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from conftest import Hub, hub_root, needs_root_sandbox, wait_for

pytestmark = pytest.mark.hub


def ignored_signals(pid: int) -> int:
    """The SigIgn mask of `pid` (bit n-1 set: signal n ignored)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return int(line.split()[1], 16)
    raise AssertionError(f"no SigIgn in /proc/{pid}/status")


def service_pids(hub_pid: int) -> list[int]:
    """The hub's managed services: its children that run the cullers (one process, hub/cullers.py)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) != hub_pid:
                continue
            if b"coursehub.hub.cullers" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def test_a_hub_started_with_sigint_ignored_gives_its_services_the_default(request):
    """`coursehub up &` from a script, or nohup: the shell starts it with SIGINT ignored, and JupyterHub
    stops its services with SIGINT. Inherited, the services ignored it: each stop waited JupyterHub's 10 s
    before SIGTERM, and `coursehub down` killed the hub after 30 s, in its cleanup."""
    needs_root_sandbox()
    hub = Hub(hub_root(), {"culler": {"every": 60}})
    request.addfinalizer(hub.teardown)
    hub.start(preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    services = service_pids(hub.hub_pid)
    assert services, "no culler service found under the hub"
    for pid in [hub.hub_pid, *services]:
        assert not ignored_signals(pid) & (1 << (signal.SIGINT - 1)), f"pid {pid} ignores SIGINT"


# The system call a process sleeps in, from /proc/<pid>/syscall, per architecture.
WAIT4 = {"x86_64": 61, "aarch64": 260}


def test_coursehub_up_sleeps_in_one_wait_for_the_hub_while_it_runs(fork_hub):
    """`up` woke every 50 ms to poll its hub (Popen.wait with a timeout, 0.16 CPU-s a minute for as long
    as the hub ran); it now blocks in wait4 until the hub exits or a signal (reload, stop) comes."""
    number = WAIT4.get(os.uname().machine)
    if number is None:
        pytest.skip(f"no wait4 number known for {os.uname().machine}")
    syscall = Path(f"/proc/{fork_hub.proc.pid}/syscall")
    # Once the hub is up and `up` has said so; the poll never got there (it slept in clock_nanosleep).
    wait_for(lambda: syscall.read_text().split()[0] == str(number), timeout=60, what="`up` waiting in wait4")
    seen = [syscall.read_text().split()[0] for _ in range(20)]
    assert seen == [str(number)] * 20, seen
