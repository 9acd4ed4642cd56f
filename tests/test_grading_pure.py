"""nbgrader without a hub: the setting, the exchange's layout, each role's extensions and config, the view."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from coursehub.courses.grading import (
    CONFIG_MOUNT,
    EXCHANGE_MOUNT,
    GRADING_MOUNT,
    OWN_INBOUND_MODE,
    GradingPaths,
    config_files,
    exchange_dirs,
    frame_args,
    grading_binds,
    inbound_dirs,
    nbgrader_config,
    page_config,
    server_extension_args,
    staff_group,
)
from coursehub.errors import ConfigError
from coursehub.settings.yamlfile import parse_settings
from coursehub.spawner.accounts import unix_name
from coursehub.spawner.view import SandboxSpec, sandbox_view

GRADED = """
courses:
  - {name: bio, repo: /srv/bio, access: [ann, bob], staff: [tess], grading: nbgrader}
  - {name: chem, repo: /srv/chem, access: accounts}
"""


def test_a_course_may_grade_with_nbgrader_and_others_do_not():
    settings = parse_settings(GRADED)
    assert [c.grading for c in settings.courses] == ["nbgrader", "none"]


@pytest.mark.parametrize(
    "course",
    [
        "{name: bio, repo: /srv/bio, access: [ann], grading: nbgrader}",  # nobody grades
        "{name: bio, repo: /srv/bio, access: accounts, grading: nbgrader}",
        "{name: bio, repo: /srv/bio, access: [ann], staff: [tess], grading: nbgrader-ish}",
    ],
)
def test_grading_without_staff_or_with_an_unknown_grader_is_refused(course):
    with pytest.raises(ConfigError) as caught:
        parse_settings(f"courses:\n  - {course}\n")
    assert "grading" in str(caught.value)


def test_under_lti_a_roster_is_enough_staff_come_from_launches():
    settings = parse_settings(
        "auth: {type: lti13, lti13: {issuer: https://lms.example, client_ids: [c], "
        "authorize_url: https://lms.example/a, jwks_url: https://lms.example/j}}\n"
        "courses:\n  - {name: bio, repo: /srv/bio, access: [ann], grading: nbgrader}\n"
    )
    assert settings.courses[0].grading == "nbgrader"


def test_the_exchange_gives_students_their_own_inbound_and_feedback_only_by_name():
    modes = dict(exchange_dirs("bio"))
    assert modes[""] & 0o022 == 0  # nobody but root stores anything at the root (nbgrader wanted 0777)
    assert modes["bio"] & 0o002 == 0 and modes["bio/inbound"] & 0o002 == 0
    inbound = dict(inbound_dirs("bio"))
    assert inbound["bio/inbound"] & 0o777 == 0o751  # root writes it; staff list it; students only pass
    assert all(mode & 0o022 == 0 for mode in inbound.values())
    assert OWN_INBOUND_MODE & 0o777 == 0o770  # a student's folder: theirs and the staff group's
    assert modes["bio/feedback"] & 0o007 == 0o001  # by name only
    assert modes["bio/outbound"] & 0o007 == 0o005  # released assignments: read
    assert [path for path, _ in exchange_dirs("bio")][0] == ""  # parents first


def test_staff_groups_never_take_a_users_name_and_fit_unix_limits():
    for course in ("bio", "a" * 30):
        for prefix in ("ch-", "t1a2b-"):
            name = staff_group(course, prefix)
            assert len(name) <= 32 and "_" in name
            assert name != unix_name(name.removeprefix(prefix), prefix)
    assert staff_group("bio", "ch-") != staff_group("bio", "t1a2b-")  # hubs on one machine stay apart
    assert staff_group("a" * 30) != staff_group("a" * 29 + "b")


def test_each_role_gets_its_own_extensions():
    def enabled(role):
        return {a.split(".")[-1].split("=")[0] for a in server_extension_args(role) if a.endswith("=True")}

    assert enabled("off") == set()
    assert enabled("student") == {"assignment_list", "validate_assignment"}
    assert enabled("staff") == {"formgrader", "assignment_list", "course_list", "validate_assignment"}
    assert page_config("off") == {"disabledExtensions": {"@jupyter/nbgrader": True}}
    student = page_config("student")["disabledExtensions"]
    assert "@jupyter/nbgrader:formgrader" in student and "@jupyter/nbgrader:create-assignment" in student
    assert "@jupyter/nbgrader:assignment-list" not in student
    assert page_config("staff") == {"disabledExtensions": {}}


def test_only_staff_servers_with_an_origin_of_their_own_may_be_framed_by_it():
    (switch,) = frame_args("staff", own_origin=True)
    name, _, value = switch.partition("=")
    assert name == "--ServerApp.tornado_settings"
    assert json.loads(value) == {"headers": {"Content-Security-Policy": "frame-ancestors 'self'"}}
    # A shared origin ('self' = every user's server), and students, keep JupyterHub's frame-ancestors 'none'.
    assert frame_args("staff", own_origin=False) == []
    assert frame_args("student", own_origin=True) == frame_args("off", own_origin=True) == []


def test_generated_config_names_the_course_and_its_exchange_and_compiles():
    for role in ("student", "staff"):
        text = nbgrader_config("bio", role)
        compile(text, "nbgrader_config.py", "exec")
        assert "c.CourseDirectory.course_id = 'bio'" in text
        assert f"c.Exchange.root = '{EXCHANGE_MOUNT}'" in text
    staff, student = nbgrader_config("bio", "staff"), nbgrader_config("bio", "student")
    assert "LocatedCollect" in staff and "CourseDirectory.root" in staff
    assert "LocatedCollect" not in student and "CourseDirectory.root" not in student
    # Students' commands do not need a writable exchange root; a submit that fails leaves nothing behind.
    assert "c.ExchangeFactory.submit = Submit" in student and "ensure_root" in student
    assert "ExchangeFactory.submit" not in staff
    assert set(config_files("bio", "off")) == {"nbgrader_config.py", "labconfig/page_config.json"}


def test_only_a_grading_courses_servers_see_its_exchange_students_their_inbound_and_staff_its_folder():
    paths = GradingPaths(Path("/var/lib/coursehub"), "bio", Path("/home/u"))
    base = dict(home=Path("/home/u/ch-ann"), home_root=Path("/home/u"), environment=Path("/env"))

    def binds(role):
        spec = SandboxSpec(**base, grading=tuple(grading_binds(paths, role, "ch-ann")))
        view = sandbox_view(spec)
        return {m.target: (m.source, m.readonly) for m in view if m.kind == "bind"}, view

    off, _ = binds("off")
    assert str(EXCHANGE_MOUNT) not in off and str(GRADING_MOUNT) not in off
    assert off[str(CONFIG_MOUNT)] == (str(paths.config("off")), True)
    student, view = binds("student")
    inbound = str(EXCHANGE_MOUNT / "bio" / "inbound")
    assert student[str(EXCHANGE_MOUNT)] == (str(paths.exchange), False)
    # Her own folder, on the homes' file system (hidden in the sandbox, where her quota counts it).
    assert student[inbound] == ("/home/u/.coursehub-grading/bio/inbound/ch-ann", False)
    targets = [m.target for m in view if m.kind == "bind"]
    assert targets.index(inbound) > targets.index(str(EXCHANGE_MOUNT))  # over the course's inbound
    assert str(GRADING_MOUNT) not in student
    staff, _ = binds("staff")
    assert staff[str(GRADING_MOUNT)] == (str(paths.source), False)
    assert staff[str(CONFIG_MOUNT)] == (str(paths.config("staff")), True)
    assert staff[inbound] == ("/home/u/.coursehub-grading/bio/inbound", False)  # every student's folder
    assert GradingPaths(Path("/s"), "bio").own_inbound("ch-ann") == Path(
        "/s/grading/bio/exchange/bio/inbound/ch-ann"
    )


K8S_GRADED = """
courses:
  - {name: bio, repo: /srv/bio, access: [ann, bob], staff: [tess], grading: nbgrader,
     kubernetes: {image: 'i:1'}}
  - {name: chem, repo: /srv/chem, kubernetes: {image: 'i:2'}}
"""


class _User:
    def __init__(self, name, groups=()):
        self.name, self.groups = name, [type("Group", (), {"name": g})() for g in groups]


class _Spawner:
    def __init__(self, user, name):
        self.user, self.name = user, name


def test_kubernetes_renders_the_ngshare_exchange_service_and_each_roles_extensions():
    from test_kubernetes import schema_errors

    from coursehub.kubernetes import grading as k8s_grading
    from coursehub.kubernetes.values import CourseProfiles, build_values, course_profiles, render_notices

    settings = parse_settings(K8S_GRADED)
    values = build_values(settings)
    assert schema_errors(values) == []
    assert values["hub"]["services"]["ngshare"]["url"] == k8s_grading.NGSHARE_URL
    files = values["singleuser"]["extraFiles"]
    staff_page = files["nbgrader-labconfig-staff"]
    assert staff_page["mountPath"] == "/etc/coursehub/nbgrader/staff/labconfig/page_config.json"
    assert "formgrader" in files["nbgrader-labconfig-student"]["stringData"]
    compile(files["nbgrader-config-staff"]["stringData"], "nbgrader_config.py", "exec")
    assert any("ngshare" in notice for notice in render_notices(settings))

    profiles = CourseProfiles(tuple(course_profiles(settings)), tuple(k8s_grading.graders(settings).items()))

    def override(user, course):
        (profile,) = profiles(_Spawner(user, course))
        return profile["kubespawner_override"]

    staff, student = override(_User("tess"), "bio"), override(_User("ann"), "bio")
    assert "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=True" in staff["args"]
    assert "--ServerApp.jpserver_extensions=nbgrader.server_extensions.formgrader=False" in student["args"]
    assert student["environment"]["JUPYTER_CONFIG_PATH"] == "/etc/coursehub/nbgrader/student"
    assert student["environment"]["COURSEHUB_COURSE"] == "bio"  # the course's own environment kept
    lti_staff = override(_User("lee", groups=["lti-bio-staff"]), "bio")
    assert lti_staff["environment"]["JUPYTER_CONFIG_PATH"] == "/etc/coursehub/nbgrader/staff"
    assert "args" not in override(_User("ann"), "chem")  # a course without grading: nothing of nbgrader
    again = override(_User("ann"), "bio")
    assert again == student  # the profiles themselves are not changed by a call

    plain = build_values(parse_settings("courses: [{name: chem, repo: r, kubernetes: {image: 'i:2'}}]"))
    assert "services" not in plain["hub"] and "extraFiles" not in plain["singleuser"]


def test_the_host_folders_get_their_modes_and_parallel_starts_write_whole_configs(tmp_path):
    """As root (the hub): the exchange's modes, no folder through a symlink, configs written in parallel."""
    from concurrent.futures import ThreadPoolExecutor

    from coursehub.errors import SandboxError
    from coursehub.spawner.exchange import prepare_grading, prepare_own_inbound, write_config

    (tmp_path / "homes").mkdir()
    paths = GradingPaths(tmp_path, "bio", tmp_path / "homes")
    prepare_grading(paths, 4242)
    for relative, mode in exchange_dirs("bio"):
        info = (paths.exchange / relative).lstat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (mode, 0, 4242)
    for relative, mode in inbound_dirs("bio"):
        info = (tmp_path / "homes" / ".coursehub-grading" / relative).lstat()
        assert (stat.S_IMODE(info.st_mode), info.st_uid) == (mode, 0)
    assert paths.inbound.lstat().st_gid == 4242
    assert stat.S_IMODE(paths.source.lstat().st_mode) == 0o2770
    prepare_own_inbound(paths, "ch-ann", 5151, 4242)
    info = paths.own_inbound("ch-ann").lstat()
    assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (OWN_INBOUND_MODE, 5151, 4242)
    (paths.own_inbound("ch-bob")).symlink_to("/etc")
    with pytest.raises(SandboxError, match="not a folder of ch-bob"):
        prepare_own_inbound(paths, "ch-bob", 5152, 4242)
    os.chown(paths.own_inbound("ch-ann"), 5153, 4242)  # someone else's folder by now
    with pytest.raises(SandboxError, match="not a folder of ch-ann"):
        prepare_own_inbound(paths, "ch-ann", 5151, 4242)
    with ThreadPoolExecutor(8) as pool:
        folders = set(pool.map(lambda _: write_config(paths, "staff"), range(32)))
    assert folders == {paths.config("staff")}
    assert (paths.config("staff") / "nbgrader_config.py").read_text() == nbgrader_config("bio", "staff")
    assert sorted(p.name for p in paths.config("staff").iterdir()) == ["labconfig", "nbgrader_config.py"]

    other = GradingPaths(tmp_path, "chem")
    other.root.mkdir(parents=True)
    (other.root / "exchange").symlink_to("/etc")
    with pytest.raises(SandboxError, match="not a folder owned by root"):
        prepare_grading(other, 4242)


def test_staff_are_named_or_come_from_an_lti_launch_everyone_else_is_a_student():
    from coursehub.courses.grading import role_of

    assert role_of(_User("tess"), "bio", ["tess"]) == "staff"
    assert role_of(_User("lee", groups=["lti-bio-staff"]), "bio", ["tess"]) == "staff"
    assert role_of(_User("lee", groups=["lti-chem-staff"]), "bio", ["tess"]) == "student"
    assert role_of(_User("ann"), "bio", ["tess"]) == "student"
