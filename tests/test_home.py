"""The course home on a real hub, in Chromium: who sees which course, where the root lands, Open, Stop."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import requests
from conftest import hub_root, wait_for
from playwright.sync_api import Error as PlaywrightError

from coursehub.clients.hubapi import HubAPI
from coursehub.courses.catalog import load_catalog

pytestmark = [pytest.mark.hub, pytest.mark.browser]

HOSTILE = "<img src=x onerror=alert(1)>"
# Our own cgroup parent: `coursehub down` of another hub sweeps the default one (see test_ops_status).
# Per test process: another checkout's run of this module on the machine has its own.
CGROUP_PARENT = f"coursehub-test-home-{os.getpid()}"
OWN_CGROUPS = {"SandboxSpawner": {"cgroup_parent": CGROUP_PARENT}}
# Workshop accounts are numbered: the rosters can name them before they exist.
ONLY_SECOND, BOTH, NEITHER, STAFF_FIRST, STAFF_SECOND = "hm-01", "hm-02", "hm-03", "hm-04", "hm-05"


def notebook(code: str) -> str:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": [code]}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def course_folder(root: Path, name: str, readme: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "README.md").write_text(readme)
    (folder / "start.ipynb").write_text(notebook(f"print('{name}')"))
    return folder


@pytest.fixture(scope="module")
def home_hub(make_hub_module):
    repos = hub_root()
    courses = [
        {
            "name": "first",
            "title": "First course",
            "repo": str(course_folder(repos, "first", "# First\n\nThe first course.\n")),
            "default_notebook": "start.ipynb",
            "access": [BOTH],
            "staff": [STAFF_FIRST],
        },
        {
            "name": "second",
            "title": HOSTILE,
            "description": f"Statistics {HOSTILE} with Python.",  # config's word over the README's
            "repo": str(course_folder(repos, "second", "# Second\n\nThe README's words.\n")),
            "default_notebook": "start.ipynb",
            "access": [ONLY_SECOND, BOTH],
            "staff": [STAFF_SECOND],
        },
    ]
    hub = make_hub_module(courses=courses, jupyterhub=OWN_CGROUPS)
    assert hub.create_accounts("hm", 5) == [ONLY_SECOND, BOTH, NEITHER, STAFF_FIRST, STAFF_SECOND]
    yield hub
    shutil.rmtree(repos, ignore_errors=True)
    hub.cli("down", check=False)
    for parent in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}"):
        parent.rmdir()


@pytest.fixture
def page_of(browser, home_hub):
    """A logged-in page of its own (own cookies) per user; alert() dialogs are recorded, not shown."""
    contexts = []

    def login(name: str, dialogs: list | None = None):
        context = browser.new_context(viewport={"width": 1300, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(120_000)
        page.on("dialog", lambda dialog: record(dialog, dialogs))
        page.goto(home_hub.url + "hub/login")
        page.fill("input[name=username]", name)
        page.fill("input[name=password]", home_hub.passwords[name])
        page.click("input[type=submit], button[type=submit]")
        return page

    yield login
    for context in contexts:
        context.close()


def record(dialog, dialogs: list | None) -> None:
    if dialog.type == "beforeunload":
        # JupyterLab asks before leaving a notebook with unsaved changes (it marks one as changed when its
        # kernel connects): dismissed, that question would cancel the test's navigation (ERR_ABORTED).
        dialog.accept()
        return
    if dialogs is not None:
        dialogs.append(dialog.message)
    dialog.dismiss()


def listed(page) -> list[str]:
    return page.locator("tr.ch-course").evaluate_all("rows => rows.map(r => r.dataset.serverName)")


def leave_for(page, url: str) -> None:
    """Go to `url` from a JupyterLab page, which may still be navigating itself (its workspace check
    can move it to another workspace just after it loads, which aborts our navigation once)."""
    for attempt in range(3):
        try:
            page.goto(url)
            return
        except PlaywrightError as error:
            if "ERR_ABORTED" not in str(error) or attempt == 2:
                raise
            page.wait_for_load_state()


def servers(hub, name: str) -> dict:
    return hub.api().json("GET", f"users/{name}")["servers"]


def test_a_student_of_course_two_lands_in_it_and_sees_only_it(home_hub, page_of, output_dir):
    dialogs: list[str] = []
    page = page_of(ONLY_SECOND, dialogs)
    # The hub root after login opens the first course this student may open: the second one.
    page.wait_for_url(f"**/user/{ONLY_SECOND}/second/lab/**", timeout=180_000)
    page.locator(".jp-LabShell").wait_for()
    page.goto(home_hub.url + "hub/home")
    assert listed(page) == ["second"]
    title = page.locator("tr.ch-course .ch-title")
    assert title.inner_text() == HOSTILE  # shown as text...
    assert page.locator("#coursehub-home img").count() == 0  # ...never as markup
    description = page.locator("tr.ch-course .ch-description").inner_text()
    assert description == f"Statistics {HOSTILE} with Python."
    assert page.locator("tr.ch-course .ch-state").inner_text() == "running"
    assert page.locator(".new-server-name").count() == 0  # no free-text server box
    page.screenshot(path=str(output_dir / "home-one-course.png"))
    assert dialogs == []


def test_the_default_server_opens_the_first_course_the_user_may_open(home_hub):
    token = home_hub.token_for(ONLY_SECOND)
    home_hub.spawn(ONLY_SECOND, token)  # /hub/spawn with no name: the default server
    course = home_hub.run(ONLY_SECOND, token, "import os; print(os.environ['COURSEHUB_COURSE'])")
    assert course.strip() == "second"  # not "You are not enrolled in first"
    home_hub.api().stop_server(ONLY_SECOND)
    wait_for(lambda: "" not in servers(home_hub, ONLY_SECOND), what="the default server's stop")


def test_a_user_without_courses_is_told_so(home_hub, page_of):
    page = page_of(NEITHER)
    page.wait_for_url("**/hub/home", timeout=60_000)
    assert page.locator("#no-courses").is_visible()
    assert listed(page) == []
    # And the default server says why instead of running some course.
    token = home_hub.token_for(NEITHER)
    response = HubAPI(home_hub.url, token).request("POST", f"users/{NEITHER}/server")
    if response.status_code < 400:  # still starting when the API answered: wait for the failure
        wait_for(lambda: "" not in servers(home_hub, NEITHER), what="the refused default server")
    assert "not enrolled in any course" in response.text + home_hub.log()
    assert "" not in servers(home_hub, NEITHER)


def test_open_starts_the_course_and_stop_stops_it(home_hub, page_of, output_dir):
    page = page_of(BOTH)
    page.wait_for_url(f"**/user/{BOTH}/first/lab/**", timeout=180_000)  # the first of both
    home_hub.api().stop_server(BOTH, "first")
    wait_for(lambda: "first" not in servers(home_hub, BOTH), what="the stop through the API")
    page.goto(home_hub.url + "hub/home")
    assert listed(page) == ["first", "second"]
    titles = page.locator("tr.ch-course .ch-title").all_inner_texts()
    assert titles == ["First course", HOSTILE]
    descriptions = page.locator("tr.ch-course .ch-description").all_inner_texts()
    assert descriptions == ["The first course.", f"Statistics {HOSTILE} with Python."]  # README, config
    second = page.locator('tr.ch-course[data-server-name="second"]')
    assert second.locator(".ch-state").inner_text() == "stopped"
    assert not second.locator(".ch-stop").is_visible()
    second.locator(".ch-open").click()
    page.wait_for_url(f"**/user/{BOTH}/second/lab/tree/second/start.ipynb", timeout=180_000)
    page.locator(".jp-Notebook .jp-CodeCell").first.wait_for()  # JupyterLab loaded the course's notebook
    assert servers(home_hub, BOTH)["second"]["ready"]
    leave_for(page, home_hub.url + "hub/home")
    second = page.locator('tr.ch-course[data-server-name="second"]')
    assert second.locator(".ch-state").inner_text() == "running"
    assert page.locator("tr.ch-course .ch-activity").first.inner_text() != "Never"  # first ran at login
    page.screenshot(path=str(output_dir / "home-two-courses.png"))
    second.locator(".ch-stop").click()
    second.locator(".ch-state", has_text="stopped").wait_for(timeout=120_000)
    assert "second" not in servers(home_hub, BOTH)


def test_staff_reach_their_courses_students_and_nothing_else(home_hub):
    hub = home_hub
    for student in (ONLY_SECOND, BOTH):
        hub.login(student)  # a hub user from the first login on (the earlier tests may not have run)
    staff = HubAPI(hub.url, hub.token_for(STAFF_FIRST))
    listed_users = {user["name"] for user in staff.json("GET", "users")}
    assert BOTH in listed_users and ONLY_SECOND not in listed_users  # course 1's student, not course 2's
    assert staff.request("GET", f"users/{ONLY_SECOND}").status_code in (403, 404)
    # Not course 2's student, and not course 1's student's server of course 2 either.
    assert staff.request("POST", f"users/{ONLY_SECOND}/servers/second").status_code in (403, 404)
    assert staff.request("POST", f"users/{BOTH}/servers/second").status_code in (403, 404)
    assert "second" not in servers(hub, BOTH)
    # Their own student's server of their own course: start it, open it, stop it.
    assert staff.request("POST", f"users/{BOTH}/servers/first").status_code in (201, 202)
    wait_for(lambda: servers(hub, BOTH).get("first", {}).get("ready"), timeout=300, what="the staff's start")
    headers = {"Authorization": f"token {staff.token}"}
    status = requests.get(hub.server_url(BOTH, "first") + "api/status", headers=headers, timeout=30)
    assert status.status_code == 200, status.text
    # A server of course 2 (its student's own) does not open for course 1's staff.
    own = hub.token_for(ONLY_SECOND)
    if not servers(hub, ONLY_SECOND).get("second", {}).get("ready"):
        hub.spawn(ONLY_SECOND, own, server="second")
    other = requests.get(hub.server_url(ONLY_SECOND, "second") + "api/status", headers=headers, timeout=30)
    assert other.status_code in (401, 403, 404), other.status_code
    assert staff.request("DELETE", f"users/{BOTH}/servers/first").status_code in (202, 204)
    wait_for(lambda: "first" not in servers(hub, BOTH), what="the staff's stop")
    # No admin: not the admin page, not the status page, not other users' admin API.
    session = hub.login(STAFF_FIRST)
    for page in ("hub/admin", "hub/coursehub/status"):
        assert session.get(hub.url + page, timeout=30, allow_redirects=False).status_code == 403, page
    assert staff.request("DELETE", f"users/{BOTH}").status_code in (403, 404)
    assert staff.request("POST", "users", json={"usernames": ["intruder"]}).status_code == 403


def test_staff_of_course_two_see_both_of_its_students(home_hub):
    for student in (ONLY_SECOND, BOTH, NEITHER):
        home_hub.login(student)
    staff = HubAPI(home_hub.url, home_hub.token_for(STAFF_SECOND))
    names = {user["name"] for user in staff.json("GET", "users")}
    assert {ONLY_SECOND, BOTH} <= names and NEITHER not in names and STAFF_FIRST not in names
    assert staff.request("POST", f"users/{BOTH}/servers/first").status_code in (403, 404)


def served(hub, course: str, name: str) -> bool:
    """True when the content in service of `course` has the file `name`."""
    return (Path(load_catalog(hub.state_dir / "courses")[course].content) / name).exists()


def test_staff_update_their_course_from_the_home_page_and_nobody_else_can(home_hub, page_of, output_dir):
    hub = home_hub
    folder = Path(load_catalog(hub.state_dir / "courses")["first"].repo)
    (folder / "added.md").write_text("added by the staff\n")
    url = hub.url + "hub/coursehub/update/first"
    # A student of the course and the other course's staff: 403 (the student has no button at all).
    for name in (BOTH, STAFF_SECOND):
        session = hub.login(name)
        page = session.get(hub.url + "hub/home", timeout=30).text
        assert ("Update content</button>" in page) is (name == STAFF_SECOND)  # their own course's
        xsrf = {"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")}
        assert session.post(url, headers=xsrf, timeout=30).status_code == 403, name
    # The staff's own API token (their server holds one): refused, as on every JupyterHub page handler.
    token = {"Authorization": f"token {hub.token_for(STAFF_FIRST)}"}
    assert requests.post(url, headers=token, timeout=30).status_code == 403
    # The staff's own cookie without the XSRF token (another site's form): refused too.
    assert hub.login(STAFF_FIRST).post(url, timeout=30).status_code == 403
    assert not served(hub, "first", "added.md")

    page = page_of(STAFF_FIRST)
    page.wait_for_url("**/user/**", timeout=180_000)  # the hub root opens their first course
    page.goto(hub.url + "hub/home")
    assert page.locator('tr.ch-course[data-server-name="second"] .ch-update').count() == 0
    button = page.locator('tr.ch-course[data-server-name="first"] .ch-update')
    button.click()
    page.locator(".ch-update", has_text="Update started").wait_for(timeout=60_000)
    page.screenshot(path=str(output_dir / "home-staff-update.png"))
    wait_for(lambda: served(hub, "first", "added.md"), timeout=300, what="the staff's update")
