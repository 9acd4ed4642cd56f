"""The proxy, as the hub sees it: configurable-http-proxy without its per-route activity for servers."""

from __future__ import annotations

from typing import Any

from jupyterhub.proxy import ConfigurableHTTPProxy


def without_server_activity(routes: dict[str, Any]) -> dict[str, Any]:
    """The routes with no `last_activity` on users' servers' routes (pure; the hub then skips them)."""
    for route in routes.values():
        if "user" in route.get("data", {}):
            route["data"].pop("last_activity", None)
    return routes


class ServerActivityProxy(ConfigurableHTTPProxy):
    """configurable-http-proxy whose record of requests to a server is not that server's activity.

    The proxy marks a route active on every successful request, and an open JupyterLab polls its
    server every 10 s, so the idle culler never stopped a server left open in a tab. The hub then
    knows only what each server reports (jupyterhub-singleuser's activity API, which is how
    JupyterHub learns activity behind proxies that record none); coursehub_activity decides in the
    server what counts. JupyterHub skips routes without `last_activity`, as it does for such proxies.
    """

    async def get_all_routes(self) -> dict[str, Any]:
        """Every route, without the proxy's activity on users' servers."""
        return without_server_activity(await super().get_all_routes())
