"""Names under .localhost resolve to loopback in this process, as browsers resolve them (RFC 6761 §6.3).

A hub with subdomains on this machine serves users at <user>.localhost:<port>. Chromium and Firefox
resolve those names themselves; glibc does not (without systemd's nss-myhostname), so requests,
websockets and aiohttp could not reach a user's server. Every one of them resolves through
socket.getaddrinfo at call time, so wrapping that one function covers them all; it changes nothing
for any other name.
"""

from __future__ import annotations

import copy as copy_module
import http.cookiejar
import socket
from typing import Any

import requests
from requests.cookies import RequestsCookieJar

_system_getaddrinfo = socket.getaddrinfo


def is_localhost_name(host: object) -> bool:
    """True for a name under .localhost (alice.localhost), which RFC 6761 reserves for loopback."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    return isinstance(host, str) and host.lower().rstrip(".").endswith(".localhost")


def _getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    return _system_getaddrinfo("localhost" if is_localhost_name(host) else host, *args, **kwargs)


def resolve_localhost_names() -> None:
    """Install the resolver (idempotent)."""
    if socket.getaddrinfo is not _getaddrinfo:
        socket.getaddrinfo = _getaddrinfo


def is_localhost_domain(domain: str) -> bool:
    """True for a cookie domain of a localhost host: localhost (filed as localhost.local) or *.localhost."""
    domain = domain.lstrip(".").lower()
    return domain in ("localhost", "localhost.local") or domain.endswith(".localhost")


def as_browsers_file(cookie: http.cookiejar.Cookie) -> list[http.cookiejar.Cookie]:
    """The cookie as a browser keeps it for localhost hosts: one cookie, or two for Domain=localhost.

    - Secure cookies of localhost hosts go back over http: Chromium and Firefox hold http://localhost
      and its subdomains to be secure contexts (the LTI 1.3 state cookies are SameSite=None; Secure, and
      a hub whose public URL is https marks its _xsrf cookie Secure); http.cookiejar sends Secure
      cookies over https only.
    - A cookie for Domain=localhost also returns to localhost itself: http.cookiejar files the host
      `localhost` as `localhost.local` (RFC 2965), so the session-id cookie JupyterHub sets on its
      subdomain_host's domain (`.localhost`) never went back to the hub, and every cookie-authenticated
      POST failed the XSRF check (its token is bound to that session). The second cookie is a
      host-only copy filed under `localhost.local`.
    """
    if cookie.secure and is_localhost_domain(cookie.domain):
        cookie = copy_module.copy(cookie)
        cookie.secure = False
    if cookie.domain != ".localhost":
        return [cookie]
    host_only = copy_module.copy(cookie)
    host_only.domain = "localhost.local"
    host_only.domain_specified = host_only.domain_initial_dot = False
    return [cookie, host_only]


class BrowserCookieJar(RequestsCookieJar):
    """A jar that files every cookie as `as_browsers_file` says, whoever files it.

    Requests files a response's cookies after the response hooks run, and builds each request's Cookie
    header (redirects included) from fresh jars it fills with copies of these cookies: fixing the jar
    from a hook was undone at once, so a Secure _xsrf cookie never went back over http and a login
    passed only when the form's token, signed with the current second, happened to match again.
    """

    def set_cookie(self, cookie: http.cookiejar.Cookie, *args: Any, **kwargs: Any) -> None:
        """File the cookie as a browser would (see as_browsers_file)."""
        for filed in as_browsers_file(cookie):
            super().set_cookie(filed, *args, **kwargs)

    def clear(self, domain: str | None = None, path: str | None = None, name: str | None = None) -> None:
        """Clear, and for Domain=localhost also the host-only copy (a deleted cookie must go entirely)."""
        super().clear(domain, path, name)
        if domain == ".localhost":
            try:
                super().clear("localhost.local", path, name)
            except KeyError:
                pass

    def copy(self) -> BrowserCookieJar:
        """A copy that still files cookies as a browser would."""
        new = BrowserCookieJar()
        new.set_policy(self.get_policy())
        new.update(self)
        return new


def browser_session() -> requests.Session:
    """A requests session that keeps cookies as a browser does for a local hub with subdomains."""
    resolve_localhost_names()
    session = requests.Session()
    session.cookies = BrowserCookieJar()
    return session
