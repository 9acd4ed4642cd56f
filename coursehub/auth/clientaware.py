"""The client address an authenticator's per-address limits count, as configured for this hub."""

from __future__ import annotations

from typing import Any

from traitlets import Bool, HasTraits, List, Unicode

from coursehub import clientaddr


class ClientAddressMixin(HasTraits):
    """Mixed into coursehub's authenticators: which proxies to believe about the client's address."""

    trusted_proxies = List(
        Unicode(), help="CIDRs of proxies in front of configurable-http-proxy (hub.trusted_proxies)."
    ).tag(config=True)
    verify_proxy_peer = Bool(
        True,
        help="Believe X-Forwarded-For only from connections held by the hub's own user on this machine "
        "(its proxy); False on Kubernetes, where the proxy is another pod.",
    ).tag(config=True)

    def client_address(self, request: Any) -> str:
        """The client address the per-address limits and the lockout count (coursehub.clientaddr)."""
        return clientaddr.client_address(request, self.trusted_proxies, self.verify_proxy_peer)
