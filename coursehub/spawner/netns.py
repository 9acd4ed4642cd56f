"""A network namespace per server: a veth pair from iproute2, and one nftables table per hub.

Layout (all addresses in `network.subnet`): the hub's gateway address G (the subnet's first) sits
on the host's loopback interface; the hub's API listens there. Each server gets a namespace with one address
S/32 on its end of a veth pair, a route to G and a default route via G; the host routes S/32 to
the pair's host end. The proxy and the hub reach S from the host directly. The nftables table:
- input from any server veth: only the hub's API on G (no proxy API, no other host service,
  nothing on the host's loopback, whichever host address is tried);
- forward into any server veth: only replies (no server reaches another server's namespace);
- forward from a server veth: never link-local (169.254.0.0/16 with the cloud metadata address,
  fe80::/10), DNS to the host's resolvers, then `deny` CIDRs refused, `allow` CIDRs accepted,
  private ranges refused, the rest accepted
  (and masqueraded, where the host forwards).
"""

from __future__ import annotations

import ctypes
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError

IP = "ip"
NFT = "nft"
TIMEOUT = 30
NETNS_DIR = Path("/run/netns")
# Refused at once (the program gets "no route to host"), not left to time out.
REFUSE = "reject with icmpx type admin-prohibited"
LINK_LOCAL = ("169.254.0.0/16", "fe80::/10")
PRIVATE = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
)


@dataclass(frozen=True)
class HubNet:
    """One hub's network names and addresses (pure)."""

    tag: str  # 4 hex digits, unique per state folder: names of its interfaces and table
    subnet: ipaddress.IPv4Network

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def veth_prefix(self) -> str:
        return f"c{self.tag}v"

    @property
    def table(self) -> str:
        return f"coursehub_{self.tag}"

    @property
    def label(self) -> str:
        """The label of the gateway address: marks it as this hub's among the host's addresses."""
        return f"lo:ch{self.tag}"


def hub_net(state_dir: Path, subnet: str) -> HubNet:
    """The names and addresses of the hub whose state folder is `state_dir` (pure)."""
    tag = hashlib.sha256(str(state_dir).encode()).hexdigest()[:4]
    return HubNet(tag, ipaddress.IPv4Network(subnet))


@dataclass(frozen=True)
class ServerNet:
    """One server's namespace, interfaces and address (pure)."""

    namespace: str
    veth: str
    address: str


def server_net(net: HubNet, leaf: str, taken: Iterable[str] = ()) -> ServerNet:
    """A namespace and a free address for the server whose cgroup is called `leaf` (pure)."""
    digest = int(hashlib.sha256(leaf.encode()).hexdigest(), 16)
    hosts = net.subnet.num_addresses - 3  # network, gateway, broadcast
    used = set(taken)
    for attempt in range(hosts):
        offset = 2 + (digest + attempt) % hosts
        address = str(net.subnet.network_address + offset)
        if address not in used:
            return ServerNet(f"{net.table}-{leaf}", f"{net.veth_prefix}{offset:x}", address)
    raise SandboxError(f"no free address left in {net.subnet} for another server")


def nft_ruleset(
    net: HubNet,
    api_port: int,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    dns: Iterable[str] = (),
) -> str:
    """The hub's nftables table, replacing any earlier one (pure)."""
    veths = f'iifname "{net.veth_prefix}*"'
    lines = [
        f"table inet {net.table}",
        f"delete table inet {net.table}",
        f"table inet {net.table} {{",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        f"    {veths} ct state established,related accept",
        f"    {veths} ip daddr {net.gateway} tcp dport {api_port} accept",
        f"    {veths} {REFUSE}",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        f'    oifname "{net.veth_prefix}*" ct state established,related accept',
        f'    oifname "{net.veth_prefix}*" {REFUSE}',
        *egress_rules(veths, allow, deny, dns),
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority 100; policy accept;",
        f'    {veths} oifname != "{net.veth_prefix}*" masquerade',
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def egress_rules(
    match: str,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    dns: Iterable[str] = (),
    services: Iterable[tuple[str, int]] = (),
) -> list[str]:
    """Forward-chain lines for what `match` selects: the egress every server and build gets (pure).

    Never link-local (cloud metadata), DNS to the host's resolvers, `deny` refused, the `services`
    (address, TCP port) accepted, `allow` accepted, private ranges refused, the rest (public) accepted.
    """
    dns4, dns6 = _split(dns)
    allow4, allow6 = _split(allow)
    deny4, deny6 = _split(deny)
    private4, private6 = _split(PRIVATE)
    return [
        f"    {match} ip daddr {LINK_LOCAL[0]} {REFUSE}",
        f"    {match} ip6 daddr {LINK_LOCAL[1]} {REFUSE}",
        *_rules(match, dns4, dns6, "udp dport 53 accept"),
        *_rules(match, dns4, dns6, "tcp dport 53 accept"),
        *_rules(match, deny4, deny6, "drop"),
        *service_rules(match, services),
        *_rules(match, allow4, allow6, "accept"),
        *_rules(match, private4, private6, "drop"),
        f"    {match} accept",
    ]


def service_rules(match: str, services: Iterable[tuple[str, int]]) -> list[str]:
    """Lines accepting TCP to each (address, port) of `services` (pure)."""
    lines = []
    for address, port in services:
        family = "ip" if ipaddress.ip_address(address).version == 4 else "ip6"
        lines.append(f"    {match} {family} daddr {address} tcp dport {int(port)} accept")
    return lines


def _rules(match: str, v4: list[str], v6: list[str], verdict: str) -> list[str]:
    """nftables lines sending traffic to the networks `v4` and `v6` to `verdict` (pure)."""
    return [
        f"    {match} {family} daddr {{ {', '.join(nets)} }} {REFUSE if verdict == 'drop' else verdict}"
        for family, nets in (("ip", v4), ("ip6", v6))
        if nets
    ]


def _split(cidrs: Iterable[str]) -> tuple[list[str], list[str]]:
    """IPv4 and IPv6 networks of `cidrs`, normalised (pure)."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    return [str(n) for n in nets if n.version == 4], [str(n) for n in nets if n.version == 6]


# Where Debian puts iproute2 and nftables: a root shell's PATH may lack the sbin folders (sudo, cron).
SBIN = "/usr/sbin:/sbin"
CAP_NET_ADMIN = 12


def find_tool(name: str) -> str | None:
    """The path of `ip` or `nft`, on PATH or in the sbin folders."""
    return shutil.which(name) or shutil.which(name, path=SBIN)


def has_capability(status: str, capability: int) -> bool:
    """Whether a /proc/<pid>/status text has `capability` in its effective set (pure)."""
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> capability & 1)
    return False


def preflight_problems(ip: str | None, nft: str | None, status: str) -> list[str]:
    """Why this machine cannot give each server a network namespace, each with its remedy (pure)."""
    off = "or set `network: {isolate: false}` in coursehub.yaml (servers then share the host's network)"
    problems = []
    missing = [package for tool, package in ((ip, "iproute2"), (nft, "nftables")) if tool is None]
    if missing:
        problems.append(
            f"network.isolate needs {' and '.join(missing)}: apt-get install {' '.join(missing)}, {off}"
        )
    if not has_capability(status, CAP_NET_ADMIN):
        problems.append(
            "network.isolate needs CAP_NET_ADMIN (this container or service has dropped it: "
            f"run with --cap-add NET_ADMIN or AmbientCapabilities=CAP_NET_ADMIN), {off}"
        )
    return problems


def preflight() -> list[str]:
    """What is missing on this machine for network namespaces, with what to do."""
    return preflight_problems(find_tool(IP), find_tool(NFT), Path("/proc/self/status").read_text())


def _run(*args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
    tool = find_tool(args[0]) if args[0] in (IP, NFT) else None
    if tool is not None:
        args = (tool, *args[1:])
    result = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=TIMEOUT)
    if check and result.returncode != 0:
        raise SandboxError(f"{' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result


def subnet_conflicts(net: HubNet, addresses: Sequence[dict], routes: Sequence[dict]) -> list[str]:
    """What already uses the hub's subnet on this host, from `ip -j` addresses and routes (pure).

    Another hub's gateway (another label) or servers (other veths), or a network of the machine:
    two hubs on one subnet would route each other's servers away.
    """
    found = []
    for link in addresses:
        for info in link.get("addr_info", ()):
            if info.get("family") != "inet":
                continue
            network = ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
            if network.overlaps(net.subnet) and info.get("label") != net.label:
                found.append(f"address {info['local']}/{info['prefixlen']} on {link.get('ifname', '?')}")
    for route in routes:
        destination = route.get("dst", "")
        if destination in ("", "default") or route.get("dev", "").startswith(net.veth_prefix):
            continue
        cidr = destination if "/" in destination else f"{destination}/32"
        network = ipaddress.IPv4Network(cidr, strict=False)
        if network.subnet_of(net.subnet):
            found.append(f"route {destination} via {route.get('dev', '?')}")
    return found


def check_subnet(net: HubNet) -> None:
    """Refuse a subnet that another hub or a network of this machine already uses."""
    addresses = json.loads(_run(IP, "-j", "-4", "addr", "show").stdout or "[]")
    routes = json.loads(_run(IP, "-j", "-4", "route", "show", "root", str(net.subnet)).stdout or "[]")
    found = subnet_conflicts(net, addresses, routes)
    if found:
        raise SandboxError(
            f"network.subnet {net.subnet} is already in use on this machine ({'; '.join(found)}): "
            "another coursehub hub or a network of the host has it. Give this hub its own "
            "network.subnet in coursehub.yaml (e.g. 10.220.0.0/16); if it is this hub's own, left by "
            "an older version, `coursehub down` removes it"
        )


def setup_hub(
    net: HubNet, api_port: int, allow: Iterable[str] = (), deny: Iterable[str] = (), dns: Iterable[str] = ()
) -> None:
    """The gateway address and the nftables table (idempotent; `up` runs it)."""
    check_subnet(net)
    # On the loopback interface: every kernel has one (not every kernel has the dummy driver),
    # and the host answers the servers' ARP for any of its own addresses. The label says whose it is.
    _run(IP, "addr", "replace", f"{net.gateway}/32", "dev", "lo", "label", net.label)
    _run(NFT, "-f", "-", stdin=nft_ruleset(net, api_port, allow, deny, dns))


def teardown_hub(net: HubNet) -> None:
    """Remove the hub's gateway address and table (`down`)."""
    _run(IP, "addr", "del", f"{net.gateway}/32", "dev", "lo", check=False)
    _run(NFT, "delete", "table", "inet", net.table, check=False)


def nameservers(resolv_conf: str, loopback: bool = False) -> list[str]:
    """The resolvers of a resolv.conf that a namespace can reach (`loopback`: those too) (pure)."""
    found = []
    for line in resolv_conf.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                address = ipaddress.ip_address(fields[1].split("%")[0])
            except ValueError:
                continue
            if loopback or not address.is_loopback:
                found.append(str(address))
    return found


def taken_addresses(net: HubNet) -> list[str]:
    """Server addresses routed now (from the host's routes to the hub's veths)."""
    # /proc/net/route rather than `ip route`: no process on every spawn (the main table is all we add).
    return routed_addresses(Path("/proc/net/route").read_text(), net)


def routed_addresses(proc_net_route: str, net: HubNet) -> list[str]:
    """The /32 destinations routed to the hub's veths, read from /proc/net/route's text (pure)."""
    found = []
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8 or not fields[0].startswith(net.veth_prefix) or fields[7] != "FFFFFFFF":
            continue
        address = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
        if address in net.subnet:
            found.append(str(address))
    return found


# Spawns run in threads: the free address and its route are claimed under one lock, or two
# servers starting together get the same address and one route replaces the other.
_ALLOCATION = threading.Lock()


def allocate(net: HubNet, leaf: str) -> ServerNet:
    """A free address and a namespace for the server whose cgroup is `leaf`, created."""
    with _ALLOCATION:
        server = server_net(net, leaf, taken_addresses(net))
        create(net, server)
    return server


def create(net: HubNet, server: ServerNet) -> None:
    """The server's namespace with its veth, address and routes (any leftover is replaced)."""
    if (NETNS_DIR / server.namespace).exists() or Path(f"/sys/class/net/{server.veth}").exists():
        remove(server)
    # Two `ip -batch` runs instead of eleven `ip` processes: on the spawn path of every server
    # (0.1 s of a 0.26 s spawn here, and CPU that a burst of students shares).
    try:
        _batch(
            f"netns add {server.namespace}",
            f"link add {server.veth} type veth peer name eth0 netns {server.namespace}",
            f"link set {server.veth} up",
            f"route replace {server.address}/32 dev {server.veth} src {net.gateway}",
        )
        # Forwarding for what comes in on this veth only (IPv4 decides by the input device):
        # the host's global ip_forward, and so its other interfaces, are left as they are.
        Path(f"/proc/sys/net/ipv4/conf/{server.veth}/forwarding").write_text("1")
        _batch(
            "link set lo up",
            f"addr add {server.address}/32 dev eth0",
            "link set eth0 up",
            f"route add {net.gateway}/32 dev eth0",
            f"route add default via {net.gateway} dev eth0",
            namespace=server.namespace,
        )
    except (SandboxError, OSError):
        remove(server)
        raise


def _batch(*commands: str, namespace: str = "") -> None:
    """Run `ip` commands in one process (inside `namespace`, if given); the first failure stops it."""
    where = ("-n", namespace) if namespace else ()
    _run(IP, *where, "-batch", "-", stdin="".join(f"{command}\n" for command in commands))


def remove(server: ServerNet) -> None:
    """Delete the server's namespace (its veth pair and route go with it); idempotent."""
    _run(IP, "link", "del", server.veth, check=False)
    _run(IP, "netns", "del", server.namespace, check=False)


def remove_all(net: HubNet) -> int:
    """Delete every namespace of this hub's servers (`down`); how many."""
    names = sorted(p.name for p in NETNS_DIR.glob(f"{net.table}-*")) if NETNS_DIR.is_dir() else []
    for name in names:
        _run(IP, "netns", "del", name, check=False)
    return len(names)


CLONE_NEWNET = 0x40000000


# Looked up once at import: a process forked from the threaded hub only calls it before exec.
_LIBC = ctypes.CDLL(None, use_errno=True)


def join(path: str) -> None:
    """Move the calling process into the network namespace at `path` (setns; safe before exec)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _LIBC.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        os.close(fd)


def namespace_path(server: ServerNet) -> str:
    """The file a process opens to join the server's namespace (setns)."""
    return str(NETNS_DIR / server.namespace)


# --- Builds (courses/buildbox.py): course code in a namespace whose one way out is a filtered proxy ---

# A build's steps run in a network namespace of their own, with one veth pair to the host and no
# route beyond it: the host need not forward (replies from the internet come in on its outward
# interface, and IPv4 forwards by the input device: that is the admin's decision, off on many hosts).
# Their one way out is an HTTP proxy (payloads/buildproxy.py) on the host end of the pair, running as
# the builder with the group BUILD_GROUP: the build's table gives that group's sockets servers' egress.
# The pair's addresses are link-local: they mean nothing beyond the pair, so they collide with no
# network of the machine and no hub's subnet, and exist before any hub does (`course build`, `up`).
BUILD_LINKS = ipaddress.IPv4Network("169.254.224.0/20")  # the metadata address, 169.254.169.254, is outside
BUILD_SLOTS = BUILD_LINKS.num_addresses // 2
# Every build's proxy listens on this one address, on the host's loopback interface, added once and kept
# (as a hub keeps its gateway): an address that came and went with every build made Chromium on this
# host abort its page loads (net::ERR_NETWORK_CHANGED), as it does whenever the host's addresses change.
# Each build's table lets its pair reach only its own proxy's port there.
BUILD_GATEWAY = str(BUILD_LINKS.network_address + 1)
BUILD_GATEWAY_LABEL = "lo:chbuild"
BUILD_NAMESPACE = "coursehub-build-"
BUILD_TABLE = "coursehub_build_"
BUILD_VETHS = "chb*"


@dataclass(frozen=True)
class BuildNet:
    """One build's namespace, veth pair, addresses and nftables table (pure)."""

    slot: int  # claimed by creating the host end of the pair, named for it: one live build per slot
    owner: int  # the pid that made it: what a dead owner left is swept
    token: str  # names its table and namespace: a sweep or a teardown never takes another build's

    @property
    def veth(self) -> str:
        return f"chb{self.slot}"

    @property
    def peer(self) -> str:
        return f"chb{self.slot}p"

    @property
    def table(self) -> str:
        return f"{BUILD_TABLE}{self.owner}_{self.token}"

    @property
    def namespace(self) -> str:
        return f"{BUILD_NAMESPACE}{self.owner}-{self.token}"

    @property
    def gateway(self) -> str:
        return BUILD_GATEWAY

    @property
    def address(self) -> str:
        return str(BUILD_LINKS.network_address + 2 * self.slot + 1)


def build_ruleset(
    build: BuildNet,
    gid: int,
    proxy_port: int,
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    dns: Iterable[str] = (),
    services: Iterable[tuple[str, int]] = (),
) -> str:
    """A build's nftables table (pure).

    From its namespace: only its proxy's port on the pair's host end (nothing forwarded, no other host
    port). From sockets of group `gid` (its proxy): servers' egress, nothing on this host (its loopback
    and every address of its own go out on `lo`), DNS to the host's resolvers (a loopback one too: the
    proxy resolves names), and the `services`: (address, TCP port) of a package index or proxy the
    admin configured on a private or host address, the only exception to servers' policy.
    """
    dns4, dns6 = _split(dns)
    veth = f'iifname "{build.veth}"'
    match = f"meta skgid {int(gid)}"
    lines = [
        f"table inet {build.table}",
        f"delete table inet {build.table}",
        f"table inet {build.table} {{",
        "  chain input {",
        "    type filter hook input priority 0; policy accept;",
        f"    {veth} ip daddr {build.gateway} tcp dport {int(proxy_port)} accept",
        f"    {veth} {REFUSE}",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority 0; policy accept;",
        f"    {veth} {REFUSE}",
        f'    oifname "{build.veth}" {REFUSE}',
        "  }",
        "  chain output {",
        "    type filter hook output priority 0; policy accept;",
        f'    {match} oifname "{BUILD_VETHS}" accept',  # proxies answering their builds
        *_rules(match, dns4, dns6, "udp dport 53 accept"),
        *_rules(match, dns4, dns6, "tcp dport 53 accept"),
        *service_rules(match, services),
        f'    {match} oifname "lo" {REFUSE}',
        f"    {match} fib daddr type local {REFUSE}",
        *egress_rules(match, allow, deny),  # its DNS lines are above
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def create_build() -> BuildNet:
    """A namespace for one build: a veth pair to the host, addresses, no route beyond the pair."""
    import secrets

    sweep_builds()
    token = secrets.token_hex(4)
    for _ in range(64):
        build = BuildNet(1 + secrets.randbelow(BUILD_SLOTS - 2), os.getpid(), token)
        # Creating the host end is the claim: the kernel refuses a second interface of that name.
        claim = (IP, "link", "add", build.veth, "type", "veth", "peer", "name", build.peer)
        if _run(*claim, check=False).returncode == 0:
            break
    else:
        raise SandboxError("no free network slot for another build (too many builds at once)")
    try:
        ensure_build_gateway()
        _batch(
            f"netns add {build.namespace}",
            f"link set {build.peer} netns {build.namespace}",
            f"link set {build.veth} up",
            f"route replace {build.address}/32 dev {build.veth} src {build.gateway}",
        )
        _batch(
            "link set lo up",
            f"addr add {build.address}/32 dev {build.peer}",
            f"link set {build.peer} up",
            f"route add {build.gateway}/32 dev {build.peer}",
            namespace=build.namespace,
        )
    except SandboxError:
        remove_build(build)
        raise
    return build


def ensure_build_gateway() -> None:
    """BUILD_GATEWAY on the host's loopback interface, added only when missing (no change otherwise)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((BUILD_GATEWAY, 0))  # binds only to an address of this host: no process needed
            return
        except OSError:
            pass
    _run(IP, "addr", "replace", f"{BUILD_GATEWAY}/32", "dev", "lo", "label", BUILD_GATEWAY_LABEL)


def filter_build(build: BuildNet, gid: int, proxy_port: int, **policy: Iterable) -> None:
    """Load the build's table (before any step runs)."""
    _run(NFT, "-f", "-", stdin=build_ruleset(build, gid, proxy_port, **policy))


def remove_build(build: BuildNet, own: bool = True) -> None:
    """Delete a build's pair, namespace and then its table (idempotent).

    `own`: the caller holds the build's slot. A sweep does not (a new build may have claimed the slot
    of a half-removed one): deleting the namespace takes the pair with it.
    """
    if own:
        _run(IP, "link", "del", build.veth, check=False)
    _run(IP, "netns", "del", build.namespace, check=False)
    _run(NFT, "delete", "table", "inet", build.table, check=False)


def stale_builds(
    tables: Iterable[str], namespaces: Iterable[str], alive: Callable[[int], bool]
) -> tuple[list[str], list[str]]:
    """The build tables and namespaces whose owner process is gone (pure)."""

    def dead(name: str, prefix: str, separator: str) -> bool:
        owner = name[len(prefix) :].split(separator)[0] if name.startswith(prefix) else ""
        return owner.isdigit() and not alive(int(owner))

    return (
        [t for t in tables if dead(t, BUILD_TABLE, "_")],
        [n for n in namespaces if dead(n, BUILD_NAMESPACE, "-")],
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_builds() -> None:
    """Remove what builds whose process died between setup and teardown left."""
    listed = _run(NFT, "list", "tables", "inet", check=False).stdout
    tables = [line.split()[-1] for line in listed.splitlines() if line.startswith("table inet ")]
    names = [p.name for p in NETNS_DIR.glob(f"{BUILD_NAMESPACE}*")] if NETNS_DIR.is_dir() else []
    stale_tables, stale_namespaces = stale_builds(tables, names, _alive)
    for name in stale_namespaces:  # its pair goes with it
        _run(IP, "netns", "del", name, check=False)
    for table in stale_tables:
        _run(NFT, "delete", "table", "inet", table, check=False)


def build_namespace_path(build: BuildNet) -> str:
    """The file a build step opens to join the build's namespace (setns)."""
    return str(NETNS_DIR / build.namespace)
