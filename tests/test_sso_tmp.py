"""auth.tmp: every visitor a temporary user (tmpauthenticator); coursehub's tmplogin links still work."""

from __future__ import annotations

import pytest
import requests
from idp.hubs import start_hub

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def hub():
    hub = start_hub(lambda root: {"tmp": {}}, {"open101": "open", "acc101": "accounts"})
    yield hub
    hub.teardown()


def temporary_users(hub) -> set[str]:
    return {u["name"] for u in hub.api().json("GET", "users") if "coursehub-temporary" in u["groups"]}


def test_visitor_becomes_a_temporary_user(hub):
    session = requests.Session()
    login = session.get(hub.url + "hub/login?next=/hub/home", allow_redirects=False, timeout=30)
    assert login.status_code == 302 and "/hub/tmp-login" in login.headers["Location"]
    before = temporary_users(hub)
    assert session.get(hub.url + login.headers["Location"].lstrip("/"), timeout=60).status_code == 200
    (name,) = temporary_users(hub) - before
    assert name.startswith("tmp-") and len(name) == 16
    opened = session.get(hub.url + "hub/launch/open101", allow_redirects=False, timeout=30)
    assert opened.status_code == 302 and opened.headers["Location"].startswith(f"/hub/spawn/{name}/open101")
    assert session.get(hub.url + "hub/launch/acc101", allow_redirects=False, timeout=30).status_code == 403


def test_course_guest_links_still_work(hub):
    response = requests.get(hub.url + "hub/tmplogin?course=open101", allow_redirects=False, timeout=30)
    assert response.status_code == 302 and response.headers["Location"].startswith("/hub/launch/open101")
