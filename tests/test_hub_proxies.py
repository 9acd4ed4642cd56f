"""Client addresses on a real hub: behind a trusted front proxy, and forged straight to the hub's port."""

from __future__ import annotations

import json

import pytest
import requests
import yaml
from conftest import REPO, Hub, hub_root, needs_root_sandbox
from requests.adapters import HTTPAdapter

# The "front proxy" of these tests: connections to configurable-http-proxy from 127.0.0.2, a loopback
# address nothing else uses, so that trusting it trusts nobody else (plain 127.0.0.1 stays untrusted).
FRONT = "127.0.0.2"
BAD_LOGINS = 50  # ip_max_failures' default


@pytest.fixture(scope="module")
def hub():
    """One hub with the front proxy trusted, an open course, and failed logins answered quickly."""
    needs_root_sandbox()
    hub = Hub(
        hub_root(),
        {
            "hub": {"trusted_proxies": [f"{FRONT}/32"]},
            "jupyterhub": {"WorkshopAuthenticator": {"max_failure_delay": 0.05}},
        },
    )
    hub.start()
    try:
        hub.cli("course", "add", str(REPO / "coursehub" / "demo"), "--name", "open1", "--access", "open")
        yield hub
    finally:
        hub.teardown()


class FromAddress(HTTPAdapter):
    """Connections that leave from one local address (the front proxy's)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.source, 0)
        return super().init_poolmanager(*args, **kwargs)


def session(source: str | None = None, forwarded: str | None = None) -> requests.Session:
    """A client; with `source`, behind the front proxy that says it is `forwarded`."""
    s = requests.Session()
    if source:
        s.mount("http://", FromAddress(source))
    if forwarded is not None:
        s.headers["X-Forwarded-For"] = forwarded
    return s


def login(s: requests.Session, base: str, username: str, password: str, **headers: str) -> int:
    """POST the login form (with its XSRF cookie) as `s`; the status code."""
    s.get(base + "hub/login", timeout=30)
    response = s.post(
        base + "hub/login",
        data={"username": username, "password": password, "_xsrf": s.cookies.get("_xsrf", path="/hub/")},
        headers=headers,
        allow_redirects=False,
        timeout=60,
    )
    return response.status_code


@pytest.mark.hub
def test_bad_logins_lock_one_client_behind_a_trusted_proxy_not_its_neighbour(hub):
    (good,) = hub.create_accounts("np", 1)
    attacker = session(FRONT, forwarded="198.51.100.1")
    codes = [login(attacker, hub.url, f"guess{i}", "wrong-password") for i in range(BAD_LOGINS)]
    assert set(codes) <= {403, 429} and 429 not in codes[: BAD_LOGINS - 1], codes
    # The attacker is now locked, even with a right password...
    assert login(attacker, hub.url, good, hub.passwords[good]) == 429
    # ...but a classmate behind the same front proxy is not.
    neighbour = session(FRONT, forwarded="198.51.100.2")
    assert login(neighbour, hub.url, good, hub.passwords[good]) == 302


def api_port(hub: Hub) -> int:
    """The hub's own port, where servers reach its API (and anything on the machine reaches it)."""
    return yaml.safe_load(hub.config.read_text())["hub"]["api_port"]


# Run in a student's kernel: requests straight to the hub's port, claiming any address they like.
FORGE = """
import http.client, json, os, urllib.parse

# The hub's API address as the server knows it (loopback, or the namespace's gateway by default).
HUB = urllib.parse.urlsplit(os.environ["JUPYTERHUB_API_URL"]).hostname

def send(method, path, xff, cookies=(), body=None):
    conn = http.client.HTTPConnection(HUB, PORT, timeout=60)
    headers = {"X-Forwarded-For": xff, "X-Real-Ip": xff.split(",")[0], "Cookie": "; ".join(cookies)}
    if body is not None:
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    set_cookies = [v.split(";")[0] for k, v in response.getheaders() if k.lower() == "set-cookie"]
    return response.status, set_cookies

def login(username, password, xff):
    _, cookies = send("GET", "/hub/login", xff)
    xsrf = next(c.split("=", 1)[1] for c in cookies if c.startswith("_xsrf="))
    form = urllib.parse.urlencode({"username": username, "password": password, "_xsrf": xsrf})
    return send("POST", "/hub/login", xff, cookies, form)[0]
"""


@pytest.fixture(scope="module")
def student(hub):
    """A student with a running server, whose kernel forges requests; (name, token)."""
    (name,) = hub.create_accounts("ks", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    return name, token


def in_kernel(hub: Hub, student: tuple[str, str], code: str) -> object:
    """Run FORGE and then `code` (whose last line prints JSON) in the student's kernel."""
    prelude = FORGE.replace("PORT", str(api_port(hub)))
    return json.loads(hub.run(*student, prelude + code).strip().splitlines()[-1])


@pytest.mark.hub
def test_forged_forwarded_for_straight_to_the_hub_escapes_no_limit(hub, student):
    (victim,) = hub.create_accounts("vi", 1)
    # Bad logins, each claiming another address: a fresh one, or a classmate's (bare, or as a chain
    # the front proxy would have written).
    codes = in_kernel(
        hub,
        student,
        f"""
codes = []
for i in range({BAD_LOGINS}):
    claim = "198.51.100.3" if i % 2 else f"203.0.113.{{i}}, {FRONT}"
    codes.append(login(f"spray{{i}}", "wrong-password", claim))
codes.append(login("{victim}", "{hub.passwords[victim]}", "192.0.2.200"))
print(json.dumps(codes))
""",
    )
    assert set(codes[:BAD_LOGINS]) <= {403, 429}, codes
    # Every forged address was one client: it is locked out whatever it claims next...
    assert codes[-1] == 429, codes
    # ...and the classmate it named (behind the trusted front proxy) was never counted.
    classmate = session(FRONT, forwarded="198.51.100.3")
    assert login(classmate, hub.url, victim, hub.passwords[victim]) == 302
    # Nor was anyone reaching the hub through the proxy from this machine.
    assert login(session(), hub.url, victim, hub.passwords[victim]) == 302


@pytest.mark.hub
def test_guest_links_straight_to_the_hub_are_limited_whatever_address_is_claimed(hub, student):
    codes = in_kernel(
        hub,
        student,
        """
codes = [send("GET", "/hub/tmplogin?course=open1", f"203.0.113.{i}")[0] for i in range(12)]
print(json.dumps(codes))
""",
    )
    assert codes[:10] == [302] * 10 and codes[10:] == [429, 429], codes  # per_client_per_minute: 10
    # A guest behind the trusted front proxy still gets in: the forged requests counted elsewhere.
    guest = session(FRONT, forwarded="203.0.113.5").get(
        hub.url + "hub/tmplogin?course=open1", allow_redirects=False, timeout=60
    )
    assert guest.status_code == 302
