"""The tests' Chromium in a network namespace of its own, with loopback forwarded to the host's.

Chromium drops every connection in flight (net::ERR_NETWORK_CHANGED) whenever an address of its
network namespace comes or goes. On this machine the suite's other workers do that all the time:
each hub adds its gateway address at `up` and removes it at `down`, each isolated server puts the
host end of a veth pair up. A student's browser is on another machine and never sees those; a
test's browser shares the host's namespace and lost HTTP/2 page loads to them (test_tls, in CI).

So each test process runs Chromium in a namespace that nothing changes after it starts: only `lo`,
and an nftables rule that sends every TCP connection to 127.0.0.0/8 to one port, where this
forwarder (its listening socket made inside the namespace, the rest of it in the host's) reads the
port Chromium asked for (SO_ORIGINAL_DST) and connects to the same port on the host's loopback.
The hub sees the browser come from 127.0.0.1, as before. pasta (Debian's passt) does this too, but
its automatic mode leaves out the ephemeral ports, which is where every test server listens.

Run as `python browsernet.py NAME`: prints "ready" once the namespace serves, and removes the
namespace when its standard input closes (the test process ended, however it ended).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

FORWARD_PORT = 9  # inside the namespace only; nothing else listens there
SO_ORIGINAL_DST = 80
CLONE_NEWNET = 0x40000000
PREFIX = "chbrowser-"
WRAPPER_DIR = Path("/tmp/coursehub-tests/browsernet")


def _setns(fd: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["ip", "netns", "exec", netns] if netns else []
    return subprocess.run([*prefix, *args], check=check, capture_output=True, text=True, timeout=30)


def _remove_stale() -> None:
    """Namespaces of test processes that are gone (killed before their forwarder could clean up)."""
    for entry in Path("/run/netns").glob(PREFIX + "*") if Path("/run/netns").exists() else []:
        pid = entry.name.removeprefix(PREFIX)
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            _ip("ip", "netns", "del", entry.name, check=False)


def make_namespace(name: str) -> socket.socket:
    """The namespace with `lo` up, IPv6 off and the redirect; returns the forwarder's listening socket."""
    _remove_stale()
    _ip("ip", "netns", "del", name, check=False)
    _ip("ip", "netns", "add", name)
    _ip("ip", "link", "set", "lo", "up", netns=name)
    # Without ::1 Chromium connects to *.localhost over 127.0.0.1, which the rule below covers.
    _ip("sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", netns=name)
    _ip("sysctl", "-qw", "net.ipv6.conf.lo.disable_ipv6=1", netns=name)
    rules = (
        "table ip browsernet {\n"
        "  chain out { type nat hook output priority -100; policy accept;\n"
        f"    ip daddr 127.0.0.0/8 tcp dport != {FORWARD_PORT} redirect to :{FORWARD_PORT}\n"
        "  }\n"
        "}\n"
    )
    nft = ["ip", "netns", "exec", name, "nft", "-f", "-"]
    subprocess.run(nft, input=rules, text=True, check=True, timeout=30)
    host = os.open("/proc/self/ns/net", os.O_RDONLY)
    inside = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(inside)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", FORWARD_PORT))
        listener.listen(512)
    finally:
        _setns(host)
        os.close(host)
        os.close(inside)
    listener.setblocking(False)
    return listener


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


async def _forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    sock = client_writer.get_extra_info("socket")
    raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port = struct.unpack("!H", raw[2:4])[0]
    address = socket.inet_ntoa(raw[4:8])
    try:
        server_reader, server_writer = await asyncio.open_connection(address, port)
    except OSError:
        # Refused on the host: refused for Chromium too (a reset, as near as a proxy gets).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client_writer.close()
        return
    await asyncio.gather(_pipe(client_reader, server_writer), _pipe(server_reader, client_writer))
    for writer in (client_writer, server_writer):
        writer.close()


async def _serve(listener: socket.socket, name: str) -> None:
    server = await asyncio.start_server(_forward, sock=listener, limit=1 << 20)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    # Until the test process closes our stdin (it ended).
    await loop.run_in_executor(None, sys.stdin.buffer.read)
    server.close()


def main(name: str) -> None:
    """Make the namespace `name`, forward until stdin closes, remove it."""
    listener = make_namespace(name)
    try:
        asyncio.run(_serve(listener, name))
    finally:
        _ip("ip", "netns", "del", name, check=False)


class BrowserNet:
    """One forwarder per test process, and a Chromium executable that runs in its namespace."""

    _started: BrowserNet | None = None

    def __init__(self, chromium: str) -> None:
        self.name = f"{PREFIX}{os.getpid()}"
        self.proc = subprocess.Popen(
            [sys.executable, __file__, self.name], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            self.proc.kill()
            raise RuntimeError(f"the browsers' network namespace did not start (said {line!r})")
        WRAPPER_DIR.mkdir(parents=True, exist_ok=True)
        self.executable = WRAPPER_DIR / f"chromium-{os.getpid()}"
        self.executable.write_text(f'#!/bin/sh\nexec ip netns exec {self.name} {chromium} "$@"\n')
        self.executable.chmod(0o755)

    @classmethod
    def chromium(cls, chromium: str) -> str:
        """The executable for Playwright: Chromium in this process's browser namespace (started once)."""
        if cls._started is None or cls._started.proc.poll() is not None:
            cls._started = cls(chromium)
        return str(cls._started.executable)


if __name__ == "__main__":
    main(sys.argv[1])
