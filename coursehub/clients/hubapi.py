"""A small JupyterHub REST API client, shared by the CLI, the tests and the load tools."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from coursehub.clients.loopback import resolve_localhost_names
from coursehub.errors import CoursehubError, HubNotRunning

TIMEOUT = 30
PAGE = 200  # users per request: JupyterHub's default api_page_max_limit
PAGINATED = "application/jupyterhub-pagination+json"  # asks for {items, _pagination}


@dataclass
class HubAPI:
    """Calls /hub/api with a token; every call has a timeout."""

    url: str  # the hub's public URL, e.g. http://127.0.0.1:8000/
    token: str

    def __post_init__(self) -> None:
        resolve_localhost_names()  # users' servers of a local hub with subdomains: <user>.localhost
        self.url = self.url.rstrip("/") + "/"
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"token {self.token}"

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One API call; raise HubNotRunning when nothing answers."""
        try:
            return self.session.request(
                method,
                f"{self.url}hub/api/{path}",
                timeout=kwargs.pop("timeout", TIMEOUT),
                **kwargs,
            )
        except requests.ConnectionError as exc:
            raise HubNotRunning(f"no hub answers at {self.url}: start it with `coursehub up`") from exc

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """An API call whose answer must be 2xx JSON."""
        response = self.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise CoursehubError(f"hub API {method} {path}: {response.status_code} {response.text}")
        return response.json() if response.content else None

    def users(self, state: str = "") -> list[dict]:
        """All users with their servers (`state`: e.g. 'active', only users with a server), page
        by page: JupyterHub answers at most api_page_max_limit (200) users per request."""
        found: list[dict] = []
        offset = 0
        while True:
            params = {"offset": offset, "limit": PAGE, **({"state": state} if state else {})}
            page = self.json("GET", "users", params=params, headers={"Accept": PAGINATED})
            found += page["items"]
            following = page["_pagination"].get("next")
            if not following or not page["items"]:
                return found
            offset = following["offset"]

    def stop_server(self, user: str, server: str = "") -> None:
        """Ask the hub to stop one server and wait until it has."""
        path = f"users/{user}/servers/{server}" if server else f"users/{user}/server"
        response = self.request("DELETE", path)
        if response.status_code not in (202, 204, 400, 404):
            raise CoursehubError(f"could not stop {user}'s server: {response.text}")

    def wait_until_up(self, deadline: float) -> None:
        """Block until the hub answers, or raise at `deadline` (a time.monotonic value)."""
        while True:
            try:
                if self.session.get(f"{self.url}hub/api/", timeout=5).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise HubNotRunning(f"the hub did not answer at {self.url} in time; see its log")
            time.sleep(0.2)
