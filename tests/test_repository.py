"""The repository stands alone: no file reaches outside the clone, nothing machine-specific is committed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Built from pieces so that this file does not match itself.
OUTSIDE = ("..", "/shared")
FOREIGN_NOTES = "FA" + "CTS"


def tracked_files() -> list[Path]:
    """Every file git tracks in this clone."""
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True, timeout=60
    ).stdout.decode()
    return [REPO / name for name in out.split("\0") if name]


def test_no_file_reads_a_folder_beside_the_clone():
    needle = "".join(OUTSIDE)
    offenders = []
    for path in tracked_files():
        if path.is_symlink() or not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", "replace")
        if needle in text or FOREIGN_NOTES + " §" in text or f"{FOREIGN_NOTES}'" in text:
            offenders.append(str(path.relative_to(REPO)))
    assert offenders == [], f"files that cite what is not in the repository: {offenders}"


def test_no_symlink_points_outside_the_clone():
    outside = []
    for path in tracked_files():
        if path.is_symlink():
            target = (path.parent / path.readlink()).resolve()
            if not target.is_relative_to(REPO) or path.readlink().is_absolute():
                outside.append(str(path.relative_to(REPO)))
    assert outside == [], f"symlinks to outside the clone: {outside}"


def test_the_suite_keeps_each_group_on_one_worker(request):
    """conftest's xdist groups reach xdist (its own hook read the marks before ours had set them)."""
    if not hasattr(request.config, "workerinput"):
        pytest.skip("the groups matter under xdist only: ./run test runs it so")
    assert request.node.nodeid.endswith("@tests/test_repository.py"), request.node.nodeid
