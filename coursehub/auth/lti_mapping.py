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
    staff: bool = False  # an Instructor or TeachingAssistant of this course's context

    @staticmethod
    def staff_group(course: str) -> str:
        """The group whose members hold the course's staff role (hubconfig/staff.py)."""
        return f"lti-{course}-staff"

    def groups(self) -> list[str]:
        """'lti-<course>' (a roster for `access: [group:lti-<course>]`), plus instructor groups."""
        if self.course is None:
            return [INSTRUCTORS_GROUP] if self.instructor else []
        names = [f"lti-{self.course}"]
        if self.instructor:
            names += [INSTRUCTORS_GROUP, f"lti-{self.course}-instructors"]
        if self.staff:
            names.append(self.staff_group(self.course))
        return names

    def url(self, hub_base_url: str) -> str:
        """The hub URL to open: the course launch link with the notebook, or the hub's home."""
        if self.course is None:
            return f"{hub_base_url.rstrip('/')}/home"
        query = f"?{urlencode({'path': self.notebook})}" if self.notebook else ""
        return f"{hub_base_url.rstrip('/')}/launch/{self.course}{query}"


# Context (course membership) roles: LTI 1.3 / LIS v2 URIs, LTI 1.1 URNs. Institution and system roles
# (`…/institution/person#Instructor`, `urn:lti:instrole:…`) say what someone is elsewhere in the
# university, not in this course: they never make a course instructor.
CONTEXT_ROLE_PREFIXES = (
    "http://purl.imsglobal.org/vocab/lis/v2/membership#",
    "http://purl.imsglobal.org/vocab/lis/v2/membership/",
    "urn:lti:role:ims/lis/",
)
# Context roles that make someone staff of the course (never admin): LIS's Instructor and its
# TeachingAssistant sub-role (`…/membership/Instructor#TeachingAssistant`), LTI 1.1's TA.
STAFF_ROLES = ("Instructor", "TeachingAssistant", "TA")
_URI_PUNCTUATION = re.compile(r"[#/:]")


def role_names(roles: Iterable[str]) -> set[str]:
    """Names of the context roles among `roles`: 'http://…/membership#Instructor' and
    'urn:lti:role:ims/lis/Instructor' both give 'Instructor' (full strings are kept too); a bare short
    name is a context role (LTI 1.1; deprecated in 1.3); any other URI is ignored."""
    names: set[str] = set()
    for role in roles:
        role = role.strip()
        if role.startswith(CONTEXT_ROLE_PREFIXES):
            names |= {role, _URI_PUNCTUATION.split(role)[-1]}
        elif role and not _URI_PUNCTUATION.search(role):
            names.add(role)
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
    *,
    label_contexts: Mapping[str, str] | None = None,
    param_courses: Iterable[str] = (),
) -> LaunchTarget:
    """The course (by context id; by label or the signed custom parameter only where the config allows
    it), the notebook, and whether the user teaches this course."""
    # Labels and custom parameters are chosen by whoever runs any course in the LMS: on their own they
    # could send a launch into a course whose roster it must not bypass.
    course = contexts.get(context_id) if context_id else None
    if course is None and context_label:
        course = (label_contexts or {}).get(context_label)
    if course is None:
        asked = str(custom.get(course_param) or "")
        course = asked if asked in set(param_courses) else None
    if course is not None and not COURSE.match(course):
        course = None
    notebook = str(custom.get(notebook_param) or "")
    names = role_names(roles)
    instructor = bool(names & set(instructor_roles))
    staff = instructor or bool(names & set(STAFF_ROLES))
    return LaunchTarget(course=course, notebook=notebook, instructor=instructor, staff=staff)
