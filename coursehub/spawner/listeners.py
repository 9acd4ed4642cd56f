"""Who listens on a server's port: the hub routes to a port only while that server owns its listener."""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

PROC = Path("/proc")
LISTEN = "0A"
Ownership = Literal["ours", "absent", "foreign"]


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket as /proc/net/tcp shows it."""

    port: int
    uid: int
    inode: int


def parse_listeners(text: str) -> list[Listener]:
    """The listening sockets in the text of /proc/net/tcp or /proc/net/tcp6 (pure)."""
    found = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != LISTEN:
            continue
        port = int(fields[1].rsplit(":", 1)[1], 16)
        found.append(Listener(port, int(fields[7]), int(fields[9])))
    return found


def classify(listeners: Iterable[Listener], port: int, uid: int, inodes: set[int]) -> Ownership:
    """'ours' when every listener on `port` is the server's (its uid, a socket its processes hold)."""
    on_port = [item for item in listeners if item.port == port]
    if not on_port:
        return "absent"
    if all(item.uid == uid and item.inode in inodes for item in on_port):
        return "ours"
    return "foreign"


def socket_inodes(pids: Iterable[int], proc: Path = PROC) -> set[int]:
    """Inodes of the sockets the processes `pids` hold open."""
    inodes: set[int] = set()
    for pid in pids:
        try:
            fds = os.listdir(proc / str(pid) / "fd")
        except OSError:
            continue  # exited meanwhile
        for fd in fds:
            try:
                target = os.readlink(proc / str(pid) / "fd" / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def ownership(port: int, uid: int, pids: set[int], proc: Path = PROC) -> Ownership:
    """Whether the listener on `port`, in the network namespace of `pids`, belongs to those processes."""
    if not pids:
        return "absent"
    # The server's own view of the network: the host's today, its own namespace once it has one.
    net = proc / str(min(pids)) / "net"
    listeners: list[Listener] = []
    for name in ("tcp", "tcp6"):
        try:
            listeners += parse_listeners((net / name).read_text())
        except OSError:
            continue
    on_port = [item for item in listeners if item.port == port]
    if any(item.uid != uid for item in on_port):
        return "foreign"  # no need to look at anybody's descriptors
    return classify(on_port, port, uid, socket_inodes(pids, proc) if on_port else set())


async def listening(address: str, port: int, timeout: float = 5.0) -> Ownership:
    """'absent' when a connect to `address`:`port` is refused, else 'ours' (for a namespace only the
    server's processes are in). A connect that times out (a full accept queue under load) is 'ours':
    only a refusal says nobody listens, and a wrong 'absent' would stop a working server."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except ConnectionRefusedError:
        return "absent"
    except (TimeoutError, OSError):
        return "ours"
    writer.close()
    return "ours"


# sock_diag's multicast groups (linux/sock_diag.h): a message for each TCP socket destroyed.
NETLINK_SOCK_DIAG = 4
SKNLGRP_INET_TCP_DESTROY, SKNLGRP_INET6_TCP_DESTROY = 1, 3
# A classic BPF filter on the netlink socket: keep only sockets without a peer (listeners;
# inet_diag_msg's destination port at offset 16 + 6 is 0), so connections closing by the
# thousand never wake the hub.
_DPORT_OFFSET = 22
_FILTER = [
    (0x28, 0, 0, _DPORT_OFFSET),  # ldh [22]
    (0x15, 0, 1, 0),  # jeq #0, keep, drop
    (0x06, 0, 0, 0xFFFF),  # keep
    (0x06, 0, 0, 0),  # drop
]
SO_ATTACH_FILTER = 26


def destroyed_listeners_socket() -> socket.socket:
    """A non-blocking netlink socket told of every listening TCP socket of this namespace that closes."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, NETLINK_SOCK_DIAG)
    try:
        program = b"".join(struct.pack("=HBBI", *ins) for ins in _FILTER)
        code = ctypes.create_string_buffer(program, len(program))  # the kernel copies it
        fprog = struct.pack("HL", len(_FILTER), ctypes.addressof(code))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
        groups = (1 << (SKNLGRP_INET_TCP_DESTROY - 1)) | (1 << (SKNLGRP_INET6_TCP_DESTROY - 1))
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def destroyed_ports(data: bytes) -> list[int]:
    """Local ports of the destroyed sockets in one netlink read (pure)."""
    ports, offset = [], 0
    while offset + 24 <= len(data):
        length = struct.unpack_from("=I", data, offset)[0]
        if length < 24:
            break
        ports.append(struct.unpack_from("!H", data, offset + 20)[0])
        offset += (length + 3) & ~3
    return ports


def watch_destroyed(loop, on_port: Callable[[int], None]) -> socket.socket | None:
    """Call `on_port(port)` on `loop` whenever a listening TCP socket closes; None where not allowed."""
    try:
        sock = destroyed_listeners_socket()
    except OSError:
        return None  # no CAP_NET_ADMIN, or an old kernel: polls still catch it, later

    def readable() -> None:
        while True:
            try:
                data = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return  # e.g. ENOBUFS after a burst: the next poll checks every server anyway
            for port in destroyed_ports(data):
                on_port(port)

    loop.add_reader(sock.fileno(), readable)
    return sock
