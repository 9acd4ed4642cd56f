"""Who owns a listening port: parsed from /proc/net/tcp, checked against real sockets and processes."""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys

import pytest

from coursehub.spawner import listeners

TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:4E20 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 5551 1 0
   1: 0100007F:4E20 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1001        0 5552 1 0
   2: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0
"""


def test_only_listening_sockets_are_parsed():
    assert listeners.parse_listeners(TCP) == [
        listeners.Listener(20000, 1001, 5551),
        listeners.Listener(22, 0, 77),
    ]


@pytest.mark.parametrize(
    ("uid", "inodes", "expected"),
    [
        (1001, {5551}, "ours"),
        (1001, set(), "foreign"),  # the right uid, but a socket none of the server's processes holds
        (1002, {5551}, "foreign"),
    ],
)
def test_a_listener_is_ours_only_with_our_uid_and_socket(uid, inodes, expected):
    assert listeners.classify(listeners.parse_listeners(TCP), 20000, uid, inodes) == expected
    assert listeners.classify(listeners.parse_listeners(TCP), 20001, uid, inodes) == "absent"


def test_in_a_namespace_of_its_own_a_listener_is_ours_and_only_a_refusal_is_absent():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    assert asyncio.run(listeners.listening("127.0.0.1", port)) == "ours"
    listener.accept()[0].close()
    waiting = [socket.create_connection(("127.0.0.1", port)) for _ in range(2)]  # the queue is full
    try:
        # A full accept queue answers no new connection: not "absent", which would stop a busy server.
        assert asyncio.run(listeners.listening("127.0.0.1", port, timeout=0.5)) == "ours"
    finally:
        listener.close()
        for sock in waiting:
            sock.close()
    assert asyncio.run(listeners.listening("127.0.0.1", port)) == "absent"


def test_ownership_of_real_sockets():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], close_fds=True)
    try:
        uid = os.geteuid()
        assert listeners.ownership(port, uid, {os.getpid()}) == "ours"
        assert listeners.ownership(port, uid + 1, {os.getpid()}) == "foreign"
        # Same uid, but the listener is held by a process outside the server's group.
        assert listeners.ownership(port, uid, {sleeper.pid}) == "foreign"
        listener.close()
        assert listeners.ownership(port, uid, {os.getpid()}) == "absent"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_closed_listener_is_reported_and_closed_connections_are_not():
    if os.geteuid() != 0:
        pytest.skip("sock_diag's destroy notifications need CAP_NET_ADMIN")
    watch = listeners.destroyed_listeners_socket()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    client_port = client.getsockname()[1]
    accepted, _ = listener.accept()
    client.close()
    accepted.close()
    listener.close()
    ports: list[int] = []  # other programs on the machine may close listeners meanwhile
    while port not in ports:
        assert select.select([watch], [], [], 10)[0], ports
        ports += listeners.destroyed_ports(watch.recv(65536))
    watch.close()
    # Both ends of the connection were filtered out in the kernel (the accepted end has our port).
    assert ports.count(port) == 1 and client_port not in ports, ports
