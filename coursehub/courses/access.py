"""Who may open a course: a pure decision on the course's access rule and the user."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from coursehub.names import STAFF_ROLE_PREFIX, TEMPORARY_GROUP

if TYPE_CHECKING:
    from coursehub.courses.catalog import CourseRecord


def group_names(user: Any) -> set[str]:
    """Names of a JupyterHub user's groups (works on the ORM user and the User wrapper)."""
    return {getattr(group, "name", str(group)) for group in getattr(user, "groups", [])}


def is_temporary(user: Any) -> bool:
    """True for anonymous users made by a /hub/tmplogin link."""
    return TEMPORARY_GROUP in group_names(user)


def may_open(access: str | list[str], user: Any) -> bool:
    """'open': anyone; 'accounts': any real (non-temporary) user; a list: that roster only."""
    if access == "open":
        return True
    if is_temporary(user):
        return False
    if access == "accounts":
        return True
    groups = group_names(user)
    return any(entry == user.name or (entry.startswith("group:") and entry[6:] in groups) for entry in access)


def may_update(user: Any, course: str) -> bool:
    """Hub admins, and the course's staff (by their JupyterHub role or their group's), may update it."""
    if user is None:
        return False
    if getattr(user, "admin", False):
        return True
    # LTI TAs hold the staff role through their lti-<course>-staff group, not as their own.
    held = [*getattr(user, "roles", []), *(r for g in getattr(user, "groups", []) for r in g.roles)]
    return f"{STAFF_ROLE_PREFIX}{course}" in {getattr(role, "name", str(role)) for role in held}


UNREGISTERED_PREFIX = "binder-"  # the names launch.binder_spec.server_name_for gives


def is_unregistered(record: Any) -> bool:
    """True for a repository built on demand for anonymous readers (not a course of the config)."""
    return bool(record.name.startswith(UNREGISTERED_PREFIX))


def openable(records: Mapping[str, CourseRecord], order: Sequence[str], user: Any) -> list[CourseRecord]:
    """The courses `user` may open: ready, not built for anonymous readers, allowed by their access rule.

    In `order` (coursehub.yaml's), then the catalog's other courses by name (added since the hub started).
    """
    if user is None:
        return []
    rank = {name: i for i, name in enumerate(order)}
    ordered = sorted(records.values(), key=lambda r: (rank.get(r.name, len(rank)), r.name))
    return [r for r in ordered if r.ready and not is_unregistered(r) and may_open(r.access, user)]
