"""What a course repository asks for, read from repo2docker's files (pure apart from reading them)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import EnvironmentBuildError

_RUNTIME = re.compile(r"^\s*python-(\d+)\.(\d+)(?:\.\d+)?\s*$")
# Debian policy 5.6.1: lowercase letters, digits, + - . ; at least two characters, alphanumeric first.
_DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_CONDA_PYTHON = re.compile(r"^python\s*[=<>]*\s*(\d+)\.(\d+)")


@dataclass(frozen=True)
class CourseEnvSpec:
    """Everything a course's files say about its environment."""

    requirements: tuple[str, ...] = ()
    python_version: tuple[int, int] | None = None
    install_self: bool = False  # pyproject.toml / setup.py: install the course as a package
    apt_packages: tuple[str, ...] = ()
    post_build: bool = False
    notes: tuple[str, ...] = field(default=())  # what cannot be honoured locally, said plainly


def read_spec(course_dir: Path) -> CourseEnvSpec:
    """Read requirements.txt, environment.yml, pyproject/setup.py, runtime.txt, apt.txt, postBuild."""
    base = _binder_dir(course_dir)
    requirements: list[str] = []
    notes: list[str] = []
    python_version = None
    if (base / "requirements.txt").is_file():
        requirements += _requirements(base / "requirements.txt")
    for name in ("environment.yml", "environment.yaml"):
        if (base / name).is_file():
            pip, conda_python, conda_only = _conda_env(base / name)
            requirements += pip
            python_version = conda_python or python_version
            if conda_only:
                notes.append(
                    f"{name}: conda-only packages are not installed by the local (uv) builder: "
                    f"{', '.join(conda_only)}; list pip equivalents under 'pip:' or in "
                    "requirements.txt (on Kubernetes, repo2docker installs them)"
                )
    if (base / "runtime.txt").is_file():
        python_version = _runtime(base / "runtime.txt") or python_version
    apt = apt_packages(_lines(base / "apt.txt")) if (base / "apt.txt").is_file() else ()
    return CourseEnvSpec(
        requirements=tuple(requirements),
        python_version=python_version,
        install_self=(course_dir / "pyproject.toml").is_file() or (course_dir / "setup.py").is_file(),
        apt_packages=apt,
        post_build=(base / "postBuild").is_file(),
        notes=tuple(notes),
    )


def apt_packages(lines: list[str]) -> tuple[str, ...]:
    """apt.txt's lines, each checked to be a Debian package name (no paths, options or versions)."""
    for line in lines:
        if not _DEBIAN_PACKAGE.fullmatch(line):
            raise EnvironmentBuildError(
                f"apt.txt: {line[:80]!r} is not a Debian package name (one name per line, "
                "like 'graphviz'; no paths, URLs, options or versions)"
            )
    return tuple(lines)


def _binder_dir(course_dir: Path) -> Path:
    """repo2docker reads `binder/` or `.binder/` instead of the root when present."""
    for name in ("binder", ".binder"):
        if (course_dir / name).is_dir():
            return course_dir / name
    return course_dir


def _lines(path: Path) -> list[str]:
    """Non-empty, non-comment lines."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def _requirements(path: Path) -> list[str]:
    """requirements.txt lines; options that reach outside the file (-r, -e, --index-url) refused."""
    lines = _lines(path)
    for line in lines:
        if line.startswith("-"):
            raise EnvironmentBuildError(
                f"{path.name}: option lines such as '{line}' are not supported; list packages only"
            )
    return lines


def _conda_env(path: Path) -> tuple[list[str], tuple[int, int] | None, list[str]]:
    """(pip packages, python version, conda-only packages) of an environment.yml."""
    try:
        data = yaml.safe_load(path.read_text(errors="replace")) or {}
    except yaml.YAMLError as exc:
        raise EnvironmentBuildError(f"{path.name} is not valid YAML: {exc}") from exc
    deps = data.get("dependencies") if isinstance(data, dict) else None
    if not isinstance(deps or [], list) or not isinstance(data, dict):
        raise EnvironmentBuildError(f"{path.name} must be a mapping with a 'dependencies:' list")
    pip: list[str] = []
    conda_only: list[str] = []
    python = None
    for dep in deps or []:
        if isinstance(dep, dict):
            pips = dep.get("pip") or []
            if not isinstance(pips, list):
                raise EnvironmentBuildError(f"{path.name}: 'pip:' must be a list of packages")
            pip += [str(p) for p in pips]
        elif (match := _CONDA_PYTHON.match(str(dep))) is not None:
            python = (int(match.group(1)), int(match.group(2)))
        elif str(dep).strip() not in ("pip", "python"):
            conda_only.append(str(dep))
    return pip, python, conda_only


def _runtime(path: Path) -> tuple[int, int] | None:
    """'python-3.11' in runtime.txt -> (3, 11); other runtimes (R) are not supported locally."""
    text = path.read_text(errors="replace").strip()
    match = _RUNTIME.fullmatch(text)
    if match is None:
        raise EnvironmentBuildError(
            f"runtime.txt says '{text}': only python-X.Y is supported by the local builder"
        )
    return int(match.group(1)), int(match.group(2))


def content_digest(course_dir: Path) -> str:
    """A hash of the course's files (for environments that install the course itself)."""
    digest = hashlib.sha256()
    for path in sorted(p for p in course_dir.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(str(path.relative_to(course_dir)).encode() + b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
