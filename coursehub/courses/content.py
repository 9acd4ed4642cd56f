"""Course content: a checkout per course under the state directory, replaced atomically."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import CoursehubError
from ..settings import Course

log = logging.getLogger(__name__)
GIT_TIMEOUT = 300


def is_local(repo: str) -> bool:
    """True when the course repo is a folder on this machine rather than a git URL."""
    return "://" not in repo and not repo.startswith("git@") and Path(repo).is_dir()


def suggested_name(repo: str) -> str:
    """A course name derived from a repo URL or folder ('.../Bio-101.git' -> 'bio-101')."""
    import re

    stem = repo.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git").lower()
    name = re.sub(r"[^a-z0-9-]+", "-", stem).strip("-")[:30]
    return name if name[:1].isalpha() else f"c-{name}"[:30]


def fetch(course: Course, courses_root: Path, git_options: tuple[str, ...] = ()) -> Path:
    """The course's content (copy or git checkout) in a staging folder, not yet in service."""
    return fetch_content(course, courses_root, git_options)[0]


def fetch_content(course: Course, courses_root: Path, git_options: tuple[str, ...] = ()) -> tuple[Path, str]:
    """The staging folder with the course's content, and the commit checked out ('' for a plain folder).

    `git_options`: `-c` settings for every git command (e.g. launch.binder.spec.pinned_fetch_options).
    """
    commit = ""
    courses_root.mkdir(parents=True, exist_ok=True)
    os.chmod(courses_root, 0o755)
    staging = courses_root / f".{course.name}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        if is_local(course.repo) and not (Path(course.repo) / ".git").exists():
            shutil.copytree(course.repo, staging, symlinks=True)
        else:
            commit = _git_checkout(course.repo, course.ref, staging, git_options)
    except (OSError, shutil.Error, CoursehubError) as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, CoursehubError):
            raise
        raise CoursehubError(f"course '{course.name}': cannot copy {course.repo}: {exc}") from exc
    shutil.rmtree(staging / ".git", ignore_errors=True)
    _drop_symlinks(staging)
    make_world_readable(staging)
    return staging, commit


def swap_in(staging: Path, courses_root: Path, name: str) -> Path:
    """Put a fetched checkout in service as courses_root/<name>, replacing the old one."""
    target = courses_root / name
    old = courses_root / f".{name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def materialize(course: Course, courses_root: Path) -> Path:
    """Fetch the course's content and put it in service at once."""
    return swap_in(fetch(course, courses_root), courses_root, course.name)


def _drop_symlinks(root: Path) -> None:
    """Remove symlinks from a checkout: copied as root, they could expose any file to students."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                log.warning("course content: dropping symlink %s", path.relative_to(root))
                path.unlink()


def _git_checkout(repo: str, ref: str, dest: Path, git_options: tuple[str, ...] = ()) -> str:
    """Clone `repo` at `ref` into `dest` as the builder, in the build sandbox; the commit checked out.

    Raises saying what failed.
    """
    from .buildbox import BuildBox, seal

    if ref.startswith("-"):
        raise CoursehubError(f"'{ref[:60]}' is not a git ref")
    # A local repository (a folder on this machine, maybe under the host's /tmp) is shown read-only.
    readable = [Path(repo).resolve()] if is_local(repo) else []
    output: list[str] = []
    # The hub's state folder (where `dest` lives) is hidden; `dest` itself is shown writable.
    box = BuildBox(dest, (dest.parent.parent,), None, GIT_TIMEOUT, readable=readable)
    git = ["git", "-c", "protocol.file.allow=always", *git_options]
    steps = [("clone", [*git, "clone", "--quiet", "--", repo, str(dest)])]
    if ref and ref != "HEAD":
        steps.append(("checkout", [*git, "-C", str(dest), "checkout", "--quiet", ref, "--"]))
    with box:
        # Another uid (root) owns a local repository: git refuses it as "dubious" unless the
        # builder's global config (its private home) says otherwise; -c does not count.
        (box.work / "home" / ".gitconfig").write_text("[safe]\n\tdirectory = *\n")
        for name, cmd in steps:
            try:
                box.run(f"git {name}", cmd, output.append)
            except CoursehubError as exc:
                tail = "".join(output).strip()[-500:] or str(exc)
                raise CoursehubError(f"git {name} of {repo} failed: {tail}") from None
        # Asked of git as the builder, in the box: root never runs git in a checkout it did not make.
        head: list[str] = []
        try:
            box.run("git rev-parse", [*git, "-C", str(dest), "rev-parse", "--verify", "HEAD"], head.append)
        except CoursehubError:
            head = []  # unknown: auto_update then waits for the next build
    seal(dest)  # no builder process is left: the checkout becomes root's
    return commit_id("".join(head))


def commit_id(output: str) -> str:
    """The commit id git printed (a 40- or 64-digit hex line), or '' (pure)."""
    for line in reversed(output.splitlines()):
        word = line.strip().lower()
        if len(word) in (40, 64) and all(ch in "0123456789abcdef" for ch in word):
            return word
    return ""


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
