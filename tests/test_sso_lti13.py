"""auth.lti13 against a local LTI 1.3 platform: signed launches land in the mapped course and notebook,
roles decide instructor rights, forged signatures and replayed launches are refused; scores reach the
platform's line items through Assignment and Grade Services (retried, skipped students reported)."""

from __future__ import annotations

import base64
import json
import os
import stat
import time

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from idp.hubs import start_hub
from idp.lti13 import ASSERTION_TYPE, Platform, make_app, read_form
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
            "token_url": f"{platform.url}/token",
            "contexts": {"BIO-101-2026": "bio101"},
            "param_courses": ["chem101"],
            "instructors_are_admins": True,
            "instructor_roles": ["Instructor"],  # TAs are staff of their course, not instructors (admins)
        }
    }
    hub = start_hub(lambda root: auth, {"bio101": ["group:lti-bio101"], "chem101": ["group:lti-chem101"]})
    platform.tool_login_url = hub.url + "hub/lti13/oauth_login"
    platform.redirect_uris.append(hub.url + "hub/lti13/oauth_callback")
    platform.tool_jwks_url = hub.url + "hub/lti13/jwks"
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


def grades_csv(folder, name: str, rows: list[str]):
    path = folder / name
    path.write_text("username,assignment,score,max_score\n" + "".join(f"{r}\n" for r in rows))
    return path


def push(hub, csv_path, *extra: str, check: bool = True):
    return hub.cli("course", "lti-grades", "bio101", "--csv", str(csv_path), *extra, check=check)


def test_scores_land_on_the_line_item_with_the_lti_user_id(platform, hub, tmp_path):
    # The LMS's sub "Gina" is the hub user "gina" (JupyterHub lowercases names): the score is for "Gina".
    launch(platform, hub, user="Gina", context_id="BIO-101-2026")
    launch(platform, hub, user="hugh", context_id="BIO-101-2026")
    store = hub.state_dir / "lti-grades.sqlite"
    assert stat.S_IMODE(os.stat(store).st_mode) == 0o600 and os.stat(store).st_uid == 0
    rows = ["gina,hw1,7,10", "hugh,hw1,9.5,10", "hugh,hw2,3,5", "nolaunch,hw1,4,10"]
    result = push(hub, grades_csv(tmp_path, "grades.csv", rows))
    hw1, hw2 = platform.lineitem("BIO-101-2026", "hw1"), platform.lineitem("BIO-101-2026", "hw2")
    assert hw1["scoreMaximum"] == 10 and hw1["tag"] == "bio101" and hw1["label"] == "hw1"
    assert hw2["scoreMaximum"] == 5
    scores = {s["userId"]: s for s in platform.scores[hw1["id"]]}
    assert set(scores) == {"Gina", "hugh"}
    assert scores["Gina"]["scoreGiven"] == 7 and scores["Gina"]["scoreMaximum"] == 10
    assert scores["Gina"]["activityProgress"] == "Completed"
    assert scores["Gina"]["gradingProgress"] == "FullyGraded"
    assert [s["scoreGiven"] for s in platform.scores[hw2["id"]]] == [3]
    # A student without a launch is reported, not dropped.
    skipped = [line for line in result.stdout.splitlines() if "nolaunch" in line]
    assert skipped and skipped[0].startswith("skipped") and "open it from the LMS" in skipped[0]
    assert "3 posted, 0 failed, 1 skipped." in result.stdout
    # Pushed again: the line items are found (not duplicated), the scores posted again.
    push(hub, grades_csv(tmp_path, "again.csv", ["gina,hw1,8,10"]))
    assert [i["resourceId"] for i in platform.lineitems["BIO-101-2026"]].count("hw1") == 1
    assert platform.scores[hw1["id"]][-1] == {
        **platform.scores[hw1["id"]][-1],
        "userId": "Gina",
        "scoreGiven": 8,
    }


def test_a_failing_platform_is_retried_and_failures_are_shown_to_staff(platform, hub, tmp_path):
    launch(platform, hub, user="rita", context_id="BIO-101-2026")
    platform.score_failures[:] = [503]
    result = push(hub, grades_csv(tmp_path, "retry.csv", ["rita,quiz,5,5"]))
    item = platform.lineitem("BIO-101-2026", "quiz")
    assert [s["scoreGiven"] for s in platform.scores[item["id"]]] == [5]
    assert "(2 attempts)" in result.stdout and "1 posted" in result.stdout
    # Down for good: bounded retries, then a failure the command and the staff's page show.
    platform.score_failures[:] = [503] * 10
    failed = push(hub, grades_csv(tmp_path, "down.csv", ["rita,quiz2,1,5"]), check=False)
    assert failed.returncode == 1
    assert (
        "FAILED" in failed.stdout and "503" in failed.stdout and "gave up after 4 attempts" in failed.stdout
    )
    assert len(platform.score_failures) == 6  # 4 attempts, not more
    platform.score_failures[:] = []
    ta = "http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"
    staff, _ = launch(platform, hub, user="theo", context_id="BIO-101-2026", roles=ta)
    page = staff.get(hub.url + "hub/coursehub/grades/bio101", timeout=60)
    assert page.status_code == 200
    assert "1 failed" in page.text and 'class="grade-failed"' in page.text and "gave up after 4" in page.text
    student, _ = launch(platform, hub, user="rita", context_id="BIO-101-2026")
    assert student.get(hub.url + "hub/coursehub/grades/bio101", timeout=60).status_code == 403


def test_the_platform_refuses_forged_token_requests(platform, hub):
    launch(platform, hub, user="fred", context_id="BIO-101-2026")
    # The hub makes its key when it first publishes it: ask for the key set before reading the file (run
    # alone, this test found no file; in a whole run an earlier test had fetched the key set).
    kid = requests.get(hub.url + "hub/lti13/jwks", timeout=30).json()["keys"][0]["kid"]
    tool_key = serialization.load_pem_private_key((hub.state_dir / "lti-tool-key.pem").read_bytes(), None)
    now = int(time.time())
    claims = {"iss": platform.client_id, "sub": platform.client_id, "aud": f"{platform.url}/token"}
    claims |= {"iat": now, "exp": now + 60, "jti": str(now)}

    def ask(assertion: str) -> requests.Response:
        form = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}
        return requests.post(
            f"{platform.url}/token", data={**form, "client_assertion": assertion}, timeout=30
        )

    other = rsa.generate_private_key(65537, 2048)
    assert ask(jwt.encode(claims, other, algorithm="RS256", headers={"kid": kid})).status_code == 401
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    assert ask(unsigned).status_code == 401
    # The same request signed with the tool's key is accepted: the refusals are about the signature.
    assert ask(jwt.encode(claims, tool_key, algorithm="RS256", headers={"kid": kid})).status_code == 200


def test_an_instructor_deep_links_a_notebook_that_students_then_open(platform, hub):
    session, response = launch(
        platform, hub, user="ines", context_id="BIO-101-2026", roles="Instructor", deep_link="1"
    )
    assert response.status_code == 302, response.text
    assert "/hub/lti13/deeplink/" in response.headers["Location"]
    picker = hub.url.rstrip("/") + response.headers["Location"]
    page = session.get(picker, timeout=60)
    assert page.status_code == 200 and 'value="welcome.ipynb"' in page.text
    xsrf = [c.value for c in session.cookies if c.name == "_xsrf"][0]
    # Another site cannot choose for her: the POST needs JupyterHub's XSRF token.
    assert session.post(picker, data={"notebook": "welcome.ipynb"}, timeout=60).status_code == 403
    # Only the course's notebooks: a path of the hub's own files is refused.
    bad = session.post(picker, data={"_xsrf": xsrf, "notebook": "../../etc/passwd"}, timeout=60)
    assert bad.status_code == 400
    chosen = session.post(picker, data={"_xsrf": xsrf, "notebook": "welcome.ipynb"}, timeout=60)
    assert chosen.status_code == 200
    action, fields = read_form(chosen.text)
    assert action == f"{platform.url}/deeplink/return"
    answer = requests.post(action, data=fields, timeout=60)
    assert answer.status_code == 200, answer.text  # the platform checked the tool's signature
    item = platform.deep_links[-1]
    assert item["type"] == "ltiResourceLink" and item["custom"] == {"notebook": "welcome.ipynb"}
    # The link the LMS now holds: a student's launch of it lands on the notebook.
    custom = {f"custom_{k}": v for k, v in item["custom"].items()}
    _, landed = launch(platform, hub, user="stu", context_id="BIO-101-2026", **custom)
    assert landed.headers["Location"] == "/hub/launch/bio101?path=welcome.ipynb"
    # The request is used up; another user cannot use one either.
    assert session.get(picker, timeout=60).status_code == 404


def test_deep_linking_is_for_staff_and_forged_responses_are_refused(platform, hub):
    _, response = launch(platform, hub, user="lena", context_id="BIO-101-2026", deep_link="1")
    assert response.status_code == 400 and "instructors and TAs" in response.text
    session, response = launch(
        platform, hub, user="ines2", context_id="BIO-101-2026", roles="Instructor", deep_link="1"
    )
    other, _ = launch(platform, hub, user="otto", context_id="BIO-101-2026", roles="Instructor")
    picker = hub.url.rstrip("/") + response.headers["Location"]
    assert other.get(picker, timeout=60).status_code == 404  # bound to ines2
    data = next(iter(platform.deep_link_data))
    claims = {
        "iss": platform.client_id,
        "aud": platform.url,
        "iat": int(time.time()),
        "exp": int(time.time()) + 60,
        "https://purl.imsglobal.org/spec/lti/claim/message_type": "LtiDeepLinkingResponse",
        "https://purl.imsglobal.org/spec/lti-dl/claim/data": data,
        "https://purl.imsglobal.org/spec/lti-dl/claim/content_items": [{"type": "ltiResourceLink"}],
    }
    kid = requests.get(hub.url + "hub/lti13/jwks", timeout=30).json()["keys"][0]["kid"]
    forged = jwt.encode(
        claims, rsa.generate_private_key(65537, 2048), algorithm="RS256", headers={"kid": kid}
    )
    before = len(platform.deep_links)
    assert (
        requests.post(f"{platform.url}/deeplink/return", data={"JWT": forged}, timeout=30).status_code == 400
    )
    assert len(platform.deep_links) == before


def test_a_refused_registration_fails_every_post_with_one_token_request(platform, hub, tmp_path):
    """A key the platform does not know (not the one at the hub's JWKS): clear failures, no retry storm."""
    from coursehub.auth.ags import AGS_CLAIM, ags_launch, read_grades
    from coursehub.auth.ags_store import posts, save_launch
    from coursehub.clients.ags import AgsClient, push_grades

    store = tmp_path / "grades.sqlite"
    scope = "https://purl.imsglobal.org/spec/lti-ags/scope/"
    scopes = [scope + "score", scope + "lineitem"]
    endpoint = {"lineitems": f"{platform.url}/ags/X/lineitems", "scope": scopes}
    for user in ("amy", "ben"):
        claims = {"iss": platform.url, "aud": platform.client_id, "sub": user, AGS_CLAIM: endpoint}
        save_launch(store, ags_launch(user, "bio101", claims))
    refused = len(platform.refused)
    client = AgsClient(f"{platform.url}/token", rsa.generate_private_key(65537, 2048), sleep=lambda s: None)
    grades = read_grades("username,assignment,score,max_score\namy,hw1,1,2\nben,hw1,2,2\n")
    outcomes = push_grades(store, "bio101", grades, client)
    assert [p.status for p in outcomes] == ["failed", "failed"]
    assert "401" in outcomes[0].detail and "/hub/lti13/jwks" in outcomes[0].detail
    assert outcomes[1].detail == outcomes[0].detail
    assert len(platform.refused) == refused + 1  # one token request for the run, not one per student
    assert {p.status for p in posts(store, "bio101")} == {"failed"}
