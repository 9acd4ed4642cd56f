"""Pure parts of servers' network namespaces: names, addresses, resolvers and the nftables rules."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

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


# --- builds: course code's sockets get servers' egress and nothing of this host ---


BUILD = netns.BuildNet(slot=7, owner=4321, token="ab12cd34")


def test_a_builds_names_and_addresses_fit_and_stay_off_the_metadata_address():
    assert len(BUILD.veth) <= 15 and len(BUILD.peer) <= 15
    last = netns.BuildNet(netns.BUILD_SLOTS - 1, 4321, "ab12cd34")
    for build in (BUILD, last):
        addresses = {ipaddress.ip_address(build.gateway), ipaddress.ip_address(build.address)}
        assert all(a in netns.BUILD_LINKS for a in addresses) and len(addresses) == 2
        assert ipaddress.ip_address("169.254.169.254") not in addresses
    # One gateway for every build, kept on the host: no build's address is its gateway.
    assert BUILD.gateway == last.gateway == netns.BUILD_GATEWAY
    assert netns.BUILD_GATEWAY not in {
        netns.BuildNet(slot, 1, "t").address for slot in range(1, netns.BUILD_SLOTS)
    }
    assert BUILD.table.startswith(netns.BUILD_TABLE + "4321_") and "4321" in BUILD.namespace


def test_from_a_builds_namespace_only_its_proxy_port_on_the_host_and_nothing_forwarded():
    rules = netns.build_ruleset(BUILD, 990, 41234)
    lines = [line.strip() for line in rules.splitlines()]
    veth = f'iifname "{BUILD.veth}"'
    input_rules = lines[lines.index("chain input {") : lines.index("chain forward {")]
    assert input_rules[2:] == [
        f"{veth} ip daddr {BUILD.gateway} tcp dport 41234 accept",
        f"{veth} {netns.REFUSE}",
        "}",
    ]
    forward = lines[lines.index("chain forward {") : lines.index("chain output {")]
    assert f"{veth} {netns.REFUSE}" in forward and f'oifname "{BUILD.veth}" {netns.REFUSE}' in forward


def test_the_proxys_sockets_get_the_servers_egress_and_nothing_of_this_host():
    dns = ["127.0.0.53", "10.255.255.53"]
    rules = netns.build_ruleset(BUILD, 990, 41234, allow=["10.9.0.0/16"], deny=["8.8.8.8"], dns=dns)
    lines = [line.strip() for line in rules.splitlines()]
    output = lines[lines.index("chain output {") :]
    match = "meta skgid 990"
    assert all(line.startswith(match) for line in output[2:-2]), output  # only the proxies' sockets
    assert output[2] == f'{match} oifname "{netns.BUILD_VETHS}" accept'  # answering their builds
    # DNS (even to a loopback resolver: the proxy resolves names) first, then nothing to this host.
    dns_line = output.index(f"{match} ip daddr {{ 127.0.0.53/32, 10.255.255.53/32 }} udp dport 53 accept")
    loopback = output.index(f'{match} oifname "lo" {netns.REFUSE}')
    local = output.index(f"{match} fib daddr type local {netns.REFUSE}")
    assert dns_line < loopback < local
    # The rest is exactly what servers' traffic gets, in the same order, public addresses last.
    egress = [line.strip() for line in netns.egress_rules(match, ["10.9.0.0/16"], ["8.8.8.8"])]
    assert output[local + 1 : local + 1 + len(egress)] == egress
    assert f"{match} ip daddr 169.254.0.0/16 {netns.REFUSE}" in egress and egress[-1] == f"{match} accept"


def test_a_configured_index_on_a_private_address_is_the_one_exception():
    rules = netns.build_ruleset(BUILD, 990, 41234, services=[("10.1.2.3", 3141)])
    lines = [line.strip() for line in rules.splitlines()]
    allow = lines.index("meta skgid 990 ip daddr 10.1.2.3 tcp dport 3141 accept")
    assert allow < lines.index(f'meta skgid 990 oifname "lo" {netns.REFUSE}')
    assert "3141" not in rules.replace("ip daddr 10.1.2.3 tcp dport 3141 accept", "")


def test_the_servers_table_is_unchanged_by_the_shared_egress_rules():
    rules = netns.nft_ruleset(NET, 8081, dns=["10.255.255.53"])
    veths = f'iifname "{NET.veth_prefix}*"'
    assert "\n".join(netns.egress_rules(veths, dns=["10.255.255.53"])) in rules
    assert "tcp dport 3141" not in rules


def test_only_what_dead_builds_left_is_swept():
    tables = ["coursehub_build_100_aa", "coursehub_build_200_bb", "coursehub_1a2b", "other_build_100_cc"]
    namespaces = ["coursehub-build-100-aa", "coursehub-build-200-bb", "coursehub_1a2b-ch-x"]
    stale = netns.stale_builds(tables, namespaces, alive=lambda pid: pid == 200)
    assert stale == (["coursehub_build_100_aa"], ["coursehub-build-100-aa"])


def test_loopback_resolvers_are_kept_for_builds_only_when_asked():
    conf = "nameserver 127.0.0.53\nnameserver 10.255.255.53\n"
    assert netns.nameservers(conf) == ["10.255.255.53"]
    assert netns.nameservers(conf, loopback=True) == ["127.0.0.53", "10.255.255.53"]


def test_uvs_index_and_proxy_urls_are_found_in_the_environment():
    from coursehub.courses.buildnet import index_endpoints

    environ = {
        "UV_INDEX_URL": "http://10.1.2.3:3141/root/pypi/+simple/",
        "UV_INDEX": "mirror=https://mirror.example.org/simple other=https://[fd00::5]:8443/simple",
        "HTTPS_PROXY": "http://proxy.campus:3128",
        "UV_EXTRA_INDEX_URL": "not a url",
        "PATH": "http://ignored:1",
    }
    assert index_endpoints(environ) == [
        ("10.1.2.3", 3141),
        ("mirror.example.org", 443),
        ("fd00::5", 8443),
        ("proxy.campus", 3128),
    ]


def test_only_private_and_host_addresses_of_an_index_become_exceptions():
    from coursehub.courses.buildnet import index_services

    addresses = {
        "mirror.campus": ["10.1.2.3"],
        "pypi.org": ["151.101.0.223"],
        "local": ["127.0.0.1"],
        "meta": ["169.254.169.254"],
        "nowhere": [],
    }
    endpoints = [(host, 3141) for host in addresses]
    services, warnings = index_services(endpoints, addresses.__getitem__)
    assert services == [("10.1.2.3", 3141)]  # a public index needs no exception
    assert len(warnings) == 2 and "loopback" in warnings[0] and "link-local" in warnings[1]


@pytest.mark.parametrize(
    ("isolate", "problems", "untrusted", "outcome"),
    [
        (True, [], False, None),
        (True, [], True, None),
        (False, [], False, "warning"),
        (True, ["network.isolate needs nftables"], False, "warning"),
        (False, [], True, "refused"),
        (True, ["network.isolate needs nftables"], True, "refused"),
    ],
)
def test_what_happens_to_a_build_when_its_steps_cannot_be_filtered(isolate, problems, untrusted, outcome):
    from coursehub.courses.buildnet import BuildNetwork, decide
    from coursehub.errors import EnvironmentBuildError

    policy = BuildNetwork(isolate=isolate, untrusted=untrusted)
    if outcome == "refused":  # anyone may name an unregistered repository
        with pytest.raises(EnvironmentBuildError, match="register the repository as a course"):
            decide(policy, problems)
        return
    warning = decide(policy, problems)
    if outcome is None:
        assert warning is None
    else:  # an admin's course builds, saying what its steps can reach
        assert "share this machine's network" in warning
        assert (problems[0] if problems else "network.isolate is false") in warning


def test_a_build_steps_every_url_goes_through_the_builds_proxy():
    from coursehub.courses.buildbox import build_environ

    inherited = {
        "HTTPS_PROXY": "http://corp:3128",
        "NO_PROXY": "mirror.campus",
        "UV_INDEX_URL": "https://m/simple",
    }
    env = build_environ(Path("/w"), inherited, proxy="http://169.254.224.14:4000")
    assert {env[n] for n in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")} == {
        "http://169.254.224.14:4000"
    }
    assert "NO_PROXY" not in env and env["UV_INDEX_URL"] == "https://m/simple"
    assert build_environ(Path("/w"), inherited)["HTTPS_PROXY"] == "http://corp:3128"  # the fetch's
    # Downloads are retried past uv's 3 (a stalled index failed first starts), unless the admin says.
    assert env["UV_HTTP_RETRIES"] == "8"
    assert build_environ(Path("/w"), {"UV_HTTP_RETRIES": "2"})["UV_HTTP_RETRIES"] == "2"


@pytest.mark.parametrize(
    ("environ", "upstream"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://corp.example:3128"}, "corp.example:3128"),
        ({"http_proxy": "corp.example"}, "corp.example:80"),
        ({"HTTPS_PROXY": "http://[fd00::1]:8080"}, "[fd00::1]:8080"),
    ],
)
def test_the_admins_own_proxy_becomes_the_build_proxys_upstream(environ, upstream):
    from coursehub.courses.buildnet import upstream_proxy

    assert upstream_proxy(environ) == upstream


def test_the_build_proxy_sends_plain_http_requests_in_origin_form_one_per_connection():
    from coursehub.payloads.buildproxy import origin_request

    head = b"Host: m.campus:3141\r\nProxy-Connection: keep-alive\r\nAccept: */*"
    request, host, port = origin_request(b"GET http://m.campus:3141/root/+simple/x/?a=1 HTTP/1.1", head)
    assert (host, port) == ("m.campus", 3141)
    assert request == (
        b"GET /root/+simple/x/?a=1 HTTP/1.1\r\n"
        b"Host: m.campus:3141\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    with pytest.raises(ValueError):
        origin_request(b"GET https://m.campus/ HTTP/1.1", b"")


def test_routed_addresses_are_read_from_proc_net_route():
    from coursehub.spawner.netns import hub_net, routed_addresses

    net = hub_net(Path("/var/lib/coursehub"), "10.230.128.0/24")
    prefix = net.veth_prefix
    table = (
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
        "eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
        f"{prefix}21\t2180E60A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"  # 10.230.128.33/32: ours
        f"{prefix}22\t0080E60A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # a /24: not a server
        "c0000v21\t2280E60A\t00000000\t0005\t0\t0\t0\tFFFFFFFF\t0\t0\t0\n"  # another hub's veth
    )
    assert routed_addresses(table, net) == ["10.230.128.33"]
