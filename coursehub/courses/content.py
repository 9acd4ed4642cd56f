"""Course content: a checkout per course under the state directory, replaced atomically."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import CoursehubError
from ..settings import Course

log = logging.getLogger(__name__)
GIT_TIMEOUT = 300


def is_local(repo: str) -> bool:
    """True when the course repo is a folder on this machine rather than a git URL."""
    return "://" not in repo and not repo.startswith("git@") and Path(repo).is_dir()


def materialize(course: Course, courses_root: Path) -> Path:
    """Put the course's content at courses_root/<name> (copy or git checkout), swap atomically."""
    courses_root.mkdir(parents=True, exist_ok=True)
    os.chmod(courses_root, 0o755)
    target = courses_root / course.name
    staging = courses_root / f".{course.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if is_local(course.repo) and not (Path(course.repo) / ".git").exists():
            shutil.copytree(course.repo, staging, symlinks=False)
        else:
            _git_checkout(course.repo, course.ref, staging)
    except (OSError, shutil.Error) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise CoursehubError(f"course '{course.name}': cannot copy {course.repo}: {exc}") from exc
    shutil.rmtree(staging / ".git", ignore_errors=True)
    make_world_readable(staging)
    old = courses_root / f".{course.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def _git_checkout(repo: str, ref: str, dest: Path) -> None:
    """Clone `repo` at `ref` into `dest`, or raise an error saying which part failed."""

    def git(*args: str, cwd: Path | None = None) -> None:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        )
        if result.returncode != 0:
            raise CoursehubError(f"git {args[0]} of {repo} failed: {result.stderr.strip()[-500:]}")

    git("clone", "--quiet", repo, str(dest))
    if ref and ref != "HEAD":
        git("checkout", "--quiet", ref, cwd=dest)


def make_world_readable(root: Path) -> None:
    """a+rX and no group/other writes: sandboxed users read this as other uids."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            os.chmod(Path(dirpath) / name, 0o755)
        for name in filenames:
            path = Path(dirpath) / name
            if not path.is_symlink():
                os.chmod(path, 0o755 if os.access(path, os.X_OK) else 0o644)
    os.chmod(root, 0o755)
