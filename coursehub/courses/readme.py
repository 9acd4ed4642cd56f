"""A course's one-paragraph description, from its README (untrusted text: shown escaped, never as HTML)."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

README_NAMES = ("README.md", "README.rst", "README.txt", "README")
MAX_CHARS = 300
READ_BYTES = 64 * 1024  # the first paragraph is near the top; a huge README is not read whole

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
_RST_UNDERLINE = re.compile(r"^([=\-~^*#+`'\".])\1{2,}$")


def summary(text: str, limit: int = MAX_CHARS) -> str:
    """The first paragraph of prose (headings, badges, tags and code skipped), at most `limit` chars."""
    in_fence = False
    paragraph: list[str] = []
    lines = text.splitlines()
    for i, raw in enumerate(lines):
        line = raw.strip()
        if line.startswith(("```", "~~~")):
            in_fence = not in_fence
            continue
        underline = i + 1 < len(lines) and _RST_UNDERLINE.match(lines[i + 1].strip())
        if in_fence or line.startswith("#") or _RST_UNDERLINE.match(line) or underline:
            if paragraph:
                break
            continue
        plain = _SPACE.sub(" ", _TAG.sub("", _LINK.sub(r"\1", _IMAGE.sub("", line)))).strip()
        if not plain:
            if paragraph:
                break
            continue
        paragraph.append(plain)
    words = " ".join(paragraph)
    if len(words) <= limit:
        return words
    return words[: limit - 1].rsplit(" ", 1)[0] + "…"


def readme_summary(course_dir: Path) -> str:
    """The summary of the course's README, or '' when it has none (a symlink is never followed)."""
    for name in README_NAMES:
        try:
            fd = os.open(course_dir / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            continue
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            return summary(f.read(READ_BYTES).decode("utf-8", "replace"))
    return ""
