"""Browser-facing hardening of hub pages: a content security policy, cookie flags, HTTPS awareness."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from ..settings import Settings
from .origins import subdomain_host

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime

HUB_PREFIX = "/hub/"  # coursehub serves JupyterHub at / (base_url is never changed)


def user_hosts_source(subdomain_host: str) -> str:
    """The CSP source matching every user's host under `subdomain_host` ('' without subdomains)."""
    if not subdomain_host:
        return ""
    scheme, _, host = subdomain_host.partition("://")
    return f"{scheme}://*.{host}"


def content_security_policy(hub_prefix: str = HUB_PREFIX, user_hosts: str = "") -> str:
    """JupyterHub's own policy (no framing, reports to the hub) plus what hub pages never need.

    Scripts and styles are left alone: JupyterHub's templates use inline ones, and a policy
    that breaks the login page is worse than none. Plugins, <base> and form targets elsewhere
    are refused.
    """
    return "; ".join(
        [
            "frame-ancestors 'none'",
            "object-src 'none'",
            "base-uri 'self'",
            # The login form's redirects end on the user's own host when the hub has subdomains, and
            # browsers hold form-action to every redirect of a submission.
            f"form-action 'self' {user_hosts}".strip(),
            f"report-uri {hub_prefix}security/csp-report",
        ]
    )


def security_headers(user_hosts: str = "") -> dict[str, str]:
    """Headers on every hub response (not on users' servers, which Jupyter Server answers)."""
    return {
        "Content-Security-Policy": content_security_policy(user_hosts=user_hosts),
        "X-Content-Type-Options": "nosniff",
        # Launch and token links must not leak to other sites through Referer.
        "Referrer-Policy": "same-origin",
    }


def cookie_options(settings: Settings) -> dict[str, object]:
    """SameSite=Lax always (explicit, not the browser's default); Secure when users reach us over HTTPS."""
    options: dict[str, object] = {"samesite": "Lax"}
    if is_https(settings):
        options["secure"] = True
    return options


def is_https(settings: Settings) -> bool:
    """True when hub.public_url says users reach the hub over HTTPS (e.g. behind a TLS proxy)."""
    return bool(settings.hub.public_url) and str(settings.hub.public_url).lower().startswith("https://")


def apply_security(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Headers and cookie flags of the hub, and of the login cookies users' servers set."""
    c.JupyterHub.tornado_settings = {
        "headers": security_headers(user_hosts_source(subdomain_host(settings))),
        "cookie_options": cookie_options(settings),
    }
    # Spawners get these from tornado_settings (JupyterHub passes them to each spawner it makes, as
    # JUPYTERHUB_COOKIE_OPTIONS); Spawner.cookie_options is no config option.
    if settings.hub.public_url:
        # JupyterHub then trusts this scheme instead of guessing it from each request (Secure cookies).
        c.JupyterHub.public_url = settings.hub.public_url.rstrip("/") + "/"
    apply_origins(settings, c)


def apply_origins(settings: Settings, c: Config) -> None:
    """Each user's server on its own host (JupyterHub's subdomain_host), when hub.subdomains is on."""
    host = subdomain_host(settings)
    if not host:
        return
    c.JupyterHub.subdomain_host = host
    # JupyterHub's own default public_url is subdomain_host; said explicitly, so links and cookies agree.
    c.JupyterHub.public_url = host + "/"
    if is_https(settings):
        # __Host- cookies cannot be set by a user's subdomain for the hub's host (no cookie tossing);
        # browsers accept them only over HTTPS.
        c.JupyterHub.cookie_host_prefix_enabled = True
