"""The catalog: what each course's last successful build put in service (read by the hub at spawn)."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CATALOG = "catalog.json"


@dataclass
class CourseRecord:
    """One course as it is in service now."""

    name: str
    title: str = ""
    description: str = ""  # one paragraph for the home page (config, else the README: untrusted text)
    access: str | list[str] = "accounts"
    default_notebook: str = ""
    repo: str = ""  # where the content comes from (Binder requests are matched against it)
    ref: str = ""
    commit: str = ""  # the commit the content was checked out at (empty: a folder, or unknown)
    limits: dict[str, Any] = field(default_factory=dict)
    content: str = ""  # the checkout servers merge into homes
    environment: str = ""  # the uv environment servers run from
    stack: str = ""  # the stack environment the fork server imports from (same versions, no course code)
    shared_data: str = ""  # host folder shown read-only
    scratch: str = ""  # host folder shared read-write
    built_at: float = 0.0
    build_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    last_error: str = ""  # the last failed build, while the previous one stays in service

    @property
    def ready(self) -> bool:
        """True when the course has an environment in service (its content may live in pods)."""
        return bool(self.environment)


def catalog_path(courses_root: Path) -> Path:
    """Where the catalog lives."""
    return courses_root / CATALOG


def load_catalog(courses_root: Path) -> dict[str, CourseRecord]:
    """Every course record; empty when nothing was built yet."""
    path = catalog_path(courses_root)
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {name: CourseRecord(**record) for name, record in data.items()}


def save_catalog(courses_root: Path, records: dict[str, CourseRecord]) -> None:
    """Write the catalog atomically (readers never see half a file)."""
    courses_root.mkdir(parents=True, exist_ok=True)
    data = {name: asdict(record) for name, record in sorted(records.items())}
    fd, tmp = tempfile.mkstemp(dir=courses_root, prefix=".catalog.")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, catalog_path(courses_root))


def update_record(courses_root: Path, record: CourseRecord) -> None:
    """Replace one course's record."""
    records = load_catalog(courses_root)
    records[record.name] = record
    save_catalog(courses_root, records)


def remove_record(courses_root: Path, name: str) -> None:
    """Forget a course."""
    records = load_catalog(courses_root)
    records.pop(name, None)
    save_catalog(courses_root, records)
