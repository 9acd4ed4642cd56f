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
from requests.cookies import extract_cookies_to_jar

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


def share_localhost_cookies(jar: http.cookiejar.CookieJar) -> None:
    """Make cookies set for Domain=localhost return to localhost, as browsers do.

    http.cookiejar files the host `localhost` as `localhost.local` (RFC 2965), so the session-id
    cookie JupyterHub sets on its subdomain_host's domain (`.localhost`) never went back to the hub,
    and every cookie-authenticated POST failed the XSRF check (its token is bound to that session).
    A host-only copy filed under `localhost.local` is sent to localhost alone.
    """
    for cookie in list(jar):
        if cookie.domain == ".localhost":
            copy = copy_module.copy(cookie)
            copy.domain, copy.domain_specified, copy.domain_initial_dot = "localhost.local", False, False
            jar.set_cookie(copy)


def send_secure_cookies_to_localhost(jar: http.cookiejar.CookieJar) -> None:
    """Let Secure cookies of localhost hosts go back over http, as browsers do.

    Chromium and Firefox hold http://localhost and its subdomains to be secure contexts and send them
    Secure cookies (such as the LTI 1.3 state cookies, SameSite=None; Secure); http.cookiejar sends
    Secure cookies over https only.
    """
    for cookie in jar:
        domain = cookie.domain.lstrip(".").lower()
        if cookie.secure and (domain in ("localhost", "localhost.local") or domain.endswith(".localhost")):
            cookie.secure = False


def browser_session() -> requests.Session:
    """A requests session that keeps cookies as a browser does for a local hub with subdomains."""
    resolve_localhost_names()
    session = requests.Session()
    # Requests builds each request's Cookie header from a copy of the jar (a cookie policy would be
    # lost), so the jar itself is fixed after every response, redirects included. Hooks run before
    # requests files the response's cookies: file them first (filing twice changes nothing).

    def hook(response: requests.Response, **_: Any) -> None:
        extract_cookies_to_jar(session.cookies, response.request, response.raw)
        share_localhost_cookies(session.cookies)
        send_secure_cookies_to_localhost(session.cookies)

    session.hooks["response"].append(hook)
    return session
