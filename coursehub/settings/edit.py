"""Editing coursehub.yaml in place (comments kept) for `coursehub course add/remove`."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from coursehub.errors import ConfigError
from coursehub.settings.yamlfile import parse_settings


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def _load(path: Path) -> Any:
    data = _yaml().load(path.read_text()) if path.exists() else None
    return data if data is not None else {}


def _save(path: Path, data: Any) -> None:
    """Validate the new text first, then replace the file atomically."""
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    text = buffer.getvalue()
    parse_settings(text, str(path))  # never write a file coursehub would refuse
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def add_course(path: Path, course: dict[str, Any]) -> None:
    """Append a course to the `courses:` list of the config file (created if missing)."""
    data = _load(path)
    courses = data.setdefault("courses", [])
    if any(c.get("name") == course["name"] for c in courses):
        raise ConfigError(f"{path} already has a course called '{course['name']}'")
    courses.append(course)
    _save(path, data)


def remove_course(path: Path, name: str) -> None:
    """Delete a course from the config file."""
    data = _load(path)
    courses = data.get("courses") or []
    kept = [c for c in courses if c.get("name") != name]
    if len(kept) == len(courses):
        raise ConfigError(f"{path} has no course called '{name}': see `coursehub course list`")
    data["courses"] = kept
    _save(path, data)
