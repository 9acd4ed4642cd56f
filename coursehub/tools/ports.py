"""Ports for hubs that tools and tests start beside other hubs on one machine."""

from __future__ import annotations

import random
import socket

from coursehub.errors import CoursehubError
from coursehub.spawner.ports import SERVER_PORTS_LOW, ephemeral_ports


def quiet_ports() -> range:
    """Ports that neither an outgoing connection nor a user's server is given.

    A port found free and bound seconds later by a hub's proxy can be lost in between: below the
    ephemeral range to a server the sandbox starts (any hub's burst on this machine), inside it to a
    connection's source port. Above it only another caller of this module binds.
    """
    ephemeral = ephemeral_ports()
    if ephemeral.stop <= 64512:
        return range(ephemeral.stop, 65536)
    return range(1024, SERVER_PORTS_LOW)  # an ephemeral range reaching 65535: the ports below the servers'


class PortPicker:
    """Hands out free quiet ports, never the same twice, from this caller's own slice of them.

    Callers running side by side (xdist workers) each pass their own `slot` of `slots`, so two of them
    never pick the same port between checking it and binding it.
    """

    def __init__(self, slot: int = 0, slots: int = 1) -> None:
        ports = quiet_ports()
        share = len(ports) // max(1, slots)
        self._ports = list(ports[slot * share : (slot + 1) * share]) or list(ports)
        random.shuffle(self._ports)  # other checkouts on the machine start at another place
        self._next = 0

    def pick(self) -> int:
        """A port of this slice that nothing listens on now, not handed out before (cycling when all were)."""
        for _ in range(len(self._ports)):
            port = self._ports[self._next % len(self._ports)]
            self._next += 1
            if _bindable(port):
                return port
        raise CoursehubError(f"no free port among {len(self._ports)} quiet ports: is something holding them?")


def _bindable(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


_SHARED: list[PortPicker] = []


def shared_picker(slot: int = 0, slots: int = 1) -> PortPicker:
    """This process's one picker, made for the first caller's slot: every hub it starts draws from it.

    The test suite runs `coursehub bench` inside its xdist workers: a benchmark hub with a picker of
    its own drew from the whole range, and so from other workers' slices (run 45: a bench hub's proxy
    found its API port taken by another worker's hub).
    """
    if not _SHARED:
        _SHARED.append(PortPicker(slot, slots))
    return _SHARED[0]
