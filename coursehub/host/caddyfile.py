"""The TLS front end's config: settings -> a Caddyfile for Debian's caddy 2.6 (pure, tested as data)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from coursehub.settings import Settings
from coursehub.settings.tls import https_port

ASK_PATH = "/hub/coursehub/tls-ask"  # the hub's route (hub/tlsask.py) under its own API port
# A Set-Cookie value, and whether it already ends with Secure (Go regular expressions, no lookahead).
SECURE_FIND, SECURE_REPLACE = "^(.*?)(; *[Ss]ecure)?$", "$1; Secure"


@dataclass(frozen=True)
class FrontEnd:
    """What the Caddyfile needs besides the settings, found by the caller."""

    storage: Path  # Caddy's certificates and ACME account, root only
    api_host: str  # where the hub's own API listens (loopback, or the namespaces' gateway)
    ask_key: str  # the secret that lets only Caddy's `ask` requests get answers


def public_host(settings: Settings) -> str:
    """The hub's host name (lower case), from hub.public_url."""
    return (urlsplit(settings.hub.public_url or "").hostname or "").lower()


def ask_url(settings: Settings, front: FrontEnd) -> str:
    """The hub endpoint Caddy asks before it obtains a certificate on demand (Caddy adds &domain=)."""
    return f"http://{front.api_host}:{settings.hub.api_port}{ASK_PATH}?key={front.ask_key}"


def tls_block(settings: Settings, on_demand: bool) -> list[str]:
    """A site's `tls` directive: the admin's files, or ACME (on demand for users' hosts)."""
    tls = settings.tls
    if tls.mode == "files":
        return [f"\ttls {tls.cert_file} {tls.key_file}"]
    issuer = ["\t\tissuer acme {", f"\t\t\tdir {tls.directory()}"]
    if tls.acme_ca_root:
        issuer.append(f"\t\t\ttrusted_roots {tls.acme_ca_root}")
    if tls.email:
        issuer.append(f"\t\t\temail {tls.email}")
    issuer.append("\t\t}")
    return ["\ttls {", *(["\t\ton_demand"] if on_demand else []), *issuer, "\t}"]


def site(settings: Settings, address: str, on_demand: bool) -> list[str]:
    """One HTTPS site: TLS, HSTS, and everything forwarded to configurable-http-proxy on loopback."""
    hub, tls = settings.hub, settings.tls
    lines = [f"{address} {{", *tls_block(settings, on_demand)]
    if tls.hsts_max_age:
        # With subdomains every host under the hub's is ours and served over HTTPS too.
        extra = "; includeSubDomains" if hub.subdomains else ""
        lines.append(f'\theader Strict-Transport-Security "max-age={tls.hsts_max_age}{extra}"')
    # Caddy sets X-Forwarded-For to the client it saw (ignoring what an untrusted client sent) and
    # X-Forwarded-Proto: https; the proxy appends Caddy's own loopback address, which the hub trusts.
    lines += [
        f"\treverse_proxy 127.0.0.1:{hub.port} {{",
        # Every cookie Secure, whoever sets it: the hub marks its own, but users' servers (Jupyter
        # Server's _xsrf) do not know they are behind HTTPS.
        f'\t\theader_down Set-Cookie "{SECURE_FIND}" "{SECURE_REPLACE}"',
        "\t}",
        "}",
    ]
    return lines


def render(settings: Settings, front: FrontEnd) -> str:
    """The whole Caddyfile for `settings` (tls.mode acme or files)."""
    tls = settings.tls
    host, port = public_host(settings), https_port(settings.hub.public_url or "")
    names = [host, f"*.{host}"] if settings.hub.subdomains else [host]
    on_demand = settings.hub.subdomains and tls.mode == "acme"
    lines = [
        "# Written by `coursehub up` from coursehub.yaml (tls:); changes here are overwritten.",
        "{",
        # No admin API: on localhost:2019 any local process, students' kernels included, could reconfigure it.
        "\tadmin off",
        f"\tstorage file_system {front.storage}",
        f"\thttp_port {tls.http_port}",
        f"\thttps_port {port}",
        # The redirects are the explicit site below, for every name and the configured ports.
        "\tauto_https disable_redirects",
    ]
    if on_demand:
        lines += ["\ton_demand_tls {", f"\t\task {ask_url(settings, front)}", "\t}"]
    lines += ["}", ""]
    lines += site(settings, f"https://{host}:{port}", on_demand=False)
    if settings.hub.subdomains:
        lines += ["", *site(settings, f"https://*.{host}:{port}", on_demand=on_demand)]
    target = "https://{host}" + ("" if port == 443 else f":{port}") + "{uri}"
    http_sites = ", ".join(f"http://{name}:{tls.http_port}" for name in names)
    lines += ["", f"{http_sites} {{", f"\tredir {target} 308", "}", ""]
    return "\n".join(lines)


def certificate_warning(settings: Settings) -> str:
    """What `up` says when Let's Encrypt's on-demand certificates cannot cover the users ('' else)."""
    tls = settings.tls
    if tls.mode != "acme" or not settings.hub.subdomains or tls.acme_directory:
        return ""
    open_courses = [course.name for course in settings.courses if course.access == "open"]
    guests = f" and every guest of the open course(s) {', '.join(open_courses)}" if open_courses else ""
    return (
        "Warning: tls.mode acme with hub.subdomains gets a Let's Encrypt certificate for each user's host"
        f"{guests}; Let's Encrypt issues 50 per registered domain per week, so a larger class (or any hub "
        "with guests) needs a wildcard certificate: tls.mode files (docs/https.md)."
    )
