"""/hub/coursehub/tls-ask: Caddy asks before it obtains a certificate on demand; only hub names pass.

Who can reach it: Caddy (on the hub's API port, with the key from the root-only Caddyfile), and also
anyone through the public proxy and every student's kernel on the hub's API port. Without the key they
get 403 and learn nothing (not even whether a user exists); a request the proxy forwarded is refused
even with the key, so the key never needs to travel that way.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from jupyterhub.handlers import BaseHandler

ASK_ROUTE = r"/coursehub/tls-ask"  # under /hub/ (host/caddyfile.py's ASK_PATH)


def asked_user(domain: str, hub_host: str) -> str | None:
    """'' for the hub's own host, the user name for <name>.<hub host>, None for anything else."""
    domain = domain.strip().lower().rstrip(".")
    if not hub_host or not domain:
        return None
    if domain == hub_host:
        return ""
    label, dot, rest = domain.partition(".")
    return label if dot and label and rest == hub_host else None


class TLSAskHandler(BaseHandler):
    """200 for the hub's host and <existing user>.<hub host>; 403 without Caddy's key; 404 otherwise."""

    def initialize(self, key_file: str = "", hub_host: str = "") -> None:
        self.key_file, self.hub_host = key_file, hub_host

    def check_xsrf_cookie(self) -> None:
        """GET only; nothing to protect from cross-site forms."""

    def expected_key(self) -> str:
        try:
            return Path(self.key_file).read_text().strip() if self.key_file else ""
        except OSError:
            return ""

    async def get(self) -> None:
        key = self.expected_key()
        given = self.get_query_argument("key", "")
        forwarded = "X-Forwarded-For" in self.request.headers
        if not key or forwarded or not hmac.compare_digest(given.encode(), key.encode()):
            self.set_status(403)
            return
        name = asked_user(self.get_query_argument("domain", ""), self.hub_host)
        if name == "":
            self.set_status(200)
            return
        user = self.find_user(name) if name else None
        # The user's host as JupyterHub routes it: names that are not DNS-safe labels get an encoded
        # host, which this lookup does not reverse (they need a wildcard certificate).
        if user is None or user.domain.lower() != self.get_query_argument("domain", "").lower().rstrip("."):
            self.set_status(404)
            return
        self.set_status(200)


def tls_ask_handlers(key_file: str, hub_host: str) -> list[tuple[str, type, dict]]:
    """The route under /hub/, only when the TLS front end is on."""
    if not key_file:
        return []
    return [(ASK_ROUTE, TLSAskHandler, {"key_file": key_file, "hub_host": hub_host})]
