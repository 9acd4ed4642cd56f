"""The course home without a hub: who sees which course (rules as data), README summaries, the template."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import jinja2
from jupyterhub.app import JupyterHub
from test_settings import RUNTIME, config_for

from coursehub.courses.access import openable
from coursehub.courses.catalog import CourseRecord, save_catalog
from coursehub.courses.readme import readme_summary, summary
from coursehub.hubconfig import build
from coursehub.launch.home import CourseShelf, FirstCourse, HomeCourses, home_course
from coursehub.settings.yamlfile import parse_settings

TEMPLATES = Path(__file__).resolve().parents[1] / "coursehub" / "templates"
HOSTILE = "<img src=x onerror=alert(1)>"


def user(name, groups=(), spawners=None):
    return SimpleNamespace(
        name=name,
        groups=[SimpleNamespace(name=g) for g in groups],
        orm_spawners=spawners or {},
        spawners=spawners or {},
        spawner=SimpleNamespace(active=False),
        server_url=lambda server: f"/user/{name}/{server}/",
    )


def course(name, access="accounts", ready=True, **more):
    return CourseRecord(name=name, access=access, environment="/env" if ready else "", **more)


RECORDS = {
    r.name: r
    for r in [
        course("intro", ["ann", "group:bio"]),
        course("stats", ["bob"]),
        course("everyone"),
        course("guests", "open"),
        course("broken", "accounts", ready=False),  # never built: nothing to open
        course("binder-abc123", "open"),  # a repository built for anonymous readers
        course("added-later"),  # in the catalog, not in the hub's config order
    ]
}
ORDER = ("stats", "intro", "everyone", "guests", "broken")

# (user, the course names they see, first first)
CASES = [
    (user("ann"), ["intro", "everyone", "guests", "added-later"]),
    (user("bob"), ["stats", "everyone", "guests", "added-later"]),
    (user("cat", ["bio"]), ["intro", "everyone", "guests", "added-later"]),
    (user("bob", ["bio"]), ["stats", "intro", "everyone", "guests", "added-later"]),
    (user("eve"), ["everyone", "guests", "added-later"]),
    (user("tmp-1", ["coursehub-temporary"]), ["guests"]),
]


def test_the_courses_a_user_may_open_in_config_order():
    for who, names in CASES:
        assert [r.name for r in openable(RECORDS, ORDER, who)] == names, who.name
    assert openable(RECORDS, ORDER, None) == []


def test_a_student_on_course_two_only_gets_course_two_first():
    records = {"one": course("one", ["ann"]), "two": course("two", ["bob"])}
    assert [r.name for r in openable(records, ("one", "two"), user("bob"))] == ["two"]


def test_readme_summary_is_the_first_paragraph_of_prose():
    text = (
        "# Bio 101\n\n[![ci](b.svg)](x)\n\n"
        "Learn **biology** with <b>Python</b>, see [docs](http://x).\nWeek one.\n\nMore."
    )
    assert summary(text) == "Learn **biology** with Python, see docs. Week one."
    assert summary("Title\n=====\n\n```\ncode\n```\n\nHello rst.\n") == "Hello rst."
    long = summary("word " * 200)
    assert len(long) <= 300 and long.endswith("…")
    assert summary("") == ""


def test_readme_symlinks_are_never_followed(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("root's secret\n")
    course_dir = tmp_path / "course"
    course_dir.mkdir()
    (course_dir / "README.md").symlink_to(secret)
    os.mkfifo(course_dir / "README.rst")  # not a regular file: skipped, never blocks
    assert readme_summary(course_dir) == ""
    (course_dir / "README.txt").write_text("A course.\n")
    assert readme_summary(course_dir) == "A course."


def test_rows_show_the_users_server_of_each_course():
    running = SimpleNamespace(active=True, ready=True, pending=None, last_activity=datetime(2026, 1, 2, 3, 4))
    ann = user("ann", spawners={"intro": running})
    row = home_course(course("intro", title="Intro", description="d"), ann)
    assert (row.title, row.active, row.ready) == ("Intro", True, True)
    assert row.last_activity == "2026-01-02T03:04:00Z"
    row = home_course(course("stats"), ann)
    assert (row.title, row.active, row.last_activity) == ("stats", False, "")
    assert row.server_url == "/user/ann/stats/"


def test_shelf_reads_the_catalog_and_the_hub_root_opens_the_first_course(tmp_path):
    save_catalog(tmp_path, {"one": course("one", ["ann"]), "two": course("two", ["bob"])})
    shelf = CourseShelf(str(tmp_path), order=("one", "two"))
    assert [row.name for row in HomeCourses(shelf)(user("bob"))()] == ["two"]
    assert HomeCourses(shelf)(None)() == []

    def handler(who):
        return SimpleNamespace(current_user=who, hub=SimpleNamespace(base_url="/hub/"))

    first = FirstCourse(shelf)
    assert first(handler(user("bob"))) == "/hub/launch/two"
    assert first(handler(user("eve"))) == "/hub/home"  # no course: the home page says so
    assert first(handler(None)) == ""  # JupyterHub's login redirect
    busy = user("ann")
    busy.spawner = SimpleNamespace(active=True)
    assert first(handler(busy)) == ""  # JupyterHub opens the running default server


def render_home(**ns) -> str:
    """home.html through the loaders JupyterHub builds (its own templates under the 'templates/' prefix)."""
    stock = JupyterHub().template_paths[0]
    loader = jinja2.ChoiceLoader(
        [
            jinja2.PrefixLoader({"templates": jinja2.FileSystemLoader([stock])}, "/"),
            jinja2.FileSystemLoader([str(TEMPLATES), stock]),
        ]
    )
    env = jinja2.Environment(loader=loader, autoescape=True)
    base = {
        "base_url": "/hub/",
        "prefix": "/",
        "static_url": lambda path, **kw: f"/hub/static/{path}",
        "user": SimpleNamespace(
            name="ann",
            admin=False,
            spawner=SimpleNamespace(options_form=""),
            all_spawners=lambda include_default=False: [],
        ),
        "default_server": SimpleNamespace(active=False),
        "url": "/hub/spawn/ann",
        "services": [],
        "parsed_scopes": set(),
        "expanded_scopes": set(),
        "xsrf": "x",
        "xsrf_token": "x",
        "version_hash": "",
        "login_url": "/hub/login",
        "logout_url": "/hub/logout",
        "allow_named_servers": True,
        "named_server_limit_per_user": 3,
    }
    return env.get_template("home.html").render(**{**base, **ns})


def test_home_page_escapes_course_titles_and_descriptions():
    row = home_course(course("evil", title=HOSTILE, description=f"about {HOSTILE}"), user("ann"))
    page = render_home(coursehub_courses=lambda: [row])
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert 'href="/hub/launch/evil"' in page and "new-server-name" not in page  # no free-text box


def test_home_page_says_when_there_is_no_course_and_falls_back_without_courses():
    assert 'id="no-courses"' in render_home(coursehub_courses=lambda: [])
    stock = render_home()  # Kubernetes: no coursehub_courses, JupyterHub's own page
    assert "new-server-name" in stock and "coursehub-home" not in stock


def test_config_sets_the_home_and_keeps_both_template_folders():
    c = config_for("jupyterhub: {JupyterHub: {template_paths: [/srv/my-templates]}}")
    paths = c.JupyterHub.template_paths
    assert paths[0] == "/srv/my-templates" and any(Path(p, "home.html").exists() for p in paths)
    assert isinstance(c.JupyterHub.template_vars["coursehub_courses"], HomeCourses)
    assert isinstance(c.JupyterHub.default_url, FirstCourse)
    settings = parse_settings("courses: [{name: b, repo: /srv/b}, {name: a, repo: /srv/a}]")
    assert build(settings, RUNTIME).JupyterHub.default_url.shelf.order == ("b", "a")


def test_the_default_server_keeps_the_course_it_started_with(tmp_path):
    from coursehub.spawner.sandbox import SandboxSpawner

    save_catalog(tmp_path, {"one": course("one", ["ann"]), "two": course("two", ["bob", "ann"])})
    bob = user("bob")
    spawner = SandboxSpawner(user=bob, courses_root=str(tmp_path), course_order=["one", "two"])
    assert spawner.course == "two"  # the first course bob may open
    spawner.pid, spawner.port = 4242, 5555
    state = spawner.get_state()
    assert state["course"] == "two"
    # The roster changes while the server runs; re-attached after a hub restart it keeps its course.
    save_catalog(tmp_path, {"one": course("one", ["ann", "bob"]), "two": course("two", ["bob"])})
    again = SandboxSpawner(user=bob, courses_root=str(tmp_path), course_order=["one", "two"])
    again.load_state(state)
    assert again.course == "two"
    fresh = SandboxSpawner(user=bob, courses_root=str(tmp_path), course_order=["one", "two"])
    assert fresh.course == "one"  # a new start chooses again
    orm = SimpleNamespace(name="nope", server=None, state=None)
    named = SandboxSpawner(user=bob, orm_spawner=orm, courses_root=str(tmp_path), course_order=["one", "two"])
    assert named.record is None  # no course of that name: refused at start, never another course
