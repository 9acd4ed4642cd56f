"""Pure parts of servers' network namespaces: names, addresses, resolvers and the nftables rules."""

from __future__ import annotations

from pathlib import Path

from coursehub.settings import Settings
from coursehub.spawner import netns

NET = netns.hub_net(Path("/var/lib/coursehub"), "10.217.0.0/16")


def test_names_fit_the_kernel_limits_and_differ_per_hub():
    other = netns.hub_net(Path("/srv/other-hub"), "10.217.0.0/16")
    assert NET.tag != other.tag and NET.table != other.table
    server = netns.server_net(NET, "ch-alice--default")
    assert len(server.veth) <= 15  # IFNAMSIZ - 1
    assert server.veth.startswith(NET.veth_prefix)
    assert server.address != NET.gateway and server.address in [str(a) for a in NET.subnet]


def test_a_taken_address_is_never_given_again():
    first = netns.server_net(NET, "ch-alice--default")
    again = netns.server_net(NET, "ch-alice--default", [first.address])
    assert again.address != first.address and again.veth != first.veth


def test_only_reachable_resolvers_are_allowed():
    conf = "# comment\nnameserver 127.0.0.53\nnameserver 10.255.255.53\nnameserver fe80::1%eth0\nsearch x\n"
    assert netns.nameservers(conf) == ["10.255.255.53", "fe80::1"]


def test_rules_refuse_the_host_other_servers_link_local_and_private_ranges():
    rules = netns.nft_ruleset(NET, 8081, allow=["10.9.0.0/16"], deny=["8.8.8.8"], dns=["10.255.255.53"])
    lines = [line.strip() for line in rules.splitlines()]
    veths = f'iifname "{NET.veth_prefix}*"'
    refuse = netns.REFUSE
    # From a server to the host: the hub's API on the gateway, and nothing else.
    input_rules = lines[lines.index("chain input {") : lines.index("chain forward {")]
    assert f"{veths} ip daddr {NET.gateway} tcp dport 8081 accept" in input_rules
    assert input_rules[-2] == f"{veths} {refuse}"
    forward = lines[lines.index("chain forward {") : lines.index("chain postrouting {")]
    order = [
        f'oifname "{NET.veth_prefix}*" {refuse}',  # into another server's namespace
        f"{veths} ip daddr 169.254.0.0/16 {refuse}",  # link-local, the metadata address: always
        f"{veths} ip daddr {{ 10.255.255.53/32 }} udp dport 53 accept",
        f"{veths} ip daddr {{ 8.8.8.8/32 }} {refuse}",  # deny before allow
        f"{veths} ip daddr {{ 10.9.0.0/16 }} accept",
        f"{veths} ip daddr {{ 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10 }} {refuse}",
        f"{veths} accept",
    ]
    assert [forward.index(rule) for rule in order] == sorted(forward.index(rule) for rule in order)
    assert rules.startswith(f"table inet {NET.table}\ndelete table inet {NET.table}\n")  # replaces


def test_network_settings_are_validated():
    settings = Settings.model_validate({"network": {"allow": ["10.1.2.3/8"], "subnet": "10.50.0.0/16"}})
    assert settings.network.allow == ["10.0.0.0/8"]
    assert settings.network.isolate is True  # on unless turned off
    for bad in ({"allow": ["nope"]}, {"subnet": "10.0.0.0/30"}, {"subnet": "fd00::/64"}):
        try:
            Settings.model_validate({"network": bad})
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_a_machine_that_cannot_isolate_is_told_what_to_install_or_to_turn_it_off():
    root = "Name:\tpython\nCapEff:\t000001ffffffffff\n"
    no_net_admin = "CapEff:\t00000000a80425fb\n"  # Docker's default set: no bit 12
    assert netns.has_capability(root, netns.CAP_NET_ADMIN)
    assert not netns.has_capability(no_net_admin, netns.CAP_NET_ADMIN)
    assert not netns.has_capability("", netns.CAP_NET_ADMIN)
    assert netns.preflight_problems("/usr/sbin/ip", "/usr/sbin/nft", root) == []
    (missing,) = netns.preflight_problems(None, None, root)
    assert "apt-get install iproute2 nftables" in missing and "isolate: false" in missing
    (missing,) = netns.preflight_problems("/usr/sbin/ip", None, root)
    assert "apt-get install nftables" in missing and "iproute2" not in missing
    (capability,) = netns.preflight_problems("/usr/sbin/ip", "/usr/sbin/nft", no_net_admin)
    assert "CAP_NET_ADMIN" in capability and "isolate: false" in capability


def _addresses(*entries: tuple[str, str, int, str]) -> list[dict]:
    """`ip -j -4 addr show` for (interface, address, prefix, label) rows."""
    return [
        {"ifname": ifname, "addr_info": [{"family": "inet", "local": a, "prefixlen": n, "label": label}]}
        for ifname, a, n, label in entries
    ]


def test_a_subnet_that_another_hub_or_a_network_uses_is_found():
    other = netns.hub_net(Path("/srv/other-hub"), "10.217.0.0/16")
    mine = ("lo", NET.gateway, 32, NET.label)
    # Its own gateway and its own servers' routes (a restart, a crash) are no conflict.
    own_route = {"dst": "10.217.0.9", "dev": f"{NET.veth_prefix}9"}
    assert netns.subnet_conflicts(NET, _addresses(mine, ("eth0", "192.0.2.2", 24, "eth0")), [own_route]) == []
    # Another hub on the same subnet: its gateway (its label) and its servers' routes.
    theirs = _addresses(("lo", other.gateway, 32, other.label))
    assert netns.subnet_conflicts(NET, theirs, []) == [f"address {other.gateway}/32 on lo"]
    their_route = {"dst": "10.217.0.9", "dev": f"{other.veth_prefix}9"}
    assert netns.subnet_conflicts(NET, [], [their_route]) == [f"route 10.217.0.9 via {other.veth_prefix}9"]
    # The machine's own network inside or around the subnet.
    assert netns.subnet_conflicts(NET, _addresses(("eth1", "10.217.3.4", 24, "eth1")), []) != []
    assert netns.subnet_conflicts(NET, _addresses(("eth1", "10.0.0.5", 8, "eth1")), []) != []
    # A default route or a wider route elsewhere is not the subnet's.
    elsewhere = [{"dst": "default", "dev": "eth0"}, {"dst": "10.0.0.0/8", "dev": "eth0"}]
    assert netns.subnet_conflicts(NET, [], elsewhere) == []
