"""browser_session against a real HTTP server: cookies go back as a browser sends them to localhost hosts."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from coursehub.clients.loopback import browser_session

# What each path answers: (status, headers). The server records the Cookie header of every request.
ROUTES: dict[str, tuple[int, list[tuple[str, str]]]] = {
    # JupyterHub's login form on a hub whose public URL is https, reached over http on this machine.
    "/hub/login": (200, [("Set-Cookie", "_xsrf=token; Path=/hub/; Secure; SameSite=Lax; Max-Age=3600")]),
    "/start": (302, [("Set-Cookie", "state=s1; Path=/; Secure; SameSite=None"), ("Location", "/landing")]),
    "/landing": (200, []),
    "/session": (200, [("Set-Cookie", "sid=abc; Domain=localhost; Path=/")]),
    "/logout": (200, [("Set-Cookie", "sid=; Domain=localhost; Path=/; Max-Age=0")]),
    "/look": (200, []),
}


class Recorder(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []

    def _answer(self) -> None:
        host = self.headers.get("Host", "").partition(":")[0]
        self.seen.append((self.command, f"{host}{self.path}", self.headers.get("Cookie", "")))
        status, headers = ROUTES.get(self.path, (404, []))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _answer

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[int, list[tuple[str, str, str]]]]:
    Recorder.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], Recorder.seen
    httpd.shutdown()
    httpd.server_close()


def cookies_sent(seen: list[tuple[str, str, str]], method: str, where: str) -> str:
    """The Cookie header of the last `method` request to host+path `where`."""
    return [cookie for m, w, cookie in seen if m == method and w == where][-1]


def test_a_secure_xsrf_cookie_returns_with_the_login_form_over_http(server):
    # A hub with an https public URL marks _xsrf Secure; the login POST must carry it back, or the
    # form's token matches only while the second it was signed in lasts (the test_tls flake).
    port, seen = server
    session = browser_session()
    session.get(f"http://localhost:{port}/hub/login", timeout=10)
    session.post(f"http://localhost:{port}/hub/login", data={"_xsrf": "token"}, timeout=10)
    assert cookies_sent(seen, "POST", "localhost/hub/login") == "_xsrf=token"


def test_a_secure_cookie_set_on_a_redirect_reaches_its_target(server):
    port, seen = server
    session = browser_session()
    response = session.get(f"http://alice.localhost:{port}/start", timeout=10)
    assert response.status_code == 200 and response.history
    assert cookies_sent(seen, "GET", "alice.localhost/landing") == "state=s1"
    session.get(f"http://alice.localhost:{port}/look", timeout=10)
    assert cookies_sent(seen, "GET", "alice.localhost/look") == "state=s1"


def test_a_cookie_for_domain_localhost_reaches_the_hub_and_goes_when_deleted(server):
    port, seen = server
    session = browser_session()
    # JupyterHub sets its session id from the hub's host for its subdomain_host's domain.
    session.get(f"http://localhost:{port}/session", timeout=10)
    session.get(f"http://localhost:{port}/look", timeout=10)
    session.get(f"http://bob.localhost:{port}/look", timeout=10)
    assert cookies_sent(seen, "GET", "localhost/look") == "sid=abc"
    assert cookies_sent(seen, "GET", "bob.localhost/look") == "sid=abc"
    session.get(f"http://localhost:{port}/logout", timeout=10)
    session.get(f"http://localhost:{port}/look", timeout=10)
    session.get(f"http://bob.localhost:{port}/look", timeout=10)
    assert cookies_sent(seen, "GET", "localhost/look") == ""
    assert cookies_sent(seen, "GET", "bob.localhost/look") == ""
