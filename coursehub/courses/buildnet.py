"""What a build's steps may reach on the network: servers' egress through the build's proxy, never this host.

The steps that run course code (`uv venv`, uv's resolution and installs, which run sdists' and the
course's own setup.py or build backend, and postBuild) run in a network namespace of the build's own
whose one way out is an HTTP proxy on the builds' gateway address, reached through its veth pair
(spawner/netns.py, payloads/buildproxy.py). The proxy runs with the group buildbox.BUILD_NET_GROUP,
whose sockets the build's table gives the egress students' servers get: public addresses and DNS to the
host's resolvers; never this host (its loopback and every address of its own: the hub and proxy APIs,
the database), link-local (cloud metadata), private ranges or servers' namespaces. "Only the package
index" cannot be had without a proxy that understands the index: PyPI's files come from a CDN whose
addresses change, and an sdist's build backend may come from any index the course names. So a build
reaches every public address, and in addition exactly the (address, port) of an index or proxy the admin
configured for uv (UV_INDEX_URL, UV_DEFAULT_INDEX, UV_INDEX, UV_EXTRA_INDEX_URL, UV_FIND_LINKS,
HTTP(S)_PROXY) when it is on a private or host address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import EnvironmentBuildError
from ..settings import NetworkSettings
from ..spawner import netns

# The variables that name where uv finds packages (buildbox.INDEX_VARIABLES passes them to builds).
INDEX_URL_VARIABLES = (
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "http_proxy",
    "https_proxy",
)
DEFAULT_PORTS = {"http": 80, "https": 443}
UNISOLATED = (
    "build steps share this machine's network: a course's setup.py, build backend or postBuild can "
    "reach every service on it (the hub's and the proxy's APIs, the database, cloud metadata)"
)


@dataclass(frozen=True)
class BuildNetwork:
    """How a build's steps reach the network (pure data, from the `network:` settings)."""

    isolate: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    untrusted: bool = False  # a repository no admin registered (Binder's allow_any_repo)


# Every build step of an admin's course, when the `network:` settings are not at hand (`up`'s stack build).
ISOLATED = BuildNetwork()


def from_settings(network: NetworkSettings, untrusted: bool = False) -> BuildNetwork:
    """The build network of a hub's settings: the same allow and deny lists as its servers (pure)."""
    return BuildNetwork(network.isolate, tuple(network.allow), tuple(network.deny), untrusted)


def decide(policy: BuildNetwork, problems: Iterable[str]) -> str | None:
    """None when builds get a namespace; else the warning for a build on the host's network (pure).

    A repository no admin registered is refused instead: anyone may name it.
    """
    problems = list(problems)
    if policy.isolate and not problems:
        return None
    why = "network.isolate is false" if not policy.isolate else "; ".join(problems)
    if policy.untrusted:
        raise EnvironmentBuildError(
            "this hub builds repositories that are not its courses only in a network namespace of "
            f"their own, and cannot make one ({why}); an admin can set `network: {{isolate: true}}` "
            "on a machine that allows it, or register the repository as a course"
        )
    return f"{UNISOLATED} ({why})"


def problems() -> list[str]:
    """Why this process cannot give a build a namespace (empty when it can)."""
    if os.geteuid() != 0:
        return ["builds run without root, which network namespaces need"]
    return netns.preflight()


def index_endpoints(environ: Mapping[str, str]) -> list[tuple[str, int]]:
    """(host, port) of every index, find-links or proxy URL uv is configured with (pure)."""
    found: list[tuple[str, int]] = []
    for name in INDEX_URL_VARIABLES:
        for word in environ.get(name, "").split():
            url = word.split("=", 1)[1] if "=" in word.split("://", 1)[0] else word  # UV_INDEX: name=url
            try:
                parts = urlsplit(url)
                port = parts.port or DEFAULT_PORTS.get(parts.scheme)
            except ValueError:
                continue
            if parts.hostname and port and (parts.hostname, port) not in found:
                found.append((parts.hostname, port))
    return found


def index_services(
    endpoints: Iterable[tuple[str, int]], resolve: Callable[[str], list[str]]
) -> tuple[list[tuple[str, int]], list[str]]:
    """The (address, port) a build may reach beyond servers' policy, and warnings (pure but `resolve`).

    Public addresses need no exception. Loopback cannot be had: inside the namespace it is the
    namespace's own. Link-local (cloud metadata) is never allowed.
    """
    services: list[tuple[str, int]] = []
    warnings: list[str] = []
    for host, port in endpoints:
        for text in resolve(host):
            address = ipaddress.ip_address(text.split("%")[0])
            if address.is_loopback:
                warnings.append(
                    f"the package index or proxy {host}:{port} is on this machine's loopback, which "
                    "build steps cannot reach: serve it on another address of this machine"
                )
            elif address.is_link_local:
                warnings.append(f"the package index or proxy {host}:{port} is link-local: never reachable")
            elif not address.is_global and (str(address), port) not in services:
                services.append((str(address), port))
    return services, warnings


def upstream_proxy(environ: Mapping[str, str]) -> str | None:
    """host:port of the admin's own proxy, which the build's proxy then relays to (pure)."""
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
        url = environ.get(name, "").strip()
        if not url:
            continue
        try:
            parts = urlsplit(url if "://" in url else f"http://{url}")
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 80)
        except ValueError:
            continue
        if parts.hostname:
            host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
            return f"{host}:{port}"
    return None


def resolve(host: str) -> list[str]:
    """The addresses of `host` (none when it does not resolve: uv then fails, naming it)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return []
    return sorted({str(info[4][0]) for info in infos})


def resolvers() -> list[str]:
    """The host's resolvers, loopback ones too: a build step resolves the index's name (port 53 only)."""
    try:
        return netns.nameservers(Path("/etc/resolv.conf").read_text(), loopback=True)
    except OSError:
        return []
