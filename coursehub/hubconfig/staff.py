"""Course staff who are not admins: one JupyterHub role per course, scoped to that course's roster."""

from __future__ import annotations

from coursehub.auth.lti_mapping import LaunchTarget
from coursehub.names import STAFF_ROLE_PREFIX
from coursehub.settings import Course, Settings

__all__ = ["STAFF_ROLE_PREFIX", "staff_role", "staff_roles"]


def staff_roles(settings: Settings) -> list[dict]:
    """A role per course with staff: its roster's users and their servers of this course, nothing else.

    Under LTI, the course's Instructors and TAs (the `lti-<course>-staff` group the launch puts them in)
    hold the role of every course with a roster, whether or not the config names staff.
    """
    lti = settings.auth.type in ("lti13", "lti11")
    return [
        staff_role(course, lti)
        for course in settings.courses
        if course.staff or (lti and isinstance(course.access, list))
    ]


def staff_role(course: Course, lti: bool = False) -> dict:
    """List and read the roster's users; open, start and stop their server of this course.

    A username gets its one server (`!server=<user>/<course>`). A `group:` entry gets list and read of
    that group's users only: JupyterHub's filters cannot name one server of every member of a group,
    and the group's members' other servers must stay out of reach.
    """
    assert isinstance(course.access, list)  # settings refuse staff without a roster
    scopes: list[str] = []
    for entry in course.access:
        if entry.startswith("group:"):
            group = entry.removeprefix("group:")
            scopes += [f"list:users!group={group}", f"read:users!group={group}"]
        else:
            server = f"{entry}/{course.name}"
            scopes += [
                f"list:users!user={entry}",
                f"read:users!user={entry}",
                f"servers!server={server}",  # start, stop, read
                f"access:servers!server={server}",  # open it in the browser
            ]
    return {
        "name": f"{STAFF_ROLE_PREFIX}{course.name}",
        "description": f"Staff of course {course.name}: its students and their servers of it",
        "scopes": sorted(set(scopes)),
        "users": list(course.staff),
        "groups": [LaunchTarget.staff_group(course.name)] if lti else [],
    }
