"""Course staff without a hub: the settings, and the role each course's staff get (scopes as data)."""

from __future__ import annotations

import pytest
from jupyterhub.scopes import _check_scopes_exist
from test_settings import RUNTIME

from coursehub.errors import ConfigError
from coursehub.hubconfig import build
from coursehub.hubconfig.staff import staff_roles
from coursehub.kubernetes.values import build_hub_config
from coursehub.settings.yamlfile import parse_settings

CONFIG = """
courses:
  - {name: bio, repo: /srv/bio, access: [ann, bob, "group:lab"], staff: [tess]}
  - {name: chem, repo: /srv/chem, access: [cat], staff: [tom, tess]}
  - {name: open, repo: /srv/open, access: open}
"""


def test_each_course_with_staff_gets_a_role_over_its_roster_only():
    bio, chem = staff_roles(parse_settings(CONFIG))
    assert bio["name"] == "course-staff-bio" and bio["users"] == ["tess"]
    assert bio["scopes"] == sorted(
        [
            "list:users!user=ann",
            "read:users!user=ann",
            "servers!server=ann/bio",
            "access:servers!server=ann/bio",
            "list:users!user=bob",
            "read:users!user=bob",
            "servers!server=bob/bio",
            "access:servers!server=bob/bio",
            # a group's members are listed, but JupyterHub cannot filter one server of each: none given
            "list:users!group=lab",
            "read:users!group=lab",
        ]
    )
    assert chem["users"] == ["tom", "tess"]
    assert all(scope.endswith(("=cat", "=cat/chem")) for scope in chem["scopes"])
    for role in (bio, chem):
        _check_scopes_exist(role["scopes"])  # JupyterHub's own check of names and filters
        assert not any("admin" in scope or "!" not in scope for scope in role["scopes"])


def test_under_lti_a_courses_instructors_and_tas_hold_its_staff_role_through_their_group():
    settings = parse_settings(
        CONFIG + "auth:\n  type: lti13\n  lti13: {issuer: https://lms.example, client_ids: [x],"
        " authorize_url: https://lms.example/a, jwks_url: https://lms.example/j}\n"
    )
    roles = {role["name"]: role for role in staff_roles(settings)}
    assert set(roles) == {"course-staff-bio", "course-staff-chem"}  # courses with a roster; not 'open'
    assert roles["course-staff-bio"]["groups"] == ["lti-bio-staff"]
    assert roles["course-staff-chem"]["users"] == ["tom", "tess"]
    assert all(role["groups"] == [] for role in staff_roles(parse_settings(CONFIG)))


def test_staff_may_open_their_course():
    bio = parse_settings(CONFIG).courses[0]
    assert bio.roster() == ["ann", "bob", "group:lab", "tess"]


@pytest.mark.parametrize(
    ("course", "message"),
    [
        ("{name: x, repo: /r, access: accounts, staff: [tess]}", "access 'accounts' is everyone's"),
        ("{name: x, repo: /r, access: open, staff: [tess]}", "access 'open' is everyone's"),
        ("{name: x, repo: /r, access: [ann], staff: ['group:ta']}", "staff are usernames"),
        ("{name: x, repo: /r, access: ['ann!user=bob'], staff: [tess]}", "cannot be given to staff"),
        ("{name: x, repo: /r, access: [ann], staff: ['tess/x']}", "cannot be given to staff"),
    ],
)
def test_staff_need_a_roster_and_are_usernames(course, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(f"courses: [{course}]")


def test_both_backends_load_the_roles_beside_coursehubs_own():
    settings = parse_settings(CONFIG)
    local = {role["name"] for role in build(settings, RUNTIME).JupyterHub.load_roles}
    assert {"course-staff-bio", "course-staff-chem", "coursehub-cli"} <= local
    chart_settings = parse_settings(CONFIG.replace("access:", "kubernetes: {image: 'i:1'}, access:"))
    chart = {role["name"] for role in build_hub_config(chart_settings).JupyterHub.load_roles}
    assert {"course-staff-bio", "course-staff-chem"} <= chart
    assert "course-staff-open" not in local | chart
