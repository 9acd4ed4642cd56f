"""Which Unix user holds the other end of a TCP connection made on this machine (from /proc/net/tcp)."""

from __future__ import annotations

import sys
from ipaddress import IPv4Address, IPv6Address, ip_address

Endpoint = tuple[str, int]  # (address, port), as socket.getpeername() gives it
TABLES = ("/proc/self/net/tcp", "/proc/self/net/tcp6")
# Column indexes of a /proc/net/tcp row: "sl local rem st tx:rx tr:when retrnsmt uid timeout inode".
LOCAL, REMOTE, UID, INODE = 1, 2, 7, 9


def hex_endpoints(endpoint: Endpoint) -> list[str]:
    """How `endpoint` can appear in /proc/net/tcp{,6}: 'ADDR:PORT', each 32-bit word in host byte order."""
    address, port = ip_address(endpoint[0]), endpoint[1]
    forms: list[IPv4Address | IPv6Address] = [address]
    if isinstance(address, IPv4Address):
        forms.append(IPv6Address(f"::ffff:{address}"))  # an IPv6 socket connected to an IPv4 address
    result = []
    for form in forms:
        packed = form.packed
        words = [packed[i : i + 4] for i in range(0, len(packed), 4)]
        hexed = "".join(f"{int.from_bytes(word, sys.byteorder):08X}" for word in words)
        result.append(f"{hexed}:{port:04X}")
    return result


def owner_in_table(table: str, local: Endpoint, remote: Endpoint) -> int | None:
    """The uid owning the open socket from `local` to `remote` in one /proc/net/tcp text, if listed.

    A socket its process has closed (orphaned, or in TIME_WAIT) shows inode 0 and, for TIME_WAIT,
    uid 0: nobody holds it any more, so it vouches for nobody (None).
    """
    locals_, remotes = hex_endpoints(local), hex_endpoints(remote)
    if not any(form in table for form in locals_):  # the common case, without splitting every row
        return None
    for line in table.splitlines()[1:]:
        fields = line.split()
        if len(fields) > INODE and fields[LOCAL] in locals_ and fields[REMOTE] in remotes:
            return None if fields[INODE] == "0" else int(fields[UID])
    return None


def peer_owner(peer: Endpoint, me: Endpoint) -> int | None:
    """The uid of the process on this machine (and network namespace) whose socket `peer` talks to `me`.

    None when the peer is elsewhere: another host, or another network namespace, whose sockets this
    one's tables do not list.
    """
    for path in TABLES:
        try:
            with open(path, encoding="ascii") as table:
                uid = owner_in_table(table.read(), peer, me)
        except OSError:
            continue  # no IPv6 on this kernel
        if uid is not None:
            return uid
    return None
