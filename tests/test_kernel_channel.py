"""The kernel channel on a real hub: the socket on which a forked server asks the fork server for kernels.

The student controls their server process, so the test takes the channel from it (pidfd_getfd, as any
process of the user may) and sends what a hostile student would. What the fork server does as root
comes from the server's record, never from a message: a request only ever yields a kernel of that
user, in that sandbox; garbage and floods change nothing for anybody else.
"""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest
from conftest import wait_for
from reliability import forkserver_pids, processes_of_uids

from coursehub.clients.kernel import KernelSession
from coursehub.spawner.accounts import unix_name

pytestmark = pytest.mark.hub

# Runs in the student's kernel: take the channel from the server (PID 1 of this sandbox, the channel
# its fd 3) with pidfd_getfd, and write a connection file in `folder` for a kernel to ask for.
TAKE_CHANNEL = """
import ctypes, json, os, socket
from jupyter_client.connect import write_connection_file

libc = ctypes.CDLL(None, use_errno=True)
fd = libc.syscall(438, os.pidfd_open(1), 3, 0)  # pidfd_getfd: the server's kernel channel
assert fd >= 0, os.strerror(ctypes.get_errno())
channel = socket.socket(fileno=fd)
folder = os.path.expanduser({folder!r})
os.makedirs(folder, exist_ok=True)
connection, _ = write_connection_file(os.path.join(folder, "kernel.json"), transport="ipc",
                                      ip=os.path.join(folder, "k"))
"""

# Runs in the student's kernel: take the server's channel, ask for one real kernel, then flood.
HOSTILE = (
    TAKE_CHANNEL.format(folder="~/.chan-probe")
    + """
report = {"seqpacket": channel.type == socket.SOCK_SEQPACKET}
reply = "/tmp/chan-probe.sock"
if os.path.exists(reply):
    os.unlink(reply)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(reply)
listener.listen(1)
listener.settimeout(120)
env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
channel.send(json.dumps({"args": ["-f", connection], "env": env, "cwd": folder, "reply": reply}).encode())
conn, _ = listener.accept()
line = conn.makefile("rb").readline()
kernel = json.loads(line)["pid"]
report["kernel_uid"] = os.stat(f"/proc/{kernel}").st_uid
report["same_namespaces"] = all(
    os.readlink(f"/proc/{kernel}/ns/{name}") == os.readlink(f"/proc/1/ns/{name}")
    for name in ("mnt", "pid", "net", "ipc", "uts", "cgroup")
)
report["same_cgroup"] = open(f"/proc/{kernel}/cgroup").read() == open("/proc/1/cgroup").read()
os.kill(kernel, 9)

channel.setblocking(False)
hostile = [b"garbage", b"\\xff" * 60000, json.dumps({"reply": "/etc/passwd"}).encode(),
           json.dumps({"args": ["-f", "/etc/shadow"], "env": {}, "cwd": "/root", "reply": reply}).encode()]
sent = 0
for message in hostile + [b"{}"] * 300:
    try:
        channel.send(message)
        sent += 1
    except BlockingIOError:
        break  # the socket is full: the fork server reads one a second past its first few
report["sent"] = sent
print(json.dumps(report))
"""
)


def test_a_student_holding_the_kernel_channel_gets_only_their_own_kernels(fork_hub):
    hub = fork_hub
    mallory, other, late = hub.create_accounts("chan", 3)
    tokens = {name: hub.token_for(name) for name in (mallory, other, late)}
    for name in (mallory, other):
        hub.spawn(name, tokens[name])
    forks = forkserver_pids(hub.state_dir)
    account = unix_name(mallory, hub.prefix)
    uid = pwd.getpwnam(account).pw_uid
    try:
        run_hostile(hub, mallory, other, late, tokens, forks, account, uid)
    finally:
        # Her server's end: the fork server drops her channel, and what she had queued with it.
        hub.api().stop_server(mallory)
        wait_for(lambda: not hub.api().json("GET", f"users/{mallory}")["servers"], what="her server's stop")


def run_hostile(hub, mallory, other, late, tokens, forks, account, uid) -> None:  # noqa: ANN001
    with KernelSession(hub.server_url(mallory), tokens[mallory]) as kernel:
        result = kernel.execute(HOSTILE)
        assert result.status == "ok", result.error + result.stderr
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["seqpacket"] is True
        # The one real request: a kernel of hers, in her sandbox, and nothing more.
        assert report["kernel_uid"] == uid
        assert report["same_namespaces"] is True and report["same_cgroup"] is True
        assert report["sent"] >= 5
        # Meanwhile everyone else is served: another student's kernel, a new student's server.
        assert hub.run(other, tokens[other], "print(6 * 7)").strip() == "42"
        hub.spawn(late, tokens[late])
        assert hub.run(late, tokens[late], "print(6 * 7)").strip() == "42"
        # The same fork server, alive (the set may also catch a child it just forked, not yet in a cgroup).
        assert forks <= forkserver_pids(hub.state_dir)

        # Whatever the flood started runs as her: no root process stays in her sandbox's cgroup.
        def roots_in_her_cgroup() -> list[int]:
            found = []
            for pid in processes_of_uids({0}, zombies=False):
                try:
                    if f"/{account}--" in Path(f"/proc/{pid}/cgroup").read_text():
                        found.append(pid)
                except OSError:
                    continue
            return found

        wait_for(lambda: not roots_in_her_cgroup(), timeout=60, what="no root process in her cgroup")


# Runs in the student's kernel, in two steps: take the channel and get ready; later, ask for a kernel
# with a short request and scan that kernel's memory for a secret (given masked) from a longer request
# another user's server made in between.
TAKE = TAKE_CHANNEL.format(folder="~/.leak-probe") + 'print("ready")\n'

SCAN = """
secret = bytes(a ^ b for a, b in zip({masked!r}, {mask!r}))
reply = "/tmp/leak-probe.sock"
if os.path.exists(reply):
    os.unlink(reply)
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(reply)
listener.listen(1)
listener.settimeout(120)
channel.send(json.dumps({{"args": ["-f", connection], "env": {{}}, "cwd": "/", "reply": reply}}).encode())
conn, _ = listener.accept()
kernel = json.loads(conn.makefile("rb").readline())["pid"]
found = []
with open(f"/proc/{{kernel}}/maps") as maps, open(f"/proc/{{kernel}}/mem", "rb", 0) as mem:
    for line in maps:
        start, end = (int(x, 16) for x in line.split()[0].split("-"))
        if line.split()[1][0] != "r" or end - start > 1 << 30:
            continue
        try:
            mem.seek(start)
            if secret in mem.read(end - start):
                found.append(line.split()[-1])
        except (OSError, ValueError, OverflowError):
            pass
os.kill(kernel, 9)
print(json.dumps(found))
"""


def test_a_kernel_forked_after_another_users_request_holds_none_of_it(fork_hub):
    """A kernel request carries the server's environment (its API token) through the root fork server."""
    hub = fork_hub
    alice, mallory = hub.create_accounts("leak", 2)
    tokens = {name: hub.token_for(name) for name in (alice, mallory)}
    for name in (alice, mallory):
        hub.spawn(name, tokens[name])
    with KernelSession(hub.server_url(mallory), tokens[mallory]) as scanner:
        assert scanner.execute(TAKE).stdout.strip() == "ready"
        # Alice's kernel request (her server's environment, her token in it) goes through the fork
        # server now; mallory's short one comes next, into the same buffer.
        secret = hub.run(alice, tokens[alice], "import os; print(os.environ['JUPYTERHUB_API_TOKEN'])").strip()
        mask = os.urandom(len(secret))
        masked = bytes(a ^ b for a, b in zip(secret.encode(), mask, strict=True))
        result = scanner.execute(SCAN.format(masked=masked, mask=mask))
        assert result.status == "ok", result.error + result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == []
