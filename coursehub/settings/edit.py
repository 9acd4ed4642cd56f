"""Editing coursehub.yaml in place (comments and order kept) for `course add/remove` and `config set/unset`.

ruamel.yaml rather than PyYAML: only a round-trip loader keeps the admin's comments and key order.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap

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
    """Validate the new text first, then replace the file atomically (its mode kept; folders created)."""
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    text = buffer.getvalue()
    parse_settings(text, str(path))  # never write a file coursehub would refuse
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
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


def split_key(key: str) -> list[str]:
    """'limits.memory' -> ['limits', 'memory']; refuses empty parts."""
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ConfigError(f"'{key}' is not a key: write sections and fields with dots, e.g. limits.memory")
    return parts


def parse_value(text: str) -> Any:
    """A command-line VALUE read as YAML: 2G stays text, 3 a number, [a, b] a list, true a boolean."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"'{text}' is not a YAML value: {exc}") from None


def _parent(data: Any, parts: list[str], key: str, create: bool) -> Any:
    """The mapping that holds the last part of `key`; `courses.<name>` picks the course called <name>."""
    node = data
    for i, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            match = [item for item in node if isinstance(item, dict) and item.get("name") == part]
            if not match:
                raise ConfigError(f"{key}: there is no course called '{part}' (see `coursehub course list`)")
            node = match[0]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{key}: '{'.'.join(parts[:i])}' is a value, not a section")
        if part not in node or node[part] is None:
            if not create:
                raise ConfigError(f"{key} is not set in the config file")
            node[part] = CommentedMap()
        node = node[part]
    if not isinstance(node, dict):
        what = "a list: name an entry, e.g. courses.<name>.title" if isinstance(node, list) else "a value"
        raise ConfigError(f"{key}: '{'.'.join(parts[:-1])}' is {what}")
    return node


def set_value(path: Path, key: str, value: Any) -> None:
    """Set `key` (dotted) to `value` in the config file (created if missing); refused if invalid."""
    parts = split_key(key)
    data = _load(path)
    _parent(data, parts, key, create=True)[parts[-1]] = value
    _save(path, data)


def unset_value(path: Path, key: str) -> None:
    """Remove `key` (dotted) from the config file, so its default applies; sections left empty go too."""
    parts = split_key(key)
    data = _load(path)
    parent = _parent(data, parts, key, create=False)
    if parts[-1] not in parent:
        raise ConfigError(f"{key} is not set in {path}")
    del parent[parts[-1]]
    # Drop sections the removal emptied (never a course entry: a course without fields is an error to see).
    for end in range(len(parts) - 1, 0, -1):
        try:
            holder = _parent(data, parts[:end], key, create=False)
        except ConfigError:  # a list on the way (courses.<name>): nothing to drop above the entry
            break
        if holder.get(parts[end - 1]) == {}:
            del holder[parts[end - 1]]
        else:
            break
    _save(path, data)
