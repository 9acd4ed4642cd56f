"""Limits hold on a real hub: memory (OOM kills the kernel, counted) and processes (fork bomb)."""

from __future__ import annotations

import re

import pytest
import requests
from conftest import wait_for

from coursehub.clients.kernel import KernelSession

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def student(shared_hub):
    """One student with a running server under the test limits (384M, 128 pids)."""
    (name,) = shared_hub.create_accounts("lim", 1)
    token = shared_hub.token_for(name)
    shared_hub.spawn(name, token)
    return shared_hub, name, token


def oom_count(hub) -> float:
    """coursehub_oom_kills_total summed over courses, from the hub's /hub/metrics."""
    text = requests.get(
        hub.url + "hub/metrics", timeout=30, headers={"Authorization": f"token {hub.api().token}"}
    ).text
    return sum(float(v) for v in re.findall(r"^coursehub_oom_kills_total\{[^}]*\} (\S+)$", text, re.M))


def test_memory_bomb_kills_the_kernel_not_the_server(student):
    hub, name, token = student
    before = oom_count(hub)
    server = hub.server_url(name)
    with KernelSession(server, token) as kernel:
        result = kernel.execute("blocks = []\nwhile True:\n    blocks.append(bytearray(32 * 2**20))")
    assert result.status == "died", result
    # The server is still there and answers; the hub too.
    status = requests.get(server + "api/status", headers={"Authorization": f"token {token}"}, timeout=30)
    assert status.status_code == 200
    assert "2" in hub.run(name, token, "print(1 + 1)")
    wait_for(lambda: oom_count(hub) > before, timeout=60, what="the OOM kill to be counted")
    assert "OOM" in hub.log() and name in hub.log()


def test_fork_bomb_stays_inside_pids_limit(student):
    hub, name, token = student
    code = """
import os, time
children = []
refused = None
for i in range(1000):
    try:
        pid = os.fork()
    except OSError as e:
        refused = type(e).__name__
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
open('bomb.txt', 'w').write(f"{len(children)} {refused}")
for pid in children:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
"""
    started_at = hub.api().json("GET", f"users/{name}")["servers"][""]["started"]
    # The bomb may also starve the server of threads for a moment, so the kernel writes its
    # findings to a file instead of relying on this websocket.
    with KernelSession(hub.server_url(name), token) as kernel:
        kernel.execute(code, timeout=120)
    read = "import os; print(open('bomb.txt').read() if os.path.exists('bomb.txt') else '')"
    started, refused = wait_for(
        lambda: hub.run(name, token, read).split(), timeout=120, what="the fork bomb's report"
    )
    assert refused == "BlockingIOError"
    assert int(started) < 128
    # Kernels are capped below the cgroup's limit, so the server itself kept running.
    assert "2" in hub.run(name, token, "print(1 + 1)")
    assert hub.api().json("GET", f"users/{name}")["servers"][""]["started"] == started_at
