"""The ports users' servers are given: below the kernel's ephemeral range."""

from __future__ import annotations

import random
import socket
from pathlib import Path

SERVER_PORTS_LOW = 10000


def ephemeral_ports() -> range:
    """The range the kernel takes source ports of outgoing connections (and port 0 binds) from."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def server_port() -> int:
    """A free port below the kernel's ephemeral range.

    Kernels bind random ephemeral ports; a server port taken from that range could be grabbed
    by some kernel before the server binds it, and the server would then quietly move to
    another port while the hub routes to the kernel's socket.
    """
    low = ephemeral_ports().start
    for _ in range(100):
        port = random.randrange(SERVER_PORTS_LOW, max(SERVER_PORTS_LOW + 1, low))
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    from jupyterhub.utils import random_port  # the ephemeral range, as JupyterHub's spawners do

    return random_port()
