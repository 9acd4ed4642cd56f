"""auth.oidc against a local OpenID Connect provider (authlib), over real HTTP, through oauthenticator."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlparse, urlunparse

import pytest
import requests
from idp.hubs import hub_user, secret_file, sso_login, start_hub
from idp.oidc import Client, Person, Provider, make_app
from idp.server import serving

pytestmark = pytest.mark.hub

PEOPLE = [
    Person("alice", groups=["bio"], teams=[("physics", "tas")]),
    Person("bob", groups=["chem"]),
    Person("carol", groups=["history"]),
    Person("dave"),
    Person("erin", groups=["staff"], teams=[("physics", "staff")]),
    Person("frank", teams=[("chemistry", "all")]),
]


@pytest.fixture(scope="module")
def idp():
    provider = Provider(PEOPLE, Client("coursehub", "s3cret-of-the-hub", []))
    with serving(make_app(provider)) as url:
        provider.issuer = url
        yield provider, url


@pytest.fixture(scope="module")
def hub(idp):
    provider, url = idp

    def auth(root):
        return {
            "oidc": {
                "client_id": "coursehub",
                "client_secret": secret_file(root, "oidc", provider.client.client_secret),
                "authorize_url": f"{url}/authorize",
                "token_url": f"{url}/token",
                "userdata_url": f"{url}/userinfo",
                "groups_claim": "groups",
                "allowed_groups": ["bio", "chem"],
                "admin_groups": ["staff"],
                "allowed_users": ["dave"],
            }
        }

    hub = start_hub(auth, {"bio101": ["group:bio"]})
    provider.client.redirect_uris.append(hub.url + "hub/oauth_callback")
    yield hub
    hub.teardown()


def test_group_member_logs_in_and_opens_the_group_roster_course(hub, idp):
    session, response = sso_login(hub, idp[1], "alice")
    assert response.status_code == 200 and response.url.endswith("/hub/home")
    assert "bio" in hub_user(hub, "alice")["groups"]
    launch = session.get(hub.url + "hub/launch/bio101", allow_redirects=False, timeout=30)
    assert launch.status_code == 302
    assert launch.headers["Location"].startswith("/hub/spawn/alice/bio101")


def test_member_of_another_allowed_group_cannot_open_the_course(hub, idp):
    session, response = sso_login(hub, idp[1], "bob")
    assert response.status_code == 200
    assert hub_user(hub, "bob")["groups"] == ["chem"]
    assert session.get(hub.url + "hub/launch/bio101", allow_redirects=False, timeout=30).status_code == 403


def test_user_outside_the_allow_lists_is_refused(hub, idp):
    _, response = sso_login(hub, idp[1], "carol")
    assert response.status_code == 403
    assert hub_user(hub, "carol") is None


def test_allowed_by_name_and_admin_by_group(hub, idp):
    assert sso_login(hub, idp[1], "dave")[1].status_code == 200
    assert hub_user(hub, "dave")["admin"] is False
    assert sso_login(hub, idp[1], "erin")[1].status_code == 200
    assert hub_user(hub, "erin")["admin"] is True


def test_tampered_state_is_rejected(hub, idp):
    session = requests.Session()
    session.get(f"{idp[1]}/login", params={"user": "alice"}, timeout=10)
    to_idp = session.get(hub.url + "hub/oauth_login", allow_redirects=False, timeout=30)
    back = session.get(to_idp.headers["Location"], allow_redirects=False, timeout=30)
    callback = urlparse(back.headers["Location"])
    query = {k: v[0] for k, v in parse_qs(callback.query).items()}
    assert query["code"] and query["state"]
    forged = {**query, "state": query["state"][:-4] + "AAAA"}
    response = session.get(urlunparse(callback._replace(query=urlencode(forged))), timeout=30)
    assert response.status_code == 400
    assert session.get(hub.url + "hub/home", allow_redirects=False, timeout=30).status_code == 302


@pytest.fixture(scope="module")
def github_hub(idp):
    """The same provider in GitHub's URL layout, through GitHubOAuthenticator (github_url)."""
    provider, url = idp

    def auth(root):
        return {
            "github": {
                "client_id": "coursehub",
                "client_secret": secret_file(root, "github", provider.client.client_secret),
                "url": url,
                "allowed_organizations": ["physics"],
                "teams_as_groups": True,
                "admin_teams": ["physics:staff"],
            }
        }

    hub = start_hub(auth, {"phys101": ["group:physics:tas"]})
    provider.client.redirect_uris.append(hub.url + "hub/oauth_callback")
    yield hub
    hub.teardown()


def test_github_organisation_allows_and_teams_become_rosters(github_hub, idp):
    session, response = sso_login(github_hub, idp[1], "alice")
    assert response.status_code == 200
    assert hub_user(github_hub, "alice")["groups"] == ["physics:tas"]
    launch = session.get(github_hub.url + "hub/launch/phys101", allow_redirects=False, timeout=30)
    assert launch.status_code == 302
    session, response = sso_login(github_hub, idp[1], "erin")
    assert response.status_code == 200
    assert hub_user(github_hub, "erin")["admin"] is True
    refused = session.get(github_hub.url + "hub/launch/phys101", allow_redirects=False, timeout=30)
    assert refused.status_code == 403


def test_github_user_outside_the_organisations_is_refused(github_hub, idp):
    assert sso_login(github_hub, idp[1], "frank")[1].status_code == 403
    assert hub_user(github_hub, "frank") is None
