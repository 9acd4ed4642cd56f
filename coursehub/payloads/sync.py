"""Merge course content into a student's folder with nbgitpuller's rules (stdlib only).

Runs inside the student's sandbox, as the student, at every server start:
  python sync.py SOURCE DEST
- files new upstream appear;
- files the student never changed follow upstream changes;
- files the student changed are never overwritten;
- files deleted upstream stay if the student still has them.
The hashes of what was last copied live in DEST/.coursehub-sync.json.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

MANIFEST = ".coursehub-sync.json"


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def plan(source: Path, dest: Path, synced: dict[str, str]) -> list[tuple[str, str]]:
    """(relative path, action) pairs; action is 'copy', 'update', 'keep' or 'skip-symlink'."""
    actions = []
    for path in sorted(source.rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        rel = str(path.relative_to(source))
        target = dest / rel
        if _through_symlink(dest, target):
            actions.append((rel, "skip-symlink"))
        elif not target.exists():
            actions.append((rel, "copy"))
        elif synced.get(rel) == file_hash(target) and synced[rel] != file_hash(path):
            actions.append((rel, "update"))  # untouched by the student: follow upstream
        else:
            actions.append((rel, "keep"))
    return actions


def _through_symlink(dest: Path, target: Path) -> bool:
    """True when `target` or a folder between it and `dest` is a symlink (never write through)."""
    path = target
    while path != dest:
        if path.is_symlink():
            return True
        path = path.parent
    return False


def sync(source: Path, dest: Path) -> dict[str, int]:
    """Apply `plan`; return counts per action."""
    dest.mkdir(parents=True, exist_ok=True)
    manifest = dest / MANIFEST
    try:
        synced = json.loads(manifest.read_text())
    except (OSError, ValueError):
        synced = {}
    counts: dict[str, int] = {}
    for rel, action in plan(source, dest, synced):
        counts[action] = counts.get(action, 0) + 1
        if action in ("copy", "update"):
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / rel, target)
            synced[rel] = file_hash(target)
    manifest.write_text(json.dumps(synced, indent=0))
    return counts


def link(dest: Path, name: str, target: str) -> None:
    """A link in the course folder to a shared folder, unless the student has something there."""
    path = dest / name
    if os.path.isdir(target) and not path.exists() and not path.is_symlink():
        path.symlink_to(target)


def main(argv: list[str]) -> int:
    source, dest = Path(argv[1]), Path(argv[2])
    if source.is_dir():
        counts = sync(source, dest)
        print("coursehub sync:", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    # "shared", not "data": course repositories often have a data/ folder of their own.
    link(dest, "shared", "/run/coursehub/data")
    link(dest, "scratch", "/run/coursehub/scratch")
    # Staff of a course with grading: nbgrader only: their course folder (courses/grading.py).
    link(dest, "grading", "/run/coursehub/grading")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
