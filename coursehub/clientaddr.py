"""Which address a request came from, as the hub's own proxy saw it."""

from __future__ import annotations

from typing import Any


def client_address(request: Any) -> str:
    """The peer address configurable-http-proxy appended to X-Forwarded-For (its last entry).

    Tornado's `remote_ip` prefers X-Real-Ip, which any client can send through the proxy, so
    per-address limits keyed on it (guest links, Binder launches, login lockout) could be dodged
    by changing a header. Behind another reverse proxy this is that proxy's address: per-address
    limits then apply to everyone together (docs/security.md).
    """
    forwarded = request.headers.get("X-Forwarded-For", "").split(",")[-1].strip()
    return forwarded or request.remote_ip or "?"
