"""Which address a request came from: the right-most X-Forwarded-For entry no trusted proxy wrote.

The per-address limits (guest links, Binder launches, login lockout) key on it. Its two rules:

- X-Forwarded-For is believed only on requests the hub's own configurable-http-proxy delivered. The hub's
  port is also where every user server reaches the hub's API, so any kernel on the machine can connect to it
  and send its own X-Forwarded-For. Such a request is keyed on its real TCP peer instead, marked
  `direct:` so that it shares no count with people reaching the hub through the proxy.
- In the proxy's chain, entries written by `hub.trusted_proxies` (front proxies, load balancers) are
  skipped from the right: the first one left is the address the outermost trusted proxy saw.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Any

from . import tcppeer

Network = IPv4Network | IPv6Network
Address = IPv4Address | IPv6Address
DIRECT = "direct:"
# An IPv6 client usually holds a whole /64 (SLAAC, privacy addresses): one client, one limit.
IPV6_CLIENT_PREFIX = 64


@lru_cache(maxsize=16)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """hub.trusted_proxies as networks (a bare address is a /32 or /128)."""
    return tuple(ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def parse_entry(entry: str) -> Address | None:
    """One X-Forwarded-For entry as an address ('[v6]:port', 'v4:port' and v4-mapped v6 accepted)."""
    text = entry.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def forwarded_client(forwarded: str, trusted: Sequence[Network]) -> str | None:
    """The right-most entry of an X-Forwarded-For chain not in `trusted` (all trusted: the left-most)."""
    entries = [entry.strip() for entry in forwarded.split(",") if entry.strip()]
    for entry in reversed(entries):
        address = parse_entry(entry)
        if address is None:
            # Only a trusted proxy wrote here (we stop at the first untrusted one): keep what it said.
            return entry[:64]
        if not any(address in network for network in trusted):
            return str(address)
    if not entries:
        return None
    first = parse_entry(entries[0])
    return str(first) if first is not None else entries[0][:64]


def choose_address(forwarded: str, peer: str, via_proxy: bool, trusted: Sequence[Network]) -> str:
    """The client address of a request: from the proxy's X-Forwarded-For, else the TCP peer (marked)."""
    if not via_proxy:
        return DIRECT + (peer or "?")
    return forwarded_client(forwarded, trusted) or peer or "?"


def limit_key(address: str) -> str:
    """What per-address limits count: the address, or its /64 for IPv6."""
    parsed = parse_entry(address)
    if isinstance(parsed, IPv6Address):
        return str(ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return address


def peer_of(request: Any) -> str:
    """The TCP peer of a tornado request (its `remote_ip` is rewritten from forwarded headers)."""
    address = getattr(getattr(request, "connection", None), "context", None)
    address = getattr(address, "address", None)
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(getattr(request, "remote_ip", "") or "")


def came_through_own_proxy(request: Any) -> bool:
    """True when the request's connection is held, on this machine, by a process of the hub's own user.

    That is configurable-http-proxy, which the hub starts as itself (root); students' code never runs as
    root (docs/security.md), and a socket its process has closed counts for nobody. A shared secret in a
    header (CHP's --custom-header) would not do: CHP adds it to every proxied request, so each user
    server would receive the secret, and it would show in CHP's command line.
    """
    try:
        sock = request.connection.stream.socket
        peer, me = sock.getpeername(), sock.getsockname()
    except (AttributeError, OSError):
        return False  # the client has gone, or this is no TCP connection
    return tcppeer.peer_owner((peer[0], peer[1]), (me[0], me[1])) == os.geteuid()


def client_address(request: Any, trusted: Iterable[str] = (), verify_proxy: bool = True) -> str:
    """The address of the client that sent `request` (see the module docstring).

    `verify_proxy=False` believes any peer to be the proxy: for Kubernetes, where the proxy runs in
    another pod and its sockets cannot be seen (docs/security.md says what that leaves open).
    """
    via_proxy = came_through_own_proxy(request) if verify_proxy else True
    return choose_address(
        request.headers.get("X-Forwarded-For", ""),
        peer_of(request),
        via_proxy,
        parse_networks(tuple(trusted)),
    )
