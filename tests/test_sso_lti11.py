"""auth.lti11: OAuth 1 signed launches (signed here with oauthlib, as an LMS does) over real HTTP."""

from __future__ import annotations

import os
from urllib.parse import parse_qsl

import pytest
import requests
from idp.hubs import start_hub
from oauthlib.oauth1 import SIGNATURE_TYPE_BODY, Client

pytestmark = pytest.mark.hub

KEY, SECRET, ENV = "lms-key", "shared-secret-of-the-lms", "COURSEHUB_TEST_LTI11_SECRET"


@pytest.fixture(scope="module")
def hub():
    os.environ[ENV] = SECRET  # the secret reaches the hub as an environment variable
    auth = {
        "lti11": {
            "consumers": {KEY: f"env:{ENV}"},
            "contexts": {"bio-101": "bio101"},
            "instructors_are_admins": True,
        }
    }
    try:
        hub = start_hub(lambda root: auth, {"bio101": ["group:lti-bio101"]})
    finally:
        del os.environ[ENV]
    yield hub
    hub.teardown()


def signed_launch(hub, secret: str = SECRET, **params: str) -> dict[str, str]:
    """Launch parameters signed with OAuth 1 HMAC-SHA1 in the body, as an LTI 1.1 consumer sends."""
    body = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "resource_link_id": "link-1",
        "context_id": "bio-101",
        "roles": "Learner",
        **params,
    }
    client = Client(KEY, client_secret=secret, signature_type=SIGNATURE_TYPE_BODY)
    _, _, signed = client.sign(
        hub.url + "hub/lti/launch",
        http_method="POST",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    return dict(parse_qsl(signed))


def post(hub, fields: dict[str, str]) -> requests.Response:
    return requests.post(hub.url + "hub/lti/launch", data=fields, allow_redirects=False, timeout=60)


def test_launch_lands_in_mapped_course_and_notebook(hub):
    response = post(hub, signed_launch(hub, user_id="alice", custom_notebook="welcome.ipynb"))
    assert response.status_code == 302
    assert response.headers["Location"] == "/hub/launch/bio101?path=welcome.ipynb"
    user = hub.api().json("GET", "users/alice")
    assert "lti-bio101" in user["groups"] and not user["admin"]


def test_instructor_role_is_admin(hub):
    response = post(hub, signed_launch(hub, user_id="prof", roles="urn:lti:role:ims/lis/Instructor"))
    assert response.status_code == 302
    assert hub.api().json("GET", "users/prof")["admin"] is True


def test_institution_and_system_roles_are_not_instructors(hub):
    roles = "Learner,urn:lti:instrole:ims/lis/Instructor,urn:lti:sysrole:ims/lis/Administrator"
    assert post(hub, signed_launch(hub, user_id="ines", roles=roles)).status_code == 302
    user = hub.api().json("GET", "users/ines")
    assert user["admin"] is False and "instructors" not in user["groups"]


def test_a_label_or_custom_parameter_picks_no_course(hub):
    fields = signed_launch(
        hub, user_id="lou", context_id="x-9", context_label="bio-101", custom_course="bio101"
    )
    response = post(hub, fields)
    assert response.status_code == 302 and response.headers["Location"] == "/hub/home"
    assert "lti-bio101" not in hub.api().json("GET", "users/lou")["groups"]


def test_wrong_secret_and_tampered_parameters_are_refused(hub):
    assert post(hub, signed_launch(hub, secret="not-the-secret", user_id="mallory")).status_code in (401, 403)
    fields = signed_launch(hub, user_id="mallory2")
    fields["user_id"] = "admin"  # changed after signing
    assert post(hub, fields).status_code in (401, 403)
    users = {u["name"] for u in hub.api().json("GET", "users")}
    assert not {"mallory", "mallory2"} & users
    # 'admin' is not a hub admin under a provider (hub.admin_users defaults to nobody), nor created.
    assert hub.api().request("GET", "users/admin").status_code == 404


def test_replayed_launch_is_refused(hub):
    fields = signed_launch(hub, user_id="bob")
    assert post(hub, fields).status_code == 302
    assert post(hub, fields).status_code == 401
