"""network.isolate on a real hub: each server in its own network namespace, in both spawn modes.

Listeners at link-local, private and public-like addresses live in a namespace this test creates
(a veth pair on this machine): no packet goes to the machine's real gateway or metadata address.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import Hub, hub_root, needs_root_sandbox, wait_for

pytestmark = pytest.mark.hub

SUBNET = "10.219.0.0/16"
PROBE_NS = "coursehub-test-probe"
PROBE_HOST = "10.99.77.1"  # the host's end: the source of what is masqueraded towards the probe
TARGETS = {
    "link-local": "169.254.77.1",
    "private": "192.168.77.1",
    "private, allowed": "192.168.78.1",
    "public": "198.51.100.7",
    "public, denied": "198.51.100.8",
}
PROBE_PORT = 8765


def ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        pytest.fail(f"ip {' '.join(args)}: {result.stderr.strip()}")


@pytest.fixture(scope="module")
def probe():
    """A namespace with a web server answering on every TARGETS address (ours, on this machine)."""
    # A run that died before its teardown leaves these behind (the veth lives while its peer's
    # namespace is held by a leftover process): remove both first.
    subprocess.run(["ip", "link", "del", "chtprobe"], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", PROBE_NS], capture_output=True, timeout=30)
    ip("netns", "add", PROBE_NS)
    ip("link", "add", "chtprobe", "type", "veth", "peer", "name", "eth0", "netns", PROBE_NS)
    ip("addr", "add", f"{PROBE_HOST}/32", "dev", "chtprobe")
    ip("link", "set", "chtprobe", "up")
    # Replies come back in on this veth: forwarding for it only, as coursehub does for its own.
    with open("/proc/sys/net/ipv4/conf/chtprobe/forwarding", "w") as f:
        f.write("1")
    inside = ["-n", PROBE_NS]
    ip(*inside, "link", "set", "lo", "up")
    ip(*inside, "link", "set", "eth0", "up")
    for address in TARGETS.values():
        ip(*inside, "addr", "add", f"{address}/32", "dev", "eth0")
        ip("route", "add", f"{address}/32", "dev", "chtprobe")
    ip(*inside, "route", "add", f"{PROBE_HOST}/32", "dev", "eth0")
    ip(*inside, "route", "add", "default", "via", PROBE_HOST)
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            PROBE_NS,
            sys.executable,
            "-m",
            "http.server",
            "-b",
            "0.0.0.0",
            str(PROBE_PORT),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        out = subprocess.run(
            ["ip", "netns", "exec", PROBE_NS, "ss", "-Hltn", f"sport = :{PROBE_PORT}"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return bool(out.strip())

    wait_for(listening, timeout=60, what="the probe's web server")
    yield TARGETS
    server.kill()
    server.wait()
    subprocess.run(["ip", "link", "del", "chtprobe"], capture_output=True, timeout=30)
    subprocess.run(["ip", "netns", "del", PROBE_NS], capture_output=True, timeout=30)
    for address in TARGETS.values():
        subprocess.run(["ip", "route", "del", f"{address}/32"], capture_output=True, timeout=30)


@pytest.fixture(scope="module", params=["fork", "exec"])
def net_hub(request, probe):
    """A hub with network.isolate, alice and bob with running servers."""
    needs_root_sandbox()
    network = {"isolate": True, "subnet": SUBNET, "allow": ["192.168.78.0/24"], "deny": ["198.51.100.8/32"]}
    hub = Hub(hub_root(), {"sandbox": {"spawn_mode": request.param}, "network": network})
    hub.start()
    try:
        alice, bob = hub.create_accounts("net", 2)
        tokens = {name: hub.token_for(name) for name in (alice, bob)}
        for name in (alice, bob):
            hub.spawn(name, tokens[name])
        yield hub, alice, bob, tokens
    finally:
        hub.teardown()


PROBE = """
import json, os, socket
out = {}
for what, (host, port) in PARAMS.items():
    s = socket.socket()
    s.settimeout(3)
    try:
        s.connect((host, port))
        out[what] = 'open'
    except OSError as e:
        out[what] = type(e).__name__
    finally:
        s.close()
print(json.dumps(out))
"""


def probe_from(hub, user, token, targets: dict) -> dict:
    prelude = f"import json\nPARAMS = json.loads({json.dumps(targets)!r})\n"
    return json.loads(hub.run(user, token, prelude + PROBE).strip().splitlines()[-1])


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True, timeout=30).stdout
    return [line.split()[3].split("/")[0] for line in out.splitlines()]


def test_servers_reach_the_hub_and_nothing_else_of_the_host(net_hub):
    hub, alice, bob, tokens = net_hub
    settings = yaml.safe_load(hub.config.read_text())["hub"]
    bob_url = hub.run(bob, tokens[bob], "import os; print(os.environ['JUPYTERHUB_SERVICE_URL'])").strip()
    bob_host, bob_port = bob_url.split("/")[2].split(":")
    api_url = hub.run(alice, tokens[alice], "import os; print(os.environ['JUPYTERHUB_API_URL'])").strip()
    gateway, api_port = api_url.split("/")[2].split(":")
    targets = {"hub api": [gateway, int(api_port)], "bob's server": [bob_host, int(bob_port)]}
    for address in {*host_addresses(), gateway}:
        for name in ("proxy_api_port", "port"):
            targets[f"{name} on {address}"] = [address, settings[name]]
    seen = probe_from(hub, alice, tokens[alice], targets)
    assert seen.pop("hub api") == "open", seen
    assert not [what for what, result in seen.items() if result == "open"], seen
    # bob's server is only in his namespace: the host (the proxy) reaches it, his browser too.
    assert bob_host != "127.0.0.1"
    assert "42" in hub.run(bob, tokens[bob], "print(6 * 7)")


def test_a_web_server_in_a_kernel_is_unreachable_from_another_server(net_hub):
    hub, alice, bob, tokens = net_hub
    code = """
import os, socket, subprocess, sys
# A bare listener (http.server would first look its name up, and these namespaces may have no DNS).
listen = "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 9999)); s.listen(); time.sleep(600)"
subprocess.Popen([sys.executable, '-c', listen], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
import time
for _ in range(100):  # until it listens: alice herself reaches it in her own namespace
    try:
        socket.create_connection(('127.0.0.1', 9999), timeout=1).close()
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit('the web server did not start')
print(os.environ['JUPYTERHUB_SERVICE_URL'].split('/')[2].split(':')[0])
"""
    alice_host = hub.run(alice, tokens[alice], code).strip()
    seen = probe_from(hub, bob, tokens[bob], {"alice's web server": [alice_host, 9999]})
    assert seen["alice's web server"] != "open", seen


def test_egress_rules(net_hub):
    hub, alice, bob, tokens = net_hub
    targets = {what: [address, PROBE_PORT] for what, address in TARGETS.items()}
    seen = probe_from(hub, alice, tokens[alice], targets)
    assert seen["link-local"] != "open", seen
    assert seen["private"] != "open", seen
    assert seen["public, denied"] != "open", seen
    # What is allowed reaches the probe's listener, so the refusals above are the rules' doing.
    assert seen["public"] == "open", seen
    assert seen["private, allowed"] == "open", seen


def test_two_hubs_never_share_a_subnet_and_servers_starting_together_get_their_own_address(tmp_path):
    """On the real host: a second hub on a used subnet is refused; concurrent spawns never collide."""
    needs_root_sandbox()
    from concurrent.futures import ThreadPoolExecutor

    from coursehub.errors import SandboxError
    from coursehub.spawner import netns

    subnet = "10.213.0.0/28"  # 13 server addresses
    first, second = netns.hub_net(tmp_path / "one", subnet), netns.hub_net(tmp_path / "two", subnet)
    servers: list = []
    try:
        netns.setup_hub(first, 8081)
        netns.setup_hub(first, 8081)  # its own gateway again: a restart
        with pytest.raises(SandboxError, match="already in use"):
            netns.setup_hub(second, 8082)
        # Six servers whose names all hash to the same first choice of address: each must get its own.
        first_choice = {f"t-same-{i}": netns.server_net(first, f"t-same-{i}").address for i in range(200)}
        wanted = max(set(first_choice.values()), key=list(first_choice.values()).count)
        leaves = [leaf for leaf, address in first_choice.items() if address == wanted][:6]
        assert len(leaves) == 6
        with ThreadPoolExecutor(6) as pool:
            servers = list(pool.map(lambda leaf: netns.allocate(first, leaf), leaves))
        assert len({s.address for s in servers}) == len(servers), servers
        assert sorted(netns.taken_addresses(first)) == sorted(s.address for s in servers)
    finally:
        for server in servers:
            netns.remove(server)
        netns.teardown_hub(first)
        netns.teardown_hub(second)


def test_up_without_cap_net_admin_refuses_saying_what_to_do(tmp_path):
    """The default network.isolate on a machine that cannot: a clear error, nothing started or created."""
    needs_root_sandbox()
    state = tmp_path / "state"
    config = tmp_path / "coursehub.yaml"
    config.write_text(yaml.safe_dump({"hub": {"state_dir": str(state), "port": 1}}))
    # As a container without --cap-add NET_ADMIN: root, but the capability out of the bounding set.
    result = subprocess.run(
        ["setpriv", "--bounding-set", "-net_admin", "--", sys.executable, "-m", "coursehub"]
        + ["--config", str(config), "up"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "CAP_NET_ADMIN" in result.stderr and "isolate: false" in result.stderr, result.stderr
    assert not state.exists()
