"""One simulated student's HTTP conversation with any JupyterHub (stock or coursehub)."""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import quote, urlencode, urljoin

from coursehub.clients.hubapi import HubAPI
from coursehub.clients.kernel import KernelSession
from coursehub.clients.loopback import browser_session
from coursehub.tools.loadtest.failures import PhaseError, http_kind, spawn_failed_kind

STOP_WAIT = 120  # seconds a stopping server may take before we give up on it
RETRY_AFTER_MAX = 60  # never sleep longer than this on one 429, whatever the hub says


class StudentClient:
    """Logs in through the form like a browser, then uses its own API token like JupyterLab."""

    def __init__(self, hub_url: str, username: str, timeout: float, server: str = "") -> None:
        self.hub_url = hub_url.rstrip("/") + "/"
        self.name = username
        self.server = server  # a named server (on coursehub: the course), or '' for the default one
        self.timeout = timeout
        self.browser = browser_session()
        self.api: HubAPI | None = None
        self.token = ""

    @property
    def user_path(self) -> str:
        """This user's path in the Hub API."""
        return f"users/{quote(self.name)}"

    @property
    def server_path(self) -> str:
        """This user's server in the Hub API."""
        if self.server:
            return f"{self.user_path}/servers/{quote(self.server)}"
        return f"{self.user_path}/server"

    def login(self, password: str) -> None:
        """GET the form for its _xsrf cookie, POST the credentials, expect a redirect."""
        login_url = self.hub_url + "hub/login"
        self.browser.get(login_url, timeout=self.timeout)
        xsrf = self.browser.cookies.get("_xsrf", path="/hub/")
        response = self.browser.post(
            login_url,
            data={"username": self.name, "password": password, "_xsrf": xsrf},
            allow_redirects=False,
            timeout=self.timeout,
        )
        if response.status_code != 302:
            raise PhaseError(f"login-{http_kind(response.status_code)}")

    def guest_login(self, course: str) -> None:
        """Become a temporary user through coursehub's /hub/tmplogin link; learn our name."""
        response = self.browser.get(
            f"{self.hub_url}hub/tmplogin?{urlencode({'course': course})}",
            allow_redirects=False,
            timeout=self.timeout,
        )
        if response.status_code != 302:
            raise PhaseError(f"tmplogin-{http_kind(response.status_code)}")
        xsrf = self.browser.cookies.get("_xsrf", path="/hub/") or ""
        me = self.browser.get(
            f"{self.hub_url}hub/api/user", headers={"X-XSRFToken": xsrf}, timeout=self.timeout
        )
        if me.status_code != 200:
            raise PhaseError(f"whoami-{http_kind(me.status_code)}")
        self.name = me.json()["name"]

    def create_token(self) -> None:
        """An API token of this user, asked for by its own logged-in session."""
        xsrf = self.browser.cookies.get("_xsrf", path="/hub/") or ""
        response = self.browser.post(
            f"{self.hub_url}hub/api/{self.user_path}/tokens",
            json={"note": "coursehub loadtest", "expires_in": 24 * 3600},
            headers={"X-XSRFToken": xsrf},
            timeout=self.timeout,
        )
        if response.status_code != 201:
            raise PhaseError(f"token-{http_kind(response.status_code)}")
        self.token = response.json()["token"]
        self.api = HubAPI(self.hub_url, self.token)

    def _api(self) -> HubAPI:
        if self.api is None:
            raise PhaseError("not-logged-in")
        return self.api

    def request_server(self, deadline: float) -> int:
        """POST the spawn; on 429 wait as told and ask again. Returns how many 429s it got."""
        retries = 0
        while True:
            response = self._api().request("POST", self.server_path, timeout=self.timeout)
            if response.status_code in (201, 202):
                return retries
            if response.status_code != 429:
                raise PhaseError(http_kind(response.status_code))
            retries += 1
            pause = min(float(response.headers.get("Retry-After", 5)), RETRY_AFTER_MAX)
            if time.monotonic() + pause > deadline:
                raise PhaseError("http-429")
            time.sleep(pause)

    def wait_ready(self, deadline: float, stop: threading.Event) -> str:
        """Follow the progress event stream until the server is ready; its URL."""
        response = self._api().request(
            "GET", f"{self.server_path}/progress", stream=True, timeout=self.timeout
        )
        with response:
            if response.status_code != 200:
                raise PhaseError(f"progress-{http_kind(response.status_code)}")
            for line in response.iter_lines(decode_unicode=True):
                if stop.is_set() or time.monotonic() > deadline:
                    raise PhaseError("time-limit")
                if not line or not line.startswith("data:"):
                    continue  # keep-alive
                event = json.loads(line[5:])
                if event.get("ready"):
                    # A path, or with subdomains the server's own absolute URL.
                    return urljoin(self.hub_url, event["url"])
                if event.get("failed"):
                    raise PhaseError(spawn_failed_kind(event.get("message", ""), self.name))
        raise PhaseError("progress-ended")

    def open_page(self, server_url: str) -> None:
        """GET the server's URL with the browser's cookies, following redirects as a browser does:
        the server sends a new visitor to the hub's OAuth authorize endpoint, the hub (logged in by
        the form) sends it back with a code, the server trades the code for a token, sets its own
        cookie and serves its default page; expect JupyterLab's (or Notebook's) HTML.

        Static assets are left out: a class's browsers fetch them, but most come from the browser's
        cache after the first visit, and they cost the server file reads, not Python work."""
        response = self.browser.get(server_url, timeout=self.timeout)
        if response.status_code != 200:
            raise PhaseError(f"page-{http_kind(response.status_code)}")
        if "jupyter-config-data" not in response.text:
            raise PhaseError("page-not-jupyter")

    def open_kernel(self, server_url: str) -> KernelSession:
        """A new kernel on the server, with its websocket open."""
        return KernelSession(server_url, self.token)

    def stop_server(self) -> None:
        """Stop the server and wait (bounded) until the hub has forgotten it."""
        api = self._api()
        response = api.request("DELETE", self.server_path, timeout=self.timeout)
        if response.status_code not in (202, 204, 400, 404):
            raise PhaseError(http_kind(response.status_code))
        deadline = time.monotonic() + STOP_WAIT
        while time.monotonic() < deadline:
            response = api.request("GET", self.user_path, timeout=self.timeout)
            if response.status_code == 200 and self.server not in response.json().get("servers", {}):
                return
            time.sleep(0.5)
        raise PhaseError("stop-timeout")
