"""Building a course: fetch content, build its environment, then put both in service at once."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import CoursehubError, EnvironmentBuildError
from ..paths import StatePaths
from ..settings import Course, Settings
from ..spawner.forkclient import stop_forkservers
from . import buildnet, catalog, content
from .environments import (
    EnvSpec,
    ensure_environment,
    find_user_python,
    server_stack,
    stack_constraints,
    stack_spec,
)
from .readme import readme_summary
from .spec import CourseEnvSpec, content_digest, read_spec

log = logging.getLogger(__name__)
APT_TIMEOUT = 1800


def build_course(
    course: Course,
    settings: Settings,
    paths: StatePaths,
    on_line: Callable[[str], None] | None = None,
    git_options: tuple[str, ...] = (),
    untrusted: bool = False,
) -> catalog.CourseRecord:
    """Fetch, build and swap in `course`; on failure the previous build stays in service.

    `untrusted`: a repository no admin registered (Binder): refused before the fetch when its build
    cannot have a network namespace (buildnet.decide).
    """
    started = time.monotonic()
    network = buildnet.from_settings(settings.network, untrusted)
    if untrusted:
        buildnet.decide(network, buildnet.problems())
    staging, commit = content.fetch_content(course, paths.courses, git_options)
    try:
        spec = read_spec(staging)
        if spec.apt_packages and not course.allow_apt:
            raise EnvironmentBuildError(apt_refusal(course.name, spec.apt_packages))
        stack = stack_environment(spec, settings, paths, on_line)
        env_spec = environment_spec(spec, staging, settings, stack_constraints(stack))
        if spec.apt_packages:
            _apt_install(spec.apt_packages, on_line)
        hidden = tuple(settings.sandbox.hidden_paths)
        # A course that adds packages starts from its stack environment (see environments._seed).
        seed = stack if env_spec.constraints else None
        environment = ensure_environment(
            env_spec, paths.envs, on_line, hidden=hidden, seed=seed, network=network
        )
    except CoursehubError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _record_failure(paths, course, str(exc))
        raise
    checkout = content.swap_in(staging, paths.courses, course.name)
    record = catalog.CourseRecord(
        name=course.name,
        content=str(checkout),
        environment=str(environment),
        stack=str(stack),
        commit=commit,
        built_at=time.time(),
        build_seconds=round(time.monotonic() - started, 1),
        notes=list(spec.notes),
    )
    describe(record, course, settings)
    previous = catalog.load_catalog(paths.courses).get(course.name)
    catalog.update_record(paths.courses, record)
    if previous is not None:
        retire_environment(paths, Path(previous.environment))
    return record


def retire_environment(paths: StatePaths, environment: Path) -> None:
    """Stop the fork server of an environment no course uses any more (running servers stay).

    Its next user, if any (a server without a course), gets a fresh fork server on demand.
    """
    records = catalog.load_catalog(paths.courses).values()
    in_use = {Path(r.environment) for r in records} | {Path(r.stack) for r in records if r.stack}
    if environment not in in_use:
        stop_forkservers(paths.run, environment.name)


def describe(record: catalog.CourseRecord, course: Course, settings: Settings) -> None:
    """Copy what coursehub.yaml says of a course (title, access, limits, folders) and its README's summary."""
    record.title = course.title or course.name
    record.description = course.description or (
        readme_summary(Path(record.content)) if record.content else ""
    )
    record.access = course.roster()
    record.default_notebook = course.default_notebook or ""
    record.repo, record.ref = course.repo, course.ref
    record.limits = settings.course_limits(course).model_dump()
    record.shared_data = str(course.shared_data or "")
    record.scratch = str(course.scratch or "")
    if course.scratch is not None:
        # Shared scratch: everyone writes, nobody deletes others' files (sticky bit, like /tmp).
        course.scratch.mkdir(parents=True, exist_ok=True)
        os.chmod(course.scratch, 0o1777)


def stack_environment(
    spec: CourseEnvSpec, settings: Settings, paths: StatePaths, on_line: Callable[[str], None] | None = None
) -> Path:
    """The stack environment for the course's Python (the fork server's; cloned from the machine's store)."""
    python = _python_for(spec.python_version, settings.sandbox.python)
    network = buildnet.from_settings(settings.network)
    return ensure_environment(stack_spec(str(python)), paths.envs, on_line, network=network)


def environment_spec(
    spec: CourseEnvSpec, checkout: Path, settings: Settings, constraints: str = ""
) -> EnvSpec:
    """The uv environment a course's files call for: coursehub's server stack at the stack's versions (pure).

    `constraints`: the stack environment's exact versions. The root fork server imports the stack from
    that environment, never from the course's; a course that needs other versions of it fails its
    build, naming the conflict.
    """
    python = _python_for(spec.python_version, settings.sandbox.python)
    if not (spec.requirements or spec.install_self or spec.post_build):
        return stack_spec(str(python))  # a course that adds nothing runs from the stack environment
    packages = [*server_stack(), *spec.requirements]
    extra = ""
    if spec.install_self:
        packages.append(str(checkout))
        extra = content_digest(checkout)
    post_build = checkout / "binder" / "postBuild"
    if not post_build.exists():
        post_build = checkout / "postBuild"
    if spec.post_build:
        extra += ":" + content_digest(post_build.parent)
    return EnvSpec(
        python=str(python),
        packages=tuple(packages),
        extra=extra,
        post_build=post_build if spec.post_build else None,
        source=checkout,
        constraints=constraints,
    )


def _python_for(version: tuple[int, int] | None, configured: Path | None) -> Path:
    """An interpreter users can run, of the version runtime.txt asks for when given."""
    if version is None:
        return find_user_python(configured)
    wanted = f"python{version[0]}.{version[1]}"
    for candidate in (Path("/usr/bin") / wanted, Path("/usr/local/bin") / wanted):
        if candidate.exists():
            return find_user_python(candidate)
    raise EnvironmentBuildError(
        f"the course asks for Python {version[0]}.{version[1]} (runtime.txt or environment.yml) "
        f"but no {wanted} is installed here; install it (e.g. apt-get install {wanted}) or "
        "change the course's runtime.txt"
    )


def apt_refusal(name: str, packages: tuple[str, ...]) -> str:
    """Why a course's apt.txt was not installed, and how an admin allows it (pure)."""
    return (
        f"course '{name}': apt.txt asks for system packages ({', '.join(packages)}), which are "
        "installed as root for the whole machine; coursehub does that only for courses the admin "
        f"trusts: set `allow_apt: true` on course '{name}' in coursehub.yaml, or drop apt.txt"
    )


def _apt_install(packages: tuple[str, ...], on_line: Callable[[str], None] | None) -> None:
    """Install apt.txt's packages system-wide (only possible as root)."""
    if os.geteuid() != 0:
        raise EnvironmentBuildError(
            f"apt.txt asks for {', '.join(packages)}: run the build as root to install them"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "--", *packages]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env)
    if on_line:
        for line in result.stdout.splitlines()[-5:]:
            on_line(line)
    if result.returncode != 0:
        raise EnvironmentBuildError(
            f"environment build failed at step 'apt.txt': {result.stderr.strip()[-800:]}"
        )


def _record_failure(paths: StatePaths, course: Course, message: str) -> None:
    """Remember why the last build failed, without touching what is in service."""
    records = catalog.load_catalog(paths.courses)
    record = records.get(course.name) or catalog.CourseRecord(name=course.name)
    record.last_error = message
    catalog.update_record(paths.courses, record)


def ensure_course(
    course: Course,
    settings: Settings,
    paths: StatePaths,
    on_line: Callable[[str], None] | None = None,
) -> catalog.CourseRecord:
    """The course's record, building it only when it was never built (as `up` needs)."""
    record = catalog.load_catalog(paths.courses).get(course.name)
    if record is not None and record.ready and _current(record, settings, paths):
        describe(record, course, settings)
        catalog.update_record(paths.courses, record)
        return record
    return build_course(course, settings, paths, on_line)


def _current(record: catalog.CourseRecord, settings: Settings, paths: StatePaths) -> bool:
    """True when the record's environment is still what its files and coursehub's pins ask for."""
    checkout, environment = Path(record.content), Path(record.environment)
    if not (checkout.is_dir() and environment.is_dir() and record.stack):
        return False
    try:
        spec = read_spec(checkout)
        stack = stack_environment(spec, settings, paths)
        wanted = environment_spec(spec, checkout, settings, stack_constraints(stack))
    except (CoursehubError, OSError):
        return False
    return environment.name == wanted.digest and Path(record.stack) == stack


def sync_catalog(settings: Settings, paths: StatePaths, on_line=None) -> list[catalog.CourseRecord]:
    """Make the catalog match coursehub.yaml: build what is missing, forget what was removed."""
    records = [ensure_course(course, settings, paths, on_line) for course in settings.courses]
    names = {course.name for course in settings.courses}
    for name in set(catalog.load_catalog(paths.courses)) - names:
        forget_course(paths, name)
    return records


def forget_course(paths: StatePaths, name: str) -> None:
    """Take a course out of the catalog, and its environment's fork server out of service."""
    record = catalog.load_catalog(paths.courses).get(name)
    catalog.remove_record(paths.courses, name)
    if record is not None:
        retire_environment(paths, Path(record.environment))
