"""Launch links, pure: parse and validate what a link asks for, and build the URLs it leads to."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import quote, urlencode

from ..errors import LinkError
from ..settings import COURSE_NAME

_COURSE = re.compile(COURSE_NAME)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def parse_course_name(raw: str) -> str:
    """A course name from a URL, or LinkError(404) when it cannot name any course."""
    # fullmatch: re.match's `$` would accept a trailing newline ("bio\n").
    if not _COURSE.fullmatch(raw or ""):
        raise LinkError(f"'{raw[:40]}' is not a course name", status=404)
    return raw


def parse_path(raw: str | None) -> str:
    """A relative, normalised path inside a course; LinkError(400) for anything that could escape."""
    if raw is None or raw.strip() in ("", "/", "."):
        return ""
    if _CONTROL.search(raw) or "\\" in raw:
        raise LinkError("the path contains control characters or backslashes")
    if raw.startswith("/") or re.match(r"^[A-Za-z]:", raw):
        raise LinkError("the path must be relative to the course folder, not absolute")
    parts = [p for p in raw.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise LinkError("the path may not contain '..'")
    return posixpath.join(*parts) if parts else ""


def locate(checkout: Path, path: str) -> tuple[bool, bool]:
    """(exists, is_dir) of `path` in a course checkout; LinkError when a symlink leads outside."""
    if not path:
        return True, True
    try:
        root = checkout.resolve()
        target = (checkout / path).resolve()
        if target != root and root not in target.parents:
            raise LinkError("the path leads outside the course folder")
        return target.exists(), target.is_dir()
    except OSError as exc:  # a name too long, a symlink loop: a bad link, not a server error
        raise LinkError(f"the path cannot be opened: {exc.strerror}") from None


def lab_path(user: str, course: str, path: str, base_url: str = "/") -> str:
    """Where JupyterLab shows `path` of `course` in the user's server for that course."""
    tree = "/".join(quote(p) for p in [course, *path.split("/")] if p)
    return f"{base_url.rstrip('/')}/user/{quote(user)}/{course}/lab/tree/{tree}"


def launch_link(hub_url: str, course: str, path: str = "") -> str:
    """The link an instructor shares: log in if needed, start the course server, open `path`."""
    query = f"?{urlencode({'path': path})}" if path else ""
    return f"{hub_url.rstrip('/')}/hub/launch/{course}{query}"


def tmplogin_link(hub_url: str, course: str, notebook: str = "") -> str:
    """The link for open courses: an anonymous temporary user, straight to `notebook`."""
    query = {"course": course, **({"notebook": notebook} if notebook else {})}
    return f"{hub_url.rstrip('/')}/hub/tmplogin?{urlencode(query)}"
