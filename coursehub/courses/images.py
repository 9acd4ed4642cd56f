"""Course images for Kubernetes: built from the course repo by repo2docker, tagged by content."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coursehub.settings.kubernetes import CHART_JUPYTERHUB, COURSE_SRC, USER_ID, USER_NAME

from ..errors import EnvironmentBuildError
from ..settings import Course, Settings
from .content import materialize
from .environments import server_stack

log = logging.getLogger(__name__)
REPO2DOCKER = "jupyter-repo2docker"
# The files repo2docker reads to build an environment (its buildpacks); notebooks are not here,
# so editing course content does not change the tag.
ENV_FILES = (
    "environment.yml",
    "requirements.txt",
    "runtime.txt",
    "apt.txt",
    "postBuild",
    "start",
    "setup.py",
    "pyproject.toml",
    "Pipfile",
    "Pipfile.lock",
    "install.R",
    "DESCRIPTION",
    "REQUIRE",
    "Project.toml",
    "Manifest.toml",
    "default.nix",
    "Dockerfile",
)
BINDER_DIRS = ("binder", ".binder")  # when present, repo2docker reads only this folder
ENGINE_SOCKETS = ("/var/run/docker.sock", "/run/podman/podman.sock")
BUILD_TIMEOUT = 3600


@dataclass(frozen=True)
class ImageSpec:
    """Everything that decides a course image: its environment files and the server stack."""

    files: tuple[tuple[str, str], ...]  # (path in repo, sha256 of content), sorted
    stack: tuple[str, ...]


def image_tag(spec: ImageSpec) -> str:
    """A short content hash naming the image: same environment, same tag."""
    text = json.dumps({"files": list(spec.files), "stack": sorted(spec.stack)})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_stack() -> tuple[str, ...]:
    """Packages added to every course image: the local pins, with the chart hub's JupyterHub."""
    rest = tuple(p for p in server_stack() if not p.startswith("jupyterhub=="))
    return (f"jupyterhub=={CHART_JUPYTERHUB}", *rest)


def read_image_spec(checkout: Path, stack: tuple[str, ...] | None = None) -> ImageSpec:
    """The ImageSpec of a course checkout (reads the files repo2docker would read)."""
    root = next((checkout / d for d in BINDER_DIRS if (checkout / d).is_dir()), checkout)
    files = []
    for name in ENV_FILES:
        path = root / name
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            files.append((str(path.relative_to(checkout)), digest))
    return ImageSpec(files=tuple(sorted(files)), stack=stack or image_stack())


def course_image(registry: str, course: Course, spec: ImageSpec) -> str:
    """<registry>/<course>:<tag> for a course built into `registry`."""
    return f"{registry.rstrip('/')}/{course.name}:{image_tag(spec)}"


def is_remote(repo: str) -> bool:
    """True for a git URL (something a cluster can fetch), False for a local folder."""
    return "://" in repo or repo.startswith("git@")


def appendix(stack: tuple[str, ...]) -> str:
    """Dockerfile lines repo2docker appends: coursehub's server stack at its pinned versions."""
    pins = " ".join(shlex.quote(p) for p in stack)
    return f"RUN python3 -m pip install --no-cache-dir {pins}"


def repo2docker_command(
    course: Course, image: str, push: bool, stack: tuple[str, ...] | None = None
) -> list[str]:
    """The jupyter-repo2docker command that builds (and with `push`, pushes) `image`."""
    cmd = [
        REPO2DOCKER,
        "--no-run",
        "--image-name",
        image,
        "--user-name",
        USER_NAME,
        "--user-id",
        str(USER_ID),
        # Not the home: the user's volume is mounted there and would hide it.
        "--target-repo-dir",
        COURSE_SRC,
        "--appendix",
        appendix(stack or image_stack()),
    ]
    if is_remote(course.repo):
        cmd += ["--ref", course.ref]
    if push:
        cmd.append("--push")
    return [*cmd, course.repo]


def find_container_engine() -> str | None:
    """The socket of a running Docker-compatible engine ($DOCKER_HOST, docker, podman), if any."""
    candidates = [os.environ.get("DOCKER_HOST", "").removeprefix("unix://"), *ENGINE_SOCKETS]
    if os.environ.get("XDG_RUNTIME_DIR"):
        candidates.append(f"{os.environ['XDG_RUNTIME_DIR']}/podman/podman.sock")
    for path in filter(None, candidates):
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return path
        except OSError:
            continue
    return None


@dataclass(frozen=True)
class BuildResult:
    """What `build_image` did: the image name and command, and whether it ran."""

    image: str
    command: list[str]
    built: bool
    reason: str = ""


def resolve_image(course: Course, registry: str, workdir: Path) -> str:
    """The image name of `course` in `registry`, from a fresh checkout of its repo in `workdir`."""
    checkout = materialize(course, workdir)
    return course_image(registry, course, read_image_spec(checkout))


def build_image(course: Course, registry: str, push: bool) -> BuildResult:
    """Build (and push) the course image; without a container engine, say so and build nothing."""
    with tempfile.TemporaryDirectory(prefix="coursehub-image-") as tmp:
        image = resolve_image(course, registry, Path(tmp))
    command = repo2docker_command(course, image, push)
    engine = find_container_engine()
    if engine is None:
        return BuildResult(
            image,
            command,
            False,
            f"no container engine: neither $DOCKER_HOST nor {' / '.join(ENGINE_SOCKETS)} is a socket here",
        )
    if shutil.which(REPO2DOCKER) is None:
        return BuildResult(
            image,
            command,
            False,
            f"{REPO2DOCKER} is not installed: pip install jupyter-repo2docker",
        )
    _run(command, {**os.environ, "DOCKER_HOST": f"unix://{engine}"})
    return BuildResult(image, command, True)


def _run(command: list[str], env: dict[str, str]) -> None:
    """Run repo2docker, its output going to the terminal; raise with the command on failure."""
    log.info("running %s", shlex.join(command))
    try:
        code = subprocess.run(command, env=env, timeout=BUILD_TIMEOUT).returncode
    except subprocess.TimeoutExpired:
        code = -1
    if code != 0:
        raise EnvironmentBuildError(f"image build failed (exit {code}): {shlex.join(command)}")


def resolve_images(
    settings: Settings,
    on_course: Callable[[Course], None] | None = None,
) -> dict[str, str]:
    """Images of the courses that name none, found in kubernetes.image_registry (clones repos)."""
    registry = settings.kubernetes.image_registry
    missing = [c for c in settings.courses if not (c.kubernetes and c.kubernetes.image)]
    if not registry or not missing:
        return {}
    found = {}
    with tempfile.TemporaryDirectory(prefix="coursehub-images-") as tmp:
        for course in missing:
            if on_course:
                on_course(course)
            found[course.name] = resolve_image(course, registry, Path(tmp))
    return found
