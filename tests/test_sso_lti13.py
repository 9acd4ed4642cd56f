"""auth.lti13 against a local LTI 1.3 platform: signed launches land in the mapped course and notebook,
roles decide instructor rights, forged signatures and replayed launches are refused."""

from __future__ import annotations

import base64
import json

import pytest
import requests
from idp.hubs import start_hub
from idp.lti13 import Platform, make_app, read_form
from idp.server import serving

from coursehub.clients.loopback import browser_session

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def platform():
    platform = Platform(client_id="coursehub-tool")
    with serving(make_app(platform)) as url:
        platform.url = url
        yield platform


@pytest.fixture(scope="module")
def hub(platform):
    auth = {
        "lti13": {
            "issuer": platform.url,
            "client_ids": [platform.client_id],
            "authorize_url": f"{platform.url}/authorize",
            "jwks_url": f"{platform.url}/jwks",
            "contexts": {"BIO-101-2026": "bio101"},
            "param_courses": ["chem101"],
            "instructors_are_admins": True,
            "instructor_roles": ["Instructor"],  # TAs are staff of their course, not instructors (admins)
        }
    }
    hub = start_hub(lambda root: auth, {"bio101": ["group:lti-bio101"], "chem101": ["group:lti-chem101"]})
    platform.tool_login_url = hub.url + "hub/lti13/oauth_login"
    platform.redirect_uris.append(hub.url + "hub/lti13/oauth_callback")
    yield hub
    hub.teardown()


def to_tool_callback(platform, session: requests.Session, **launch) -> tuple[str, dict]:
    """LMS link -> tool login initiation -> platform authorization: the form the browser posts back."""
    page = session.get(f"{platform.url}/course/launch", params=launch, timeout=30)
    action, fields = read_form(page.text)
    to_platform = session.post(action, data=fields, allow_redirects=False, timeout=30)
    assert to_platform.status_code == 302, to_platform.text
    answer = session.get(to_platform.headers["Location"], timeout=30)
    assert answer.status_code == 200, answer.text
    return read_form(answer.text)


def launch(platform, hub, **params) -> tuple[requests.Session, requests.Response]:
    session = browser_session()
    action, fields = to_tool_callback(platform, session, **params)
    return session, session.post(action, data=fields, allow_redirects=False, timeout=60)


def test_student_lands_in_the_mapped_course_with_the_notebook(platform, hub):
    session, response = launch(
        platform, hub, user="alice", context_id="BIO-101-2026", custom_notebook="welcome.ipynb"
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/hub/launch/bio101?path=welcome.ipynb"
    opened = session.get(hub.url + "hub/launch/bio101?path=welcome.ipynb", allow_redirects=False, timeout=30)
    assert opened.status_code == 302
    assert opened.headers["Location"].startswith("/hub/spawn/alice/bio101?next=")
    assert "lab%2Ftree%2Fbio101%2Fwelcome.ipynb" in opened.headers["Location"]
    user = hub.api().json("GET", "users/alice")
    assert "lti-bio101" in user["groups"] and not user["admin"]


def test_student_of_another_lms_course_cannot_open_it(platform, hub):
    # The custom parameter and the label are set by whoever runs CHEM-7 in the LMS: they pick no course.
    session, response = launch(
        platform, hub, user="carl", context_id="CHEM-7", context_label="BIO-101-2026", custom_course="bio101"
    )
    assert response.headers["Location"] == "/hub/home"
    assert session.get(hub.url + "hub/launch/bio101", allow_redirects=False, timeout=30).status_code == 403
    assert "lti-bio101" not in hub.api().json("GET", "users/carl")["groups"]


def test_a_custom_parameter_picks_only_allowed_courses(platform, hub):
    _, response = launch(platform, hub, user="cleo", context_id="CHEM-7", custom_course="chem101")
    assert response.headers["Location"] == "/hub/launch/chem101"


def test_instructor_role_gives_instructor_rights(platform, hub):
    _, response = launch(platform, hub, user="prof", context_id="BIO-101-2026", roles="Instructor")
    assert response.status_code == 302
    user = hub.api().json("GET", "users/prof")
    assert user["admin"] is True
    assert {"instructors", "lti-bio101", "lti-bio101-instructors", "lti-bio101-staff"} <= set(user["groups"])


def test_a_ta_of_the_course_is_its_staff_and_not_admin(platform, hub):
    ta = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
    session, _ = launch(platform, hub, user="tara", context_id="BIO-101-2026", roles=ta)
    student = "sam"
    launch(platform, hub, user=student, context_id="BIO-101-2026", roles="Learner")
    user = hub.api().json("GET", "users/tara")
    assert user["admin"] is False and "lti-bio101-staff" in user["groups"]
    assert "instructors" not in user["groups"]
    # Her token: the course's students are listed (the staff role), and nothing of admin.
    session.get(hub.url + "hub/home", timeout=60)  # sets the _xsrf cookie
    xsrf = [c.value for c in session.cookies if c.name == "_xsrf" and c.path.startswith("/hub")][0]
    made_token = session.post(
        hub.url + "hub/api/users/tara/tokens", json={}, headers={"X-XSRFToken": xsrf}, timeout=60
    )
    assert made_token.status_code == 201, made_token.text
    token = made_token.json()["token"]
    auth = {"Authorization": f"token {token}"}
    listed = requests.get(hub.url + "hub/api/users", headers=auth, timeout=30)
    assert listed.status_code == 200 and student in {u["name"] for u in listed.json()}
    made = requests.post(hub.url + "hub/api/users/someone-new", headers=auth, timeout=30)
    assert made.status_code == 403  # no admin scope


def test_institution_roles_are_not_course_instructors_and_admin_ends(platform, hub):
    institution = "http://purl.imsglobal.org/vocab/lis/v2/institution/person#Instructor"
    launch(platform, hub, user="ivan", context_id="BIO-101-2026", roles=f"Learner,{institution}")
    user = hub.api().json("GET", "users/ivan")
    assert user["admin"] is False and "instructors" not in user["groups"]
    # An instructor launched later as a learner (another course, a changed role) is admin no more.
    launch(platform, hub, user="tina", context_id="BIO-101-2026", roles="Instructor")
    assert hub.api().json("GET", "users/tina")["admin"] is True
    launch(platform, hub, user="tina", context_id="BIO-101-2026", roles="Learner")
    assert hub.api().json("GET", "users/tina")["admin"] is False


def test_forged_id_token_is_refused(platform, hub):
    session = browser_session()
    action, fields = to_tool_callback(platform, session, user="mallory", context_id="BIO-101-2026")
    header, payload, signature = fields["id_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    response = session.post(action, data={**fields, "id_token": f"{header}.{forged}.{signature}"}, timeout=60)
    assert response.status_code == 400
    assert hub.api().request("GET", "users/mallory").status_code == 404


def test_replayed_launch_is_refused_even_with_its_cookies(platform, hub):
    session = browser_session()
    action, fields = to_tool_callback(platform, session, user="eve", context_id="BIO-101-2026")
    cookies = session.cookies.copy()
    assert session.post(action, data=fields, allow_redirects=False, timeout=60).status_code == 302
    replay = requests.Session()
    replay.cookies.update(cookies)
    response = replay.post(action, data=fields, allow_redirects=False, timeout=60)
    assert response.status_code == 400
    assert "already used" in response.text


@pytest.mark.browser
def test_chromium_launch_opens_the_notebook_in_the_course_server(platform, hub, browser, output_dir):
    """The whole launch in a real browser: auto-submitted LTI forms, the course server, the notebook.

    The platform (127.0.0.1) is another site than the hub (localhost), as a hosted LMS is: the state
    cookies must come back on its cross-site POST of the id_token.
    """
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    query = "user=dora&context_id=BIO-101-2026&custom_notebook=welcome.ipynb"
    page.goto(f"{platform.url}/course/launch?{query}")
    page.wait_for_url("**/user/dora/bio101/lab/tree/bio101/welcome.ipynb*", timeout=240_000)
    # The notebook is open in the main area (not only listed in the file browser).
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tabLabel", has_text="welcome.ipynb").wait_for(
        timeout=120_000
    )
    page.screenshot(path=str(output_dir / "sso-lti13-launch.png"))
    assert hub.api().json("GET", "users/dora")["servers"]["bio101"]["ready"] is True
    page.close()
