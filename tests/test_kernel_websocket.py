"""A student's kernel websocket sends each message at once: Nagle's algorithm is off on the server's side.

With it on (Tornado's default), the small messages that end a cell's run waited for the browser's
delayed ACK: about 40 ms on every cell. Read from the server's own socket (pidfd_getfd), not timed.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import socket

import pytest
from reliability import processes_of_uids

from coursehub.clients.kernel import KernelSession
from coursehub.spawner.accounts import unix_name

pytestmark = pytest.mark.hub
SYS_PIDFD_GETFD = 438  # the same number on every architecture Linux has added it to since 5.6
libc = ctypes.CDLL(None, use_errno=True)


def sockets_of(pid: int) -> list[socket.socket]:
    """Copies of the process's TCP/IPv4 sockets (pidfd_getfd: the same open sockets, not new ones)."""
    found = []
    pidfd = os.pidfd_open(pid)
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                    continue
            except OSError:
                continue
            copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
            if copy < 0:
                continue
            sock = socket.socket(fileno=copy)
            if sock.family == socket.AF_INET and sock.type == socket.SOCK_STREAM:
                found.append(sock)
            else:
                sock.detach()
                os.close(copy)
    finally:
        os.close(pidfd)
    return found


def test_the_kernel_websocket_has_nagle_off_on_the_servers_side(fork_hub):
    hub = fork_hub
    (name,) = hub.create_accounts("nodelay", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    uid = pwd.getpwnam(unix_name(name, hub.prefix)).pw_uid
    pids = sorted(processes_of_uids({uid}, zombies=False))
    listening = {}
    for pid in pids:
        for sock in sockets_of(pid):
            if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                listening[pid] = sock.getsockname()
            sock.close()
    ((server_pid, (ip, port)),) = listening.items()  # the Jupyter server, and where it listens
    # Straight to the server (as the proxy does), so that its side of this very connection is known.
    with KernelSession(f"http://{ip}:{port}/user/{name}/", token) as kernel:
        assert kernel.execute("print(6 * 7)").stdout.strip() == "42"
        ours = kernel._connection.socket.getsockname()
        theirs = [s for s in sockets_of(server_pid) if _peer(s) == ours]
        assert len(theirs) == 1, ours
        assert theirs[0].getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        theirs[0].close()


def _peer(sock: socket.socket) -> tuple | None:
    try:
        return sock.getpeername()
    except OSError:
        return None
