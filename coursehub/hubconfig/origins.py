"""Where users reach the hub and their servers: one origin for the hub, and one per user with subdomains."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from coursehub.errors import CoursehubError
from coursehub.settings import Settings

# Browsers resolve every name under .localhost to loopback (RFC 6761), so a hub on this machine
# gets subdomains without DNS.
LOCAL_NAME = "localhost"

# What to do instead, in every refusal below.
CHOICES = (
    "set hub.public_url to the hub's host name with wildcard DNS (*.<name> pointing at this machine, "
    "see docs/security.md), or set hub.subdomains: false to serve every server on the hub's origin "
    "(a student's page can then act on the hub as whoever opens it)"
)


def is_loopback(ip: str) -> bool:
    """True when hub.ip serves this machine alone (127.0.0.1, ::1, localhost); false for 0.0.0.0 and '::'."""
    if ip == LOCAL_NAME:
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def hub_origin(settings: Settings) -> str:
    """scheme://host[:port] users open the hub at (hub.public_url, else the address it listens on)."""
    hub = settings.hub
    if hub.public_url:
        parts = urlsplit(hub.public_url)
        return f"{parts.scheme}://{parts.netloc}"
    if hub.subdomains:
        return f"http://{LOCAL_NAME}:{hub.port}"
    host = "127.0.0.1" if hub.ip in ("", "0.0.0.0") else hub.ip
    return f"http://{host}:{hub.port}"


def subdomain_host(settings: Settings) -> str:
    """JupyterHub.subdomain_host: '' unless hub.subdomains; CoursehubError when users' hosts cannot exist."""
    hub = settings.hub
    if not hub.subdomains:
        return ""
    if not hub.public_url and not is_loopback(hub.ip):
        # Without a name, users' hosts would be <user>.localhost: their own machines, not this one.
        raise CoursehubError(
            f"hub.ip is {hub.ip or 'every address'}, so users reach this hub over the network, and "
            "hub.subdomains (on by default) gives each user's server a host name of its own, "
            f"<user>.<hub host>, which an IP address cannot have: {CHOICES}"
        )
    origin = hub_origin(settings)
    host = urlsplit(origin).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return origin
    raise CoursehubError(
        f"hub.public_url names the IP address {host}, and hub.subdomains (on by default) gives each "
        f"user's server a host name of its own, <user>.<hub host>, which an IP address cannot have: {CHOICES}"
    )


def shared_origin_warning(settings: Settings) -> str:
    """What `coursehub up` says when every server shares the hub's origin ('' with subdomains)."""
    if settings.hub.subdomains:
        return ""
    return (
        "Warning: hub.subdomains is off, so every user's server shares the hub's origin. A page a "
        "student serves from their own server can then act on the hub as anyone who opens it "
        "(create their API tokens, open their servers). Remove hub.subdomains: false (see "
        "docs/security.md, 'One origin per user')."
    )


def listens_beyond_loopback(ip: str) -> bool:
    """True when an address to listen on is reachable from elsewhere ('' and 0.0.0.0 mean every address)."""
    return not is_loopback(ip)


def plain_http_warning(settings: Settings) -> str:
    """What `up` says, loudly, when it serves plain HTTP beyond this machine ('' otherwise)."""
    hub = settings.hub
    if settings.tls.mode != "off" or not listens_beyond_loopback(hub.ip):
        return ""
    where = hub.ip or "every address"
    return (
        f"WARNING: coursehub serves plain HTTP on {where}:{hub.port}, reachable from other machines. "
        "Passwords, session cookies and API tokens then cross the network readable by anyone on the path, "
        "who can log in as your students and admins. Serve it over HTTPS: a tls: section makes `up` start "
        "the built-in TLS front end (docs/https.md). Only if your own TLS proxy is in front, let nothing but "
        f"that proxy reach port {hub.port} (docs/production.md)."
    )
