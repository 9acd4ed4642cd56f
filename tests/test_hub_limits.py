"""Limits hold on a real hub: memory (OOM kills the kernel, counted) and processes (fork bomb)."""

from __future__ import annotations

import json
import os
import pwd
import re
from pathlib import Path

import pytest
import requests
from conftest import wait_for

from coursehub.clients.kernel import KernelSession
from coursehub.settings import SandboxSettings
from coursehub.spawner.accounts import unix_name

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
    # The server said why, in the running cell (coursehub_oom), with the limit: 384M on the test hubs.
    assert "MemoryError: Your kernel ran out of memory" in result.error, result
    assert "may use 384 MiB, the limit of the course demo" in result.error, result
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


def test_server_output_is_capped_and_the_newest_kept(student):
    hub, name, token = student
    cap = SandboxSettings().server_log_max
    logs = hub.state_dir / "logs"
    # The kernel inherited the server's output (ipykernel keeps a copy of the original stdout while
    # it captures fd 1; a file before, a pipe now): three times the cap goes there.
    code = f"""
import os
def target(fd):
    try:
        return os.readlink(f'/proc/self/fd/{{fd}}')
    except OSError:
        return ''
server_output = os.readlink('/proc/1/fd/1')  # PID 1 of the sandbox: the server, or bwrap
fd = [int(fd) for fd in os.listdir('/proc/self/fd') if target(fd) == server_output][0]
chunk = b'x' * (1 << 20) + b'\\n'
for _ in range({3 * cap} // len(chunk) + 1):
    os.write(fd, chunk)
os.write(fd, b'the newest line\\n')
print('done')
"""
    assert "done" in hub.run(name, token, code)
    files = sorted(logs.glob(f"{hub.prefix}{name}--default.log*"))
    assert files, sorted(p.name for p in logs.iterdir())
    newest = logs / f"{hub.prefix}{name}--default.log"
    wait_for(lambda: b"the newest line" in newest.read_bytes(), timeout=60, what="the last line in the log")
    sizes = {f.name: f.stat().st_size for f in files}
    assert sum(sizes.values()) <= cap, sizes
    # The server and the hub carry on.
    assert "2" in hub.run(name, token, "print(1 + 1)")
    assert requests.get(hub.url + "hub/api/", timeout=30).ok


def test_every_process_in_the_students_cgroup_is_theirs(student):
    """No root process is in a student's cgroup (each fork-mode server once had a root monitor there)."""
    hub, name, token = student
    assert "2" in hub.run(name, token, "print(1 + 1)")  # a kernel too
    account = unix_name(name, hub.prefix)
    uid = pwd.getpwnam(account).pw_uid
    owners = {}
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and f"/{account}--" in Path(f"/proc/{entry}/cgroup").read_text():
                status = Path(f"/proc/{entry}/status").read_text()
                owners[int(entry)] = int(re.search(r"^Uid:\s+(\d+)", status, re.M)[1])
        except OSError:
            continue  # exited meanwhile
    assert len(owners) >= 2, owners  # the server and the kernel at least
    assert set(owners.values()) == {uid}, owners


CGROUP_VIEW = """
import json, os
root = '/sys/fs/cgroup'
v2 = os.path.exists(root + '/cgroup.controllers')
def read(*names):
    for name in names:
        try:
            return open(os.path.join(root, name)).read().strip()
        except OSError:
            continue
    return None
print(json.dumps({
    'version': 2 if v2 else 1,
    'memory': read('memory.max', 'memory/memory.limit_in_bytes'),
    'cpu': read('cpu.max', 'cpu/cpu.cfs_quota_us'),
    'pids': read('pids.max', 'pids/pids.max'),
    'own': open('/proc/self/cgroup').read().split(),
    'listing': sorted(os.listdir(root)),
}))
"""


def test_the_server_sees_its_own_cgroup_limits(student):
    hub, name, token = student
    seen = json.loads(hub.run(name, token, CGROUP_VIEW).strip().splitlines()[-1])
    assert seen["memory"] == str(384 * 2**20), seen  # the test hub's limits: 384M, 1 cpu, 128 pids
    assert seen["cpu"] in ("100000 100000", "100000"), seen
    assert seen["pids"] == "128", seen
    # A cgroup namespace: the server's group is the root of what it sees, and nobody else's shows.
    assert all(line.endswith(":/") for line in seen["own"]), seen["own"]
    assert not any(hub.prefix in entry or "coursehub" in entry for entry in seen["listing"]), seen
