"""auth.google (allow by Workspace domain) and auth.cilogon (allow by identity provider) through
oauthenticator's own classes, their endpoints pointed at the local authlib provider."""

from __future__ import annotations

import pytest
from idp.hubs import hub_user, secret_file, sso_login, start_hub
from idp.oidc import Client, Person, Provider, make_app
from idp.server import serving

pytestmark = pytest.mark.hub

UNI_IDP = "https://idp.uni.example/idp/shibboleth"
PEOPLE = [
    Person("g-ann", claims={"email": "ann@uni.example", "hd": "uni.example", "verified_email": True}),
    Person("g-bob", claims={"email": "bob@gmail.example", "verified_email": True}),
    Person("c-ann", claims={"idp": UNI_IDP, "eppn": "ann@uni.example", "email": "ann@uni.example"}),
    Person("c-eve", claims={"idp": "https://idp.elsewhere.example", "eppn": "eve@elsewhere.example"}),
]


@pytest.fixture(scope="module")
def idp():
    provider = Provider(PEOPLE, Client("coursehub", "another-s3cret", []))
    with serving(make_app(provider)) as url:
        provider.issuer = url
        yield provider, url


def endpoints(url: str) -> dict[str, str]:
    return {
        "authorize_url": f"{url}/authorize",
        "token_url": f"{url}/token",
        "userdata_url": f"{url}/userinfo",
    }


def provider_hub(idp, section: str, settings: dict, class_name: str):
    provider, url = idp

    def auth(root):
        secret = secret_file(root, section, provider.client.client_secret)
        return {section: {"client_id": "coursehub", "client_secret": secret, **settings}}

    hub = start_hub(auth, {}, jupyterhub={class_name: endpoints(url)})
    provider.client.redirect_uris.append(hub.url + "hub/oauth_callback")
    return hub


@pytest.fixture(scope="module")
def google_hub(idp):
    hub = provider_hub(idp, "google", {"hosted_domains": ["uni.example"]}, "GoogleOAuthenticator")
    yield hub
    hub.teardown()


@pytest.fixture(scope="module")
def cilogon_hub(idp):
    idps = {UNI_IDP: {"username_claim": "eppn", "strip_domain": "uni.example", "allow_all": True}}
    hub = provider_hub(idp, "cilogon", {"idps": idps}, "CILogonOAuthenticator")
    yield hub
    hub.teardown()


def test_google_allows_its_workspace_domain_only(google_hub, idp):
    assert sso_login(google_hub, idp[1], "g-ann")[1].status_code == 200
    assert hub_user(google_hub, "ann") is not None  # the domain is stripped from the username
    assert sso_login(google_hub, idp[1], "g-bob")[1].status_code == 403
    assert hub_user(google_hub, "bob@gmail.example") is None


def test_cilogon_allows_by_identity_provider(cilogon_hub, idp):
    assert sso_login(cilogon_hub, idp[1], "c-ann")[1].status_code == 200
    assert hub_user(cilogon_hub, "ann") is not None
    assert sso_login(cilogon_hub, idp[1], "c-eve")[1].status_code == 403
    assert not [u for u in cilogon_hub.api().json("GET", "users") if "eve" in u["name"]]
