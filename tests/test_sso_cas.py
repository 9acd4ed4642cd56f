"""auth.cas against a local CAS server, over real HTTP: tickets, attributes as groups, allow lists."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from idp import cas
from idp.hubs import start_hub
from idp.server import CERTS, serving, trusting

pytestmark = pytest.mark.hub

PEOPLE = {
    "alice": {"memberOf": ["bio"], "mail": ["alice@uni.example"]},
    "bob": {"memberOf": ["chem"]},
    "mallory": {"memberOf": ["history"]},
}


@pytest.fixture(scope="module")
def cas_url():
    # Over https: the hub refuses any other CAS server (tickets and attributes cross the network).
    with serving(cas.make_app(PEOPLE), tls=True) as url:
        yield f"{url}/cas"


def cert_of(cas_url: str) -> str:
    return str(CERTS[cas_url.removesuffix("/cas")])


@pytest.fixture(scope="module")
def hub(cas_url):
    auth = {"cas": {"server_url": cas_url, "groups_claim": "memberOf", "allowed_groups": ["bio", "chem"]}}
    with trusting(CERTS[cas_url.removesuffix("/cas")]):
        hub = start_hub(lambda root: auth, {"bio101": ["group:bio"]})
    yield hub
    hub.teardown()


def cas_session(cas_url: str, user: str) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # else $REQUESTS_CA_BUNDLE would override `verify`
    session.verify = cert_of(cas_url)
    assert session.get(f"{cas_url}/signin", params={"user": user}, timeout=10).status_code == 200
    return session


def ticket_url(hub, session: requests.Session, next_url: str = "/hub/home") -> str:
    """Walk hub -> CAS by hand; the service URL with a fresh ticket that CAS sends the browser to."""
    login = hub.url + "hub/cas/login" + (f"?next={next_url}" if next_url else "")
    to_cas = session.get(login, allow_redirects=False, timeout=30)
    assert to_cas.status_code == 302
    back = session.get(to_cas.headers["Location"], allow_redirects=False, timeout=30)
    assert back.status_code == 302 and "ticket=ST-" in back.headers["Location"]
    return back.headers["Location"]


def test_cas_login_with_group_attribute_opens_the_roster_course(hub, cas_url):
    session = cas_session(cas_url, "alice")
    response = session.get(hub.url + "hub/cas/login?next=/hub/home", timeout=60)
    assert response.status_code == 200 and response.url.endswith("/hub/home")
    user = hub.api().json("GET", "users/alice")
    assert user["groups"] == ["bio"]
    launch = session.get(hub.url + "hub/launch/bio101", allow_redirects=False, timeout=30)
    assert launch.status_code == 302 and launch.headers["Location"].startswith("/hub/spawn/alice/bio101")


def test_other_group_cannot_open_the_course(hub, cas_url):
    session = cas_session(cas_url, "bob")
    # Without ?next= the hub picks the next page; the spent ticket is not carried along.
    landed = session.get(ticket_url(hub, session, next_url=""), allow_redirects=False, timeout=60)
    assert landed.status_code == 302 and "ticket" not in landed.headers["Location"]
    assert session.get(hub.url + "hub/launch/bio101", allow_redirects=False, timeout=30).status_code == 403


def test_user_outside_allowed_groups_is_refused(hub, cas_url):
    response = cas_session(cas_url, "mallory").get(hub.url + "hub/cas/login", timeout=60)
    assert response.status_code == 403
    assert hub.api().request("GET", "users/mallory").status_code == 404


def test_tampered_and_replayed_tickets_are_rejected(hub, cas_url):
    session = cas_session(cas_url, "alice")
    url = ticket_url(hub, session)
    forged = url[:-6] + "XXXXXX"
    assert requests.get(forged, allow_redirects=False, timeout=30).status_code == 403
    # CAS tickets are single use: the forged attempt consumed nothing, the real ticket logs in once...
    fresh = requests.Session()
    assert fresh.get(url, allow_redirects=False, timeout=30).status_code == 302
    # ...and never again.
    assert requests.get(url, allow_redirects=False, timeout=30).status_code == 403


def test_a_ticket_for_another_service_is_refused_whatever_the_host_header(hub, cas_url):
    # A ticket CAS issued for another site (one the attacker runs, or any other CAS service)...
    session = cas_session(cas_url, "alice")
    evil = "http://evil.example/hub/cas/login"
    issued = session.get(f"{cas_url}/login", params={"service": evil}, allow_redirects=False, timeout=10)
    assert issued.status_code == 302
    ticket = issued.headers["Location"].split("ticket=")[1]
    # ...brought to the hub with Host and X-Scheme saying the hub is that site, must not log in.
    forged = requests.get(
        hub.url + f"hub/cas/login?ticket={ticket}",
        headers={"Host": "evil.example", "X-Scheme": "http"},
        allow_redirects=False,
        timeout=30,
    )
    assert forged.status_code == 403
    assert "jupyterhub-hub-login" not in forged.cookies


def test_the_service_sent_to_cas_is_the_public_url(hub, cas_url):
    to_cas = requests.get(
        hub.url + "hub/cas/login", headers={"Host": "evil.example"}, allow_redirects=False, timeout=30
    )
    assert to_cas.status_code == 302
    service = parse_qs(urlsplit(to_cas.headers["Location"]).query)["service"][0]
    assert service == hub.url + "hub/cas/login"
