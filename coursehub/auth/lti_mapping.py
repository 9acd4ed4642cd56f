"""LMS launches, pure: which course and notebook a launch asks for, and whether its user teaches."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlencode

from coursehub.settings.base import COURSE_NAME

COURSE = re.compile(COURSE_NAME)
INSTRUCTORS_GROUP = "instructors"


@dataclass(frozen=True)
class LaunchTarget:
    """Where one LMS launch lands, and the hub groups its user joins."""

    course: str | None
    notebook: str
    instructor: bool

    def groups(self) -> list[str]:
        """'lti-<course>' (a roster for `access: [group:lti-<course>]`), plus instructor groups."""
        if self.course is None:
            return [INSTRUCTORS_GROUP] if self.instructor else []
        names = [f"lti-{self.course}"]
        if self.instructor:
            names += [INSTRUCTORS_GROUP, f"lti-{self.course}-instructors"]
        return names

    def url(self, hub_base_url: str) -> str:
        """The hub URL to open: the course launch link with the notebook, or the hub's home."""
        if self.course is None:
            return f"{hub_base_url.rstrip('/')}/home"
        query = f"?{urlencode({'path': self.notebook})}" if self.notebook else ""
        return f"{hub_base_url.rstrip('/')}/launch/{self.course}{query}"


def role_names(roles: Iterable[str]) -> set[str]:
    """Short names of LTI roles: 'http://…/membership#Instructor' and 'urn:lti:role:ims/lis/Instructor'
    both give 'Instructor' (full strings are kept too)."""
    names: set[str] = set()
    for role in roles:
        role = role.strip()
        if role:
            names |= {role, re.split(r"[#/:]", role)[-1]}
    return names


def map_launch(
    contexts: Mapping[str, str],
    context_id: str,
    context_label: str,
    custom: Mapping[str, str],
    roles: Iterable[str],
    course_param: str = "course",
    notebook_param: str = "notebook",
    instructor_roles: Iterable[str] = ("Instructor",),
) -> LaunchTarget:
    """The course (by context id, then label, then the signed custom parameter), notebook and role."""
    course = contexts.get(context_id) or contexts.get(context_label) or custom.get(course_param) or None
    if course is not None and not COURSE.match(course):
        course = None
    notebook = str(custom.get(notebook_param) or "")
    instructor = bool(role_names(roles) & set(instructor_roles))
    return LaunchTarget(course=course, notebook=notebook, instructor=instructor)
