"""Which address a request came from, as data; whose socket a loopback peer is, on real sockets."""

from __future__ import annotations

import os
import pwd
import socket
import sys
from types import SimpleNamespace

import pytest

from coursehub.clientaddr import (
    DIRECT,
    came_through_own_proxy,
    choose_address,
    client_address,
    forwarded_client,
    limit_key,
    parse_networks,
)
from coursehub.launch.binder.limits import RateLimiter
from coursehub.tcppeer import hex_endpoints, owner_in_table, peer_owner

FRONT = parse_networks(("10.0.0.0/24", "2001:db8:f::/48"))


@pytest.mark.parametrize(
    ("chain", "trusted", "client"),
    [
        # Only configurable-http-proxy: it appended its peer, which is the client.
        ("198.51.100.7", (), "198.51.100.7"),
        # Whatever the client wrote to the left is ignored.
        ("1.2.3.4, 198.51.100.7", (), "198.51.100.7"),
        # Behind a trusted front proxy: its entry is skipped, the address it saw is taken.
        ("198.51.100.7, 10.0.0.5", FRONT, "198.51.100.7"),
        # ...and a client forging a chain behind it gains nothing: the front proxy appended the real one.
        ("6.6.6.6, 198.51.100.7, 10.0.0.5", FRONT, "198.51.100.7"),
        # Two trusted hops.
        ("198.51.100.7, 10.0.0.9, 10.0.0.5", FRONT, "198.51.100.7"),
        # An untrusted proxy in front: its address is the client (no guessing past it).
        ("198.51.100.7, 192.0.2.1", FRONT, "192.0.2.1"),
        # All trusted: the left-most, the farthest address anyone trusted saw.
        ("10.0.0.8, 10.0.0.5", FRONT, "10.0.0.8"),
        # Ports, brackets, v4-mapped IPv6 and spacing are the same addresses.
        ("198.51.100.7:5123 ,10.0.0.5:443", FRONT, "198.51.100.7"),
        ("[2001:db8::1]:443, [2001:db8:f::2]", FRONT, "2001:db8::1"),
        ("::ffff:198.51.100.7, ::ffff:10.0.0.5", FRONT, "198.51.100.7"),
        # Garbage a trusted proxy passed on is kept as it is (bounded), not skipped.
        ("unknown, 10.0.0.5", FRONT, "unknown"),
        ("", FRONT, None),
        (" , ", FRONT, None),
    ],
)
def test_forwarded_client_is_the_rightmost_untrusted_entry(chain, trusted, client):
    assert forwarded_client(chain, trusted) == client


def test_requests_not_delivered_by_the_proxy_are_keyed_on_their_peer_whatever_they_claim():
    forged = "198.51.100.7, 10.0.0.5"
    assert choose_address(forged, "127.0.0.1", via_proxy=False, trusted=FRONT) == DIRECT + "127.0.0.1"
    assert choose_address(forged, "127.0.0.1", via_proxy=True, trusted=FRONT) == "198.51.100.7"
    assert choose_address("", "127.0.0.1", via_proxy=True, trusted=()) == "127.0.0.1"


def test_ipv6_clients_are_limited_per_64():
    assert limit_key("2001:db8:1:2:aaaa::1") == limit_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert limit_key("2001:db8:1:3::1") != limit_key("2001:db8:1:2::1")
    assert limit_key("198.51.100.7") == "198.51.100.7"
    assert limit_key(DIRECT + "127.0.0.1") == DIRECT + "127.0.0.1"


def test_a_fake_or_closed_request_is_not_from_the_proxy():
    request = SimpleNamespace(remote_ip="203.0.113.1", headers={"X-Forwarded-For": "198.51.100.7"})
    assert came_through_own_proxy(request) is False
    assert client_address(request) == DIRECT + "203.0.113.1"
    assert client_address(request, verify_proxy=False) == "198.51.100.7"


# --- /proc/net/tcp ---------------------------------------------------------------------------------

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def row(local: str, remote: str, uid: int, inode: int) -> str:
    queues = "00000000:00000000 00:00000000 00000000"
    return f"   0: {local} {remote} 01 {queues} {uid:5d} 0 {inode} 1 0 20 4 30 10 -1\n"


@pytest.mark.skipif(sys.byteorder != "little", reason="the table's hex words are in host byte order")
def test_proc_net_tcp_rows_are_found_by_both_ends():
    assert hex_endpoints(("127.0.0.1", 8081))[0] == "0100007F:1F91"
    peer, hub = ("127.0.0.1", 40000), ("127.0.0.1", 8081)
    p, h = hex_endpoints(peer)[0], hex_endpoints(hub)[0]
    table = HEADER + row(h, p, 0, 111) + row(p, h, 1234, 222)
    assert owner_in_table(table, peer, hub) == 1234  # the peer's own socket, not the hub's side
    assert owner_in_table(table, hub, peer) == 0
    assert owner_in_table(table, ("127.0.0.1", 40001), hub) is None
    # Closed by its process (orphaned or TIME_WAIT: inode 0, uid 0 shown): it vouches for nobody.
    assert owner_in_table(HEADER + row(p, h, 0, 0), peer, hub) is None


def test_peer_owner_of_real_loopback_connections():
    with socket.create_server(("127.0.0.1", 0)) as server:
        me = server.getsockname()
        with socket.create_connection(me, timeout=5):
            accepted, peer = server.accept()
            with accepted:
                assert peer_owner(peer, accepted.getsockname()) == os.geteuid()
            # Another process's connection, as another user, is that user's.
            if os.geteuid() != 0:
                pytest.skip("needs root to connect as another user")
            nobody = pwd.getpwnam("nobody").pw_uid
            child = os.fork()
            if child == 0:  # pragma: no cover - the child
                try:
                    os.setuid(nobody)
                    theirs = socket.create_connection(me, timeout=5)
                    theirs.recv(1)  # hold the connection until the parent has looked
                finally:
                    os._exit(0)
            accepted, peer = server.accept()
            with accepted:
                assert peer_owner(peer, accepted.getsockname()) == nobody
                accepted.sendall(b"x")
            os.waitpid(child, 0)


# --- bounded limiter -------------------------------------------------------------------------------


def test_rate_limiter_memory_is_bounded_and_limits_still_hold():
    limiter = RateLimiter(per_minute=2, max_keys=100)
    for i in range(10_000):  # an attacker rotating addresses
        limiter.allow(f"198.51.{i // 256}.{i % 256}", now=float(i) / 100)
        assert len(limiter.recent) <= 100
    # A client that keeps asking is still limited (and kept, being the most recently seen).
    assert limiter.allow("192.0.2.1", now=100.0) and limiter.allow("192.0.2.1", now=100.1)
    assert not limiter.allow("192.0.2.1", now=100.2)
    # Idle keys go first: after a quiet minute only new keys remain.
    assert limiter.allow("192.0.2.2", now=500.0)
    assert list(limiter.recent) == ["192.0.2.2"]
    assert limiter.allow("192.0.2.1", now=500.1)  # its minute has passed


def test_config_passes_trusted_proxies_and_checks_the_proxy_only_on_one_machine():
    from pathlib import Path

    from coursehub.hubconfig import Runtime, build
    from coursehub.kubernetes.values import build_hub_config
    from coursehub.paths import StatePaths
    from coursehub.settings.yamlfile import parse_settings

    settings = parse_settings(
        "hub: {trusted_proxies: [10.0.0.0/24, 192.0.2.1]}\n"
        "courses: [{name: c, repo: /r, kubernetes: {image: 'i:1'}}]"
    )
    local = build(settings, Runtime(StatePaths(Path("/s")), "/bin/chp", "/bin/python", Path("/e")))
    assert local.Authenticator.trusted_proxies == ["10.0.0.0/24", "192.0.2.1/32"]
    assert "verify_proxy_peer" not in local.Authenticator  # the trait's default: checked
    chart = build_hub_config(settings)
    assert chart.Authenticator.trusted_proxies == ["10.0.0.0/24", "192.0.2.1/32"]
    assert chart.Authenticator.verify_proxy_peer is False
