"""nbgrader on a real hub: staff release, two students fetch and submit, staff collect, autograde and release
feedback, each student gets their own; nobody reads another's submission; another course sees no exchange."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import hub_root, wait_for

from coursehub.courses.grading import staff_group

pytestmark = pytest.mark.hub

COURSE = "gb"
OTHER = "other"
# Workshop accounts are numbered: the rosters can name them before they exist.
STAFF, ANN, BOB, OUTSIDER = "ng-01", "ng-02", "ng-03", "ng-04"


def cell(source: str, **nbgrader) -> dict:
    meta = {"nbgrader": {"schema_version": 3, "locked": False, "solution": False, "grade": False, **nbgrader}}
    return {"cell_type": "code", "execution_count": None, "metadata": meta, "outputs": [], "source": source}


ASSIGNMENT = {
    "cells": [
        cell(
            "def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION",
            solution=True,
            grade_id="answer",
        ),
        cell("assert add(1, 2) == 3", grade=True, locked=True, points=2, grade_id="test_add"),
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}

# Runs `nbgrader ARGS` in the user's kernel; prints {"rc", "out"} as JSON.
NBGRADER = """
import json, os, subprocess
r = subprocess.run(["nbgrader", *{args!r}], cwd=os.path.expanduser({cwd!r}), capture_output=True, text=True,
                   timeout=300)
print(json.dumps({{"rc": r.returncode, "out": r.stdout + r.stderr}}))
"""


def course_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "README.md").write_text(f"# {name}\n")
    return folder


# Both spawn modes: each gives the staff group to staff servers its own way (the fork server, or preexec).
@pytest.fixture(scope="module", params=["fork", "exec"])
def grading_hub(request, make_hub_module):
    repos = hub_root()
    courses = [
        {
            "name": COURSE,
            "repo": str(course_folder(repos, COURSE)),
            "access": [ANN, BOB],
            "staff": [STAFF],
            "grading": "nbgrader",
            # nbgrader's commands run beside server and kernel (exec mode: nothing shared with a fork server).
            "limits": {"memory": "1G"},
        },
        {"name": OTHER, "repo": str(course_folder(repos, OTHER)), "access": [OUTSIDER, ANN]},
    ]
    # A cgroup parent of this hub's own: another run of this module (another checkout) may be beside it.
    cgroups = f"coursehub-test-grading-{secrets.token_hex(3)}"
    own_cgroups = {"SandboxSpawner": {"cgroup_parent": cgroups}}
    hub = make_hub_module(courses=courses, jupyterhub=own_cgroups, sandbox={"spawn_mode": request.param})
    assert hub.create_accounts("ng", 4) == [STAFF, ANN, BOB, OUTSIDER]
    hub.tokens = {name: hub.token_for(name) for name in (STAFF, ANN, BOB, OUTSIDER)}
    for name in (STAFF, ANN, BOB):
        hub.spawn(name, hub.tokens[name], COURSE)
    yield hub
    shutil.rmtree(repos, ignore_errors=True)
    hub.cli("down", check=False)
    for parent in Path("/sys/fs/cgroup").glob(f"*/{cgroups}"):
        # Busy while another run of this module (another worker, another worktree) has servers in it.
        with contextlib.suppress(OSError):
            parent.rmdir()
    # The course's staff group is a system group the hub made for this hub's prefix only.
    group = staff_group(COURSE, hub.prefix)
    subprocess.run(["groupdel", group], capture_output=True, timeout=60, check=False)


def run(hub, user: str, code: str, server: str = COURSE) -> str:
    return hub.run(user, hub.tokens[user], code, server)


def nbgrader(hub, user: str, *args: str, cwd: str = "~") -> tuple[int, str]:
    result = json.loads(run(hub, user, NBGRADER.format(args=list(args), cwd=cwd)))
    return result["rc"], result["out"]


def ok(hub, user: str, *args: str, cwd: str = "~") -> str:
    rc, out = nbgrader(hub, user, *args, cwd=cwd)
    assert rc == 0, f"nbgrader {' '.join(args)} as {user}: {out}"
    return out


def answer(hub, user: str, body: str) -> None:
    """The student writes their answer (and a tag to find it by) into the fetched notebook."""
    tag = user.replace("-", "")
    code = f"""
import json, os
path = os.path.expanduser("~/ps1/ps1.ipynb")
nb = json.load(open(path))
for c in nb["cells"]:
    if c["metadata"].get("nbgrader", {{}}).get("grade_id") == "answer":
        c["source"] = "def add(a, b):\\n    return {body}  # by {tag}"
json.dump(nb, open(path, "w"))
print("ok")
"""
    assert run(hub, user, code).strip() == "ok"


def test_the_weekly_loop_out_and_back_each_student_sees_only_their_own(grading_hub):
    hub = grading_hub
    grading = f"~/{COURSE}/grading"
    # Staff write the assignment in their course folder, generate and release it.
    write = f"""
import json, os
folder = os.path.expanduser("{grading}/source/ps1")
os.makedirs(folder, exist_ok=True)
json.dump({ASSIGNMENT!r}, open(os.path.join(folder, "ps1.ipynb"), "w"))
print(os.path.realpath(os.path.expanduser("{grading}")))
"""
    assert run(hub, STAFF, write).strip() == "/run/coursehub/grading"  # the staff-only folder, shared
    ok(hub, STAFF, "generate_assignment", "ps1", cwd=grading)
    ok(hub, STAFF, "release_assignment", "ps1", cwd=grading)

    # Two students fetch it, answer differently, submit.
    for student, body in ((ANN, "a + b"), (BOB, "a - b")):
        assert "ps1" in ok(hub, student, "list")
        ok(hub, student, "fetch_assignment", "ps1")
        answer(hub, student, body)
        ok(hub, student, "submit", "ps1")

    # Staff collect, autograde, generate and release feedback.
    ok(hub, STAFF, "collect", "ps1", cwd=grading)
    ok(hub, STAFF, "autograde", "ps1", cwd=grading)
    ok(hub, STAFF, "generate_feedback", "ps1", cwd=grading)
    ok(hub, STAFF, "release_feedback", "ps1", cwd=grading)
    scores = run(
        hub,
        STAFF,
        f"""
from nbgrader.api import Gradebook
import os
with Gradebook("sqlite:///" + os.path.expanduser("{grading}/gradebook.db")) as gb:
    for s in gb.assignment_submissions("ps1"):
        print(s.student.id, s.score, s.max_score)
""",
    )
    unix = {name: hub.prefix + name for name in (ANN, BOB)}
    assert sorted(scores.split("\n")[:-1]) == sorted([f"{unix[ANN]} 2.0 2.0", f"{unix[BOB]} 0.0 2.0"])

    # The gradebook, exported on the host with hub usernames (the format the LTI grade push reads).
    export = hub.root / "grades.csv"
    hub.cli("course", "grades", COURSE, "--csv", str(export))
    assert export.read_text() == f"username,assignment,score,max_score\n{ANN},ps1,2,2\n{BOB},ps1,0,2\n"
    assert export.stat().st_mode & 0o777 == 0o600
    assert "does not grade" in hub.cli("course", "grades", OTHER, check=False).stderr

    # Each student fetches their own feedback, and only theirs.
    for student, other in ((ANN, BOB), (BOB, ANN)):
        mine, theirs = f"by {student.replace('-', '')}", f"by {other.replace('-', '')}"
        ok(hub, student, "fetch_feedback", "ps1")
        html = run(
            hub,
            student,
            """
import glob, os
files = glob.glob(os.path.expanduser("~/ps1/feedback/*/ps1.html"))
print(len(files)); print(open(files[0]).read())
""",
        )
        count, _, text = html.partition("\n")
        assert count == "1" and mine in text and theirs not in text

    # Each student's inbound is their own folder: neither sees, lists or reads the other's submissions,
    # even by the exact name; feedback cannot be listed.
    inbound = f"/run/coursehub/exchange/{COURSE}/inbound"
    names = run(hub, STAFF, f"import glob; print('\\n'.join(glob.glob('{inbound}/*/*')))")
    bobs = [name for name in names.splitlines() if f"/{unix[BOB]}/{unix[BOB]}+ps1+" in name]
    assert len(bobs) == 1
    flat = bobs[0].replace(f"/{unix[BOB]}/", "/")  # where nbgrader alone would have put it
    probe = f"""
import os
inbound = "{inbound}"
mine = os.listdir(inbound)
print(all(name.startswith("{unix[ANN]}+ps1+") for name in mine) and len(mine))
for path in ("{bobs[0]}/ps1.ipynb", "{flat}/ps1.ipynb", inbound + "/{unix[BOB]}"):
    try:
        open(path).read()
        print("read")
    except (FileNotFoundError, NotADirectoryError):
        print("missing")
try:
    os.listdir("/run/coursehub/exchange/{COURSE}/feedback")
    print("listed")
except PermissionError:
    print("denied")
"""
    assert run(hub, ANN, probe).split() == ["1", "missing", "missing", "missing", "denied"]


def test_submissions_in_anothers_name_or_with_symlinks_are_not_collected(grading_hub):
    hub = grading_hub
    grading = f"~/{COURSE}/grading"
    # In her own folder, Ann hands in a newer submission named after Bob (nbgrader alone would collect it as
    # Bob's), and one of her own whose notebook is a link to the staff's solution (nbgrader alone would copy
    # the solution into her feedback).
    forge = f"""
import os
inbound = "/run/coursehub/exchange/{COURSE}/inbound"
when = "2099-01-01 00:00:00.000000 UTC"
for name, notebook in (("{hub.prefix + BOB}", "forged"), ("{hub.prefix + ANN}", None)):
    d = f"{{inbound}}/{{name}}+ps1+{{when}}+x"
    os.mkdir(d)
    open(d + "/timestamp.txt", "w").write(when)
    if notebook:
        open(d + "/ps1.ipynb", "w").write(notebook)
    else:
        os.symlink("/run/coursehub/grading/source/ps1/ps1.ipynb", d + "/ps1.ipynb")
print("ok")
"""
    assert run(hub, ANN, forge).strip() == "ok"
    out = ok(hub, STAFF, "collect", "ps1", "--update", cwd=grading)
    assert f"skipped {hub.prefix + BOB}+ps1+" in out and "left out the symlink" in out
    kept = run(
        hub,
        STAFF,
        f"""
import os
submitted = os.path.expanduser("{grading}/submitted")
print(open(f"{{submitted}}/{hub.prefix + BOB}/ps1/timestamp.txt").read())
print(sorted(os.listdir(f"{{submitted}}/{hub.prefix + ANN}/ps1")))
""",
    )
    bob_when, ann_files = kept.splitlines()
    assert "2099" not in bob_when
    assert ann_files == "['timestamp.txt']"  # her newest, without the link to the solution


def test_a_malformed_assignment_name_is_refused_and_changes_nothing(grading_hub):
    hub = grading_hub
    grading = f"~/{COURSE}/grading"
    listing = f"import os; print(sorted(os.listdir('/run/coursehub/exchange/{COURSE}/outbound')))"
    before = run(hub, STAFF, listing)
    rc, out = nbgrader(hub, STAFF, "release_assignment", "ps+1", cwd=grading)
    assert rc != 0 and "should not contain" in out
    rc, out = nbgrader(hub, ANN, "fetch_assignment", "../inbound")
    assert rc != 0
    assert run(hub, STAFF, listing) == before


def test_only_staff_see_the_course_folder_and_another_course_sees_no_exchange(grading_hub):
    hub = grading_hub
    probe = """
import os
print(os.path.exists("/run/coursehub/exchange"), os.path.exists("/run/coursehub/grading"))
"""
    assert run(hub, ANN, probe).split() == ["True", "False"]
    assert run(hub, STAFF, probe).split() == ["True", "True"]
    hub.spawn(OUTSIDER, hub.tokens[OUTSIDER], OTHER)
    assert run(hub, OUTSIDER, probe, OTHER).split() == ["False", "False"]
    # nbgrader's extensions: the formgrader answers for staff only; nothing of nbgrader in the other course.
    for user, server, status in ((STAFF, COURSE, 200), (ANN, COURSE, 404), (OUTSIDER, OTHER, 404)):
        url = hub.server_url(user, server) + "formgrader/api/assignments"
        headers = {"Authorization": f"token {hub.tokens[user]}"}
        response = requests.get(url, headers=headers, timeout=60, allow_redirects=False)
        assert response.status_code == status, (user, response.status_code, response.headers.get("location"))
        # Only staff's JupyterLab frames its own server's pages (the formgrader panel), and only on an origin
        # of their own; JupyterHub's frame-ancestors 'none' everywhere else.
        framed = "'self'" if user == STAFF and hub.subdomains else "'none'"
        assert response.headers["Content-Security-Policy"] == f"frame-ancestors {framed}", user
        if status == 200:  # formgrader found its course folder (inside the server's root) and gradebook
            assert isinstance(response.json(), list)
    extensions = (
        "import os; print(open(os.environ['JUPYTER_CONFIG_PATH'] + '/labconfig/page_config.json').read())"
    )
    assert "formgrader" in run(hub, ANN, extensions)
    assert json.loads(run(hub, OUTSIDER, extensions, OTHER)) == {
        "disabledExtensions": {"@jupyter/nbgrader": True}
    }


@pytest.mark.browser
def test_jupyterlab_shows_staff_the_formgrader_and_students_only_their_assignments(
    grading_hub, browser, output_dir
):
    hub = grading_hub
    seen = {}
    for user in (STAFF, ANN):
        context, page = open_lab(browser, hub, user)
        config = json.loads(page.locator("#jupyter-config-data").text_content())
        page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
        items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
        seen[user] = (config.get("disabledExtensions", []), items)
        page.screenshot(path=str(output_dir / f"grading-{user}-menu.png"))
        context.close()
    staff_disabled, staff_items = seen[STAFF]
    student_disabled, student_items = seen[ANN]
    assert "Formgrader" in staff_items and "Assignment List" in staff_items
    assert "Assignment List" in student_items
    assert "Formgrader" not in student_items and "Course List" not in student_items
    assert "@jupyter/nbgrader:formgrader" in student_disabled
    assert "@jupyter/nbgrader:formgrader" not in staff_disabled


# Ann's submit of ps1 (fetched above) with a 3 MiB file in it, as a process whose files may not grow past
# 1 MiB (RLIMIT_FSIZE: the kernel answers EFBIG, as a full quota answers EDQUOT); prints {"rc", "out"}.
SUBMIT_TOO_BIG = """
import json, os, resource, subprocess
home = os.path.expanduser("~")
open(os.path.join(home, "ps1", "data.bin"), "wb").write(os.urandom(3 * 2**20))
limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
r = subprocess.run(["nbgrader", "submit", "ps1"], cwd=home, capture_output=True, text=True, timeout=300,
                   preexec_fn=limit)
os.remove(os.path.join(home, "ps1", "data.bin"))
print(json.dumps({"rc": r.returncode, "out": r.stdout + r.stderr}))
"""
STUDENT_VIEW = """
import glob, hashlib, json, os
from jupyter_core.paths import jupyter_data_dir
inbound = "/run/coursehub/exchange/{course}/inbound"
cache = glob.glob(os.path.join(jupyter_data_dir(), "nbgrader_cache", "{course}", "*"))
notebook = hashlib.sha256(open(os.path.expanduser("~/ps1/ps1.ipynb"), "rb").read()).hexdigest()
print(json.dumps([sorted(os.listdir(inbound)), sorted(cache), notebook]))
"""


def test_students_store_nothing_in_the_exchange_root_and_submissions_are_on_the_homes_file_system(
    grading_hub,
):
    hub = grading_hub
    ann = hub.prefix + ANN
    # The exchange root is writable by root alone (it was 1777: anyone could fill the state folder's disk).
    probe = f"""
import os
for path in ("/run/coursehub/exchange/junk", "/run/coursehub/exchange/{COURSE}/junk"):
    try:
        open(path, "wb").write(b"x")
        print("written")
    except PermissionError:
        print("denied")
open("/run/coursehub/exchange/{COURSE}/inbound/probe.txt", "w").write("mine")
print("ok")
"""
    assert run(hub, ANN, probe).split() == ["denied", "denied", "ok"]
    # What Ann writes into her inbound lands in the homes' folder (the homes' file system, where her home's
    # disk quota covers it), not in the state folder.
    folder = hub.home_root / ".coursehub-grading" / COURSE / "inbound" / ann
    assert (folder / "probe.txt").read_text() == "mine"
    assert not list(hub.state_dir.glob(f"grading/{COURSE}/exchange/**/probe.txt"))
    run(hub, ANN, f"import os; os.remove('/run/coursehub/exchange/{COURSE}/inbound/probe.txt'); print()")


def test_a_submission_that_cannot_be_written_says_so_and_leaves_nothing_behind(grading_hub):
    hub = grading_hub
    grading = f"~/{COURSE}/grading"
    before = json.loads(run(hub, ANN, STUDENT_VIEW.format(course=COURSE)))
    bobs = run(
        hub, STAFF, f"import glob; print(sorted(glob.glob('/run/coursehub/exchange/{COURSE}/inbound/*/*')))"
    )
    result = json.loads(run(hub, ANN, SUBMIT_TOO_BIG))
    assert result["rc"] != 0, result["out"]
    assert "nothing was submitted" in result["out"] and "File too large" in result["out"], result["out"]
    # No half-written submission in her inbound or her cache, her notebook unchanged; everyone else's intact.
    assert json.loads(run(hub, ANN, STUDENT_VIEW.format(course=COURSE))) == before
    assert (
        run(
            hub,
            STAFF,
            f"import glob; print(sorted(glob.glob('/run/coursehub/exchange/{COURSE}/inbound/*/*')))",
        )
        == bobs
    )
    out = ok(hub, STAFF, "collect", "ps1", "--update", cwd=grading)
    assert "incomplete" not in out


# The browser loop: an assignment of its own, so the command-line loop above does not change what it sees.
UI_ASSIGNMENT = "ps2"
QUESTION = "Why may the arguments of add come in either order?"  # its written answer, graded by hand
WRITTEN = "Order does not matter, says {student}"


def open_lab(browser, hub, user: str):
    """A fresh browser of `user`, logged in through the form, in JupyterLab of their course server."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(hub.url + "hub/login")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", hub.passwords[user])
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_load_state()
    page.goto(hub.server_url(user, COURSE) + "lab")
    page.locator(".jp-LabShell").wait_for()
    return context, page


def open_nbgrader_panel(page, item: str) -> None:
    """Nbgrader menu -> `item` (Formgrader, Assignment List)."""
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").click()
    page.locator(".lm-Menu-itemLabel").filter(has_text=re.compile(f"^{item}$")).click()


def formgrader_done(frame, expect: str) -> str:
    """Wait for formgrader's result dialog, check it says `expect`, close it; its text."""
    modal = frame.locator("#success-modal, #error-modal")
    modal.wait_for()
    text = modal.inner_text()
    assert expect in text and modal.get_attribute("id") == "success-modal", text
    modal.locator("button", has_text="OK").click()
    modal.wait_for(state="detached")
    return text


def assignment_row(frame):
    """The formgrader's row of the browser loop's assignment (Manage Assignments)."""
    return frame.locator("#main-table tr").filter(has=frame.locator("td.name", has_text=UI_ASSIGNMENT))


@pytest.mark.browser
# Fork mode only: the exec mode's own way of giving staff their group is the weekly loop's to check
# (above, both modes); what this test adds, the formgrader and the assignment list clicked, is the same.
@pytest.mark.parametrize("grading_hub", ["fork"], indirect=True)
def test_the_weekly_loop_clicked_through_in_jupyterlab(grading_hub, browser, output_dir, request):
    """Staff add an assignment in the formgrader, write and mark its notebook in JupyterLab, release,
    collect, autograde, grade a written answer by hand and release feedback in the formgrader; two students
    fetch, answer, run, save, validate and submit in the assignment list, then fetch and open their feedback:
    each sees only theirs."""
    hub = grading_hub
    mode = request.node.callspec.params["grading_hub"]

    def shot(page, what: str) -> None:
        page.screenshot(path=str(output_dir / f"grading-ui-{mode}-{what}.png"))

    _, staff = open_lab(browser, hub, STAFF)
    try:
        _clicked_loop(hub, browser, staff, shot)
    except Exception:  # what each browser showed, and the staff server's log (formgrader runs nbgrader there)
        for number, context in enumerate(browser.contexts):
            for tab, page in enumerate(context.pages):
                shot(page, f"failed-{number}-{tab}")
        for log in hub.state_dir.rglob(f"*{STAFF}--{COURSE}*.log"):
            shutil.copy(log, output_dir / f"grading-ui-{mode}-{log.name}")
        raise
    finally:
        for context in browser.contexts:
            context.close()


def _clicked_loop(hub, browser, staff, shot) -> None:
    """The loop of test_the_weekly_loop_clicked_through_in_jupyterlab, from the staff's open JupyterLab."""
    name = UI_ASSIGNMENT
    lab = staff
    if hub.subdomains:
        open_nbgrader_panel(staff, "Formgrader")
        formgrader = staff.frame_locator("#formgrader-iframe iframe")
    else:  # one origin for all: the formgrader may not be framed there (grading.frame_args), so its own tab
        staff = staff.context.new_page()
        staff.goto(hub.server_url(STAFF, COURSE) + "formgrader")
        formgrader = staff
    row = assignment_row(formgrader)

    # Staff add the assignment in the formgrader, write its notebook in JupyterLab and mark its cells with
    # Create Assignment: an autograded answer, autograded tests worth 2 points, and a written answer worth 3
    # that a human grades.
    formgrader.locator("a", has_text="Add new assignment...").click()
    adding = formgrader.locator("#add-assignment-modal")
    adding.locator("input.name").fill(name)
    adding.locator("button.save").click()
    adding.wait_for(state="detached")
    row.wait_for()
    lab.bring_to_front()  # without subdomains the formgrader is another tab: JupyterLab's must be in front
    # The formgrader's row can come before its folder is there for the server's contents API: opened too
    # early, JupyterLab said "Directory not found: gb/grading/source/ps2" (exec mode, one whole run).
    source = hub.server_url(STAFF, COURSE) + f"api/contents/{COURSE}/grading/source/{name}"
    auth = {"Authorization": f"token {hub.tokens[STAFF]}"}
    wait_for(lambda: requests.get(source, headers=auth, timeout=30).status_code == 200, what="source/<name>")
    for folder in (COURSE, "grading", "source", name):  # formgrader made source/<name>
        lab.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{folder}$")).dblclick()
        lab.locator(".jp-BreadCrumbs", has_text=folder).wait_for()
    lab.locator(".jp-FileBrowser-toolbar [data-jp-item-name='new-launcher'] button").click()
    # The new launcher, in source/<name>: JupyterLab may have opened another at start (in a hidden tab).
    lab.locator(".jp-LauncherCard[data-category='Notebook']:visible").click()
    # Its kernel connected first: that writes the kernel's details into the notebook, which a save before it
    # left unsaved (the tab dirty after its first save, in exec mode).
    lab.wait_for_selector("text=/ipykernel\\)? \\| Idle/")
    lab.locator(".jp-Notebook .jp-Cell .cm-content").first.click()
    lab.keyboard.insert_text("def add(a, b):\n    ### BEGIN SOLUTION\n    return a + b\n    ### END SOLUTION")
    lab.keyboard.press("Escape")
    lab.keyboard.press("b")
    lab.keyboard.press("Enter")
    lab.keyboard.insert_text("assert add(1, 2) == 3")
    lab.keyboard.press("Escape")
    lab.keyboard.press("b")
    lab.keyboard.press("m")  # a Markdown cell
    lab.keyboard.press("Enter")
    lab.keyboard.insert_text(f"{QUESTION}\n\n### BEGIN SOLUTION\nAddition commutes.\n### END SOLUTION")
    lab.keyboard.press("Escape")
    lab.locator(".jp-Notebook .jp-MarkdownCell").wait_for()
    lab.keyboard.press("Control+s")  # JupyterLab asks for a name when an Untitled notebook is first saved
    naming = lab.locator(".jp-Dialog")
    naming.locator("input").first.fill(f"{name}.ipynb")
    naming.locator(".jp-mod-accept").click()
    naming.wait_for(state="detached")
    saved = lab.locator(".lm-TabBar-tab.jp-mod-current:not(.jp-mod-dirty)", has_text=f"{name}.ipynb")
    saved.wait_for()
    lab.locator(".lm-TabBar-tab", has_text="Create Assignment").click()
    marks = lab.locator(".nbgrader-CreateAssignmentWidget .nbgrader-CellWidget:visible")
    marks.nth(0).locator(".nbgrader-CellType select").select_option("solution")
    marks.nth(1).locator(".nbgrader-CellType select").select_option("tests")
    marks.nth(1).locator(".nbgrader-CellPoints input").fill("2")
    marks.nth(1).locator(".nbgrader-CellPoints input").press("Tab")
    marks.nth(2).locator(".nbgrader-CellType select").select_option("manual")
    marks.nth(2).locator(".nbgrader-CellPoints input").fill("3")
    marks.nth(2).locator(".nbgrader-CellPoints input").press("Tab")
    lab.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty", has_text=f"{name}.ipynb").wait_for()
    lab.keyboard.press("Control+s")
    saved.wait_for()
    shot(lab, "written")

    # Staff generate the student version and release it from the formgrader.
    staff.bring_to_front()
    if hub.subdomains:
        lab.locator(".lm-TabBar-tab", has_text="Formgrader").click()
    row.locator("td.assign a").click()
    formgrader_done(formgrader, f"Successfully created the student version of '{name}'")
    row.locator("td.release a").click()
    formgrader_done(formgrader, f"Successfully released '{name}'")
    row.locator("td.status", has_text="released").wait_for()
    shot(staff, "released")

    # Two students fetch it in their assignment list, answer differently, run the answer, write the written
    # answer, save, validate and submit.
    students = {}
    for student, body in ((ANN, "a + b"), (BOB, "a - b")):
        context, page = open_lab(browser, hub, student)
        students[student] = (context, page)
        open_nbgrader_panel(page, "Assignment List")
        released = page.locator("#released_assignments_list .list_item", has_text=name)
        released.locator("button", has_text="fetch").click()
        fetched = page.locator("#fetched_assignments_list .list_item", has_text=name).first
        fetched.locator("a.assignment-notebooks-link").click()
        fetched.locator(".assignment-notebooks a", has_text=name).click()
        cell = page.locator(".jp-Notebook .jp-CodeCell").first
        cell.wait_for()
        page.wait_for_selector("text=/ipykernel\\)? \\| Idle/")
        cell.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        # Inserted, not typed: the editor's auto-indent and bracket closing would change typed text.
        page.keyboard.insert_text(f"def add(a, b):\n    return {body}  # by {student.replace('-', '')}")
        page.keyboard.press("Shift+Enter")
        cell.locator(".jp-InputPrompt", has_text="[1]").wait_for()
        written = page.locator(".jp-Notebook .jp-MarkdownCell")
        written.dblclick()  # a rendered Markdown cell opens its editor so
        written.locator(".cm-content").click()
        page.keyboard.press("Control+a")
        page.keyboard.insert_text(WRITTEN.format(student=student.replace("-", "")))
        page.keyboard.press("Control+Enter")  # rendered, and no new cell below
        written.locator(".jp-RenderedMarkdown", has_text=WRITTEN.format(student="")).wait_for()
        page.keyboard.press("Control+s")
        page.locator(".jp-Notebook").first.wait_for()
        page.locator(".lm-TabBar-tab.jp-mod-current.jp-mod-dirty").wait_for(state="detached")
        shot(page, f"{student}-answered")
        page.locator(".lm-TabBar-tab", has_text="Assignments").click()
        # Validate runs the notebook in a kernel the server starts (as autograde does in the staff's).
        fetched.locator(".assignment-notebooks button", has_text="Validate").click()
        dialog = page.locator(".jp-Dialog")
        passes = body == "a + b"
        dialog.locator(".validation-success" if passes else ".validation-failed").wait_for()
        dialog.locator(".jp-Dialog-button.jp-mod-accept").click()
        dialog.wait_for(state="detached")
        fetched.locator("button", has_text="Submit").click()
        page.locator("#submitted_assignments_list .list_item", has_text=name).first.wait_for()
        shot(page, f"{student}-submitted")

    # Staff collect, autograde each submission, generate and release feedback, all from the formgrader.
    staff.bring_to_front()
    row.locator("td.collect a").click()
    formgrader_done(formgrader, f"Successfully collected submissions of '{name}'")
    row.locator("td.num-submissions a", has_text="2").click()
    submissions = formgrader.locator("#main-table tr").filter(has=formgrader.locator("td.student-id"))
    submissions.nth(1).wait_for()
    for unix in (hub.prefix + ANN, hub.prefix + BOB):
        submission = submissions.filter(has=formgrader.locator("td.student-id", has_text=unix))
        submission.locator("td.autograde a").click()
        formgrader_done(formgrader, f"Successfully autograded '{name}' for student '{unix}'")
    scores = {
        unix: submissions.filter(has=formgrader.locator("td.student-id", has_text=unix)).locator("td.score")
        for unix in (hub.prefix + ANN, hub.prefix + BOB)
    }
    # The written answers wait for a human: nothing of their 3 points yet.
    scores[hub.prefix + ANN].filter(has_text="2 / 5").wait_for()
    scores[hub.prefix + BOB].filter(has_text="0 / 5").wait_for()
    shot(staff, "autograded")
    _grade_by_hand(hub, staff, formgrader, shot)
    formgrader.locator("a", has_text="Manage Assignments").click()
    row.locator("td.generate-feedback a").click()
    formgrader_done(formgrader, f"Successfully generated feedback of '{name}'")
    row.locator("td.release-feedback a").click()
    formgrader_done(formgrader, f"Successfully released feedback of '{name}'")
    shot(staff, "feedback-released")

    # Each student fetches feedback in the assignment list and opens their own, which is theirs alone: the
    # first has the points and the comment given by hand, the other neither.
    graded = {ANN: "4.0 / 5.0", BOB: "0.0 / 5.0"}
    by_hand = {ANN: "2.0 / 3.0", BOB: "0.0 / 3.0"}
    for student, other in ((ANN, BOB), (BOB, ANN)):
        context, page = students[student]
        page.locator("#refresh_assignments_list").click()
        submitted = page.locator("#submitted_assignments_list .list_item", has_text=name).first
        submitted.locator("text=(feedback available to fetch)").wait_for()
        submitted.locator("button", has_text="Fetch Feedback").click()
        submitted = page.locator("#submitted_assignments_list .list_item", has_text=name).first
        submitted.locator("a", has_text="view feedback").click()
        page.locator(".jp-DirListing-item", has_text=f"{name}.html").dblclick()
        viewer = page.frame_locator(".jp-HTMLViewer iframe")
        heading = viewer.locator("h4", has_text="Score:")
        heading.wait_for()
        text = viewer.locator("body").inner_text()
        shot(page, f"{student}-feedback")
        assert f"{name} (Score: {graded[student]})" in heading.inner_text()
        assert f"Score: {graded[other]}" not in text
        assert f"by {student.replace('-', '')}" in text and f"by {other.replace('-', '')}" not in text
        assert f"Written response (Score: {by_hand[student]})" in text
        assert f"Score: {by_hand[other]}" not in text
        assert WRITTEN.format(student=student.replace("-", "")) in text
        assert WRITTEN.format(student=other.replace("-", "")) not in text
        assert (COMMENT in text) == (student == ANN)


# The hand grader's comment to the first student.
COMMENT = "Right: a + b is b + a for numbers, though not for lists."


def _grade_by_hand(hub, staff, formgrader, shot) -> None:
    """Staff open the first student's submission in Manual Grading, give 2 of the written answer's 3 points
    and a comment; the formgrader's totals and the exported gradebook count them for that student alone."""
    name = UI_ASSIGNMENT
    students = ann, bob = hub.prefix + ANN, hub.prefix + BOB
    formgrader.locator("a", has_text="Manual Grading").click()
    formgrader.locator(f"td.name a[href$='/formgrader/gradebook/{name}']").click()  # the assignment
    notebook = f"a[href$='/formgrader/gradebook/{name}/{name}']"
    formgrader.locator(f"td.name {notebook}").click()  # its notebook: the submissions, names hidden
    submissions = formgrader.locator("#main-table tr")
    by = {
        unix: submissions.filter(has=formgrader.locator("a.name-shown", has_text=unix)) for unix in students
    }
    by[bob].wait_for(state="attached")
    by[ann].locator("a.name-hidden").wait_for()  # its row drawn: Show All Names shows the rows there are
    formgrader.locator("#toggle_names", has_text="Show All Names").click()
    by[ann].locator("a.name-shown").click()

    # The formgrader shows the submission; its written answer needs a grade. A field is saved when it is left:
    # clicked away from, as a grader with a mouse does (the formgrader binds its own keys, Escape and Tab,
    # only once MathJax loaded from a CDN, which an offline hub, as here, does not reach). Saves are awaited.
    answer = formgrader.locator(".nbgrader_cell", has_text=WRITTEN.format(student=ANN.replace("-", "")))
    answer.locator("input.score.needs_manual_grade").wait_for()  # the grade loaded and bound to its input
    answer.locator("textarea.comment[placeholder]").wait_for()  # and the comment
    for field, value, api in (("input.score", "2", "grade"), ("textarea.comment", COMMENT, "comment")):
        with staff.expect_response(
            lambda r, api=api: f"/api/{api}/" in r.url and r.request.method == "PUT"
        ) as put:
            answer.locator(field).fill(value)
            answer.locator(".panel-body").click()  # the student's answer: leaves the field
        assert put.value.ok, f"saving the {api}: {put.value.status}"
    shot(staff, "graded-by-hand")

    # Back in the submissions: the first student's total has the 2 points, the other's is unchanged.
    formgrader.locator(f".breadcrumb {notebook}").click()
    by[ann].locator("td.score", has_text="4 / 5").wait_for()
    assert by[bob].locator("td.score").inner_text() == "0 / 5"
    export = hub.root / "grades-by-hand.csv"
    hub.cli("course", "grades", COURSE, "--csv", str(export))
    assert [line for line in export.read_text().splitlines() if f",{name}," in line] == [
        f"{ANN},{name},4,5",
        f"{BOB},{name},0,5",
    ]
