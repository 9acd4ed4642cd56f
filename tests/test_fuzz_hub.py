"""Generated hostile requests at a real hub's edges: never a 500, never a traceback in a page."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.hub

PIECES = st.sampled_from(
    ["..", "/", "%", "%2e%2e%2f", "%00", "%ff", "\\", "demo", "open1", "welcome.ipynb", "?", "&", "=", "#",
     "<script>", "'", '"', "\u202e", "ä", "C:", "~", " ", "\x7f", "//evil.example", "http://x", "x" * 300]
)  # fmt: skip
HOSTILE = st.one_of(st.text(max_size=80), st.lists(PIECES, max_size=8).map("".join))
ENDPOINTS = ["launch", "tmplogin", "login", "user-redirect"]


@pytest.fixture(scope="module")
def target(edge_hub):
    hub = edge_hub
    (name,) = hub.create_accounts("fz", 1)
    return hub, hub.login(name)


def send(hub, student: requests.Session, endpoint: str, a: str, b: str) -> requests.Response:
    """One hostile request; raw-ish: only what must be escaped for HTTP is escaped."""
    keep = "/%?&=:~"
    if endpoint == "launch":
        url = f"{hub.url}hub/launch/{quote(a, safe=keep)}?path={quote(b, safe=keep)}"
        return student.get(url, allow_redirects=False, timeout=60)
    if endpoint == "tmplogin":
        url = f"{hub.url}hub/tmplogin?course={quote(a, safe=keep)}&notebook={quote(b, safe=keep)}"
        return requests.get(url, allow_redirects=False, timeout=60)
    if endpoint == "login":
        anonymous = requests.Session()
        anonymous.get(hub.url + "hub/login", timeout=30)
        data = {"username": a, "password": b, "_xsrf": anonymous.cookies.get("_xsrf")}
        return anonymous.post(hub.url + "hub/login?next=" + quote(b, safe=keep), data=data,
                              allow_redirects=False, timeout=60)  # fmt: skip
    url = f"{hub.url}hub/user-redirect/{quote(a, safe=keep)}?{quote(b, safe=keep)}"
    return student.get(url, allow_redirects=False, timeout=60)


def proxy_cannot_decode(url: str) -> bool:
    """True for a path JavaScript's decodeURIComponent rejects (bad %-escapes, invalid UTF-8).

    configurable-http-proxy 5.3 decodes every request path to route it and answers such a path
    with 500 (URIError) and the hub's error page; the request never reaches the hub, which
    changes nothing. An upstream bug, recorded in docs/security.md; any other 500 fails.
    """
    path = urlsplit(url).path
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        return True
    try:
        unquote(path, errors="strict")
    except UnicodeDecodeError:
        return True
    return False


def check(hub, student: requests.Session, endpoint: str, a: str, b: str) -> int:
    """Send one hostile request and check its answer; returns the status."""
    response = send(hub, student, endpoint, a, b)
    assert "Traceback" not in response.text
    if response.status_code == 500 and proxy_cannot_decode(response.request.url):
        return 500  # configurable-http-proxy's own answer, before the hub: see proxy_cannot_decode
    assert response.status_code < 500, f"{endpoint} {a!r} {b!r}: {response.status_code}"
    if response.is_redirect:  # never an open redirect to another site
        assert urlsplit(response.headers["Location"]).netloc in ("", urlsplit(hub.url).netloc)
    return response.status_code


def test_hostile_requests_get_clear_answers_and_the_hub_still_serves(target):
    # One test: the count and the hub's health after the burst belong to this burst, not to an
    # earlier test that may not have run (-k, -x, a different order).
    hub, student = target
    log_start = len(hub.log())
    seen: list[int] = []

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(ENDPOINTS), HOSTILE, HOSTILE)
    def hostile_request(endpoint, a, b):
        seen.append(check(hub, student, endpoint, a, b))

    hostile_request()
    assert len(seen) >= 300, len(seen)
    assert requests.get(hub.url + "hub/api/", timeout=30).status_code == 200
    # JupyterHub logs every request's status: none of this burst's reached it as a 5xx.
    assert not re.search(r"\] 5\d\d (GET|POST) ", hub.log()[log_start:])
