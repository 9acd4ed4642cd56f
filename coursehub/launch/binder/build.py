"""Repositories that are not courses (binder.allow_any_repo): built by the course builder, log streamed."""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from coursehub.courses.build import build_course
from coursehub.courses.catalog import CourseRecord
from coursehub.errors import CoursehubError
from coursehub.launch.binder.launch import (
    BUILD_LOCKS,
    Emit,
    LaunchRefused,
    refs_match,
    unregistered_name,
)
from coursehub.launch.binder.spec import BinderSpec
from coursehub.paths import StatePaths
from coursehub.settings import Course, Settings

# Builds of repositories anyone may name wait in their own queue: on asyncio's default pool they
# could take every thread that logins (argon2), account creation and cgroup setup need.
MAX_PARALLEL_BUILDS = 2
BUILD_POOL = ThreadPoolExecutor(MAX_PARALLEL_BUILDS, thread_name_prefix="coursehub-binder-build")


async def build_repository(
    spec: BinderSpec,
    binder: dict,
    records: dict[str, CourseRecord],
    emit: Emit,
    git_options: tuple[str, ...],
) -> CourseRecord:
    """The catalog record of `spec`'s repository, built (once at a time per repository) when needed.

    `git_options`: from spec.pinned_fetch_options, which checked the repository's addresses.
    """
    name = unregistered_name(spec)
    async with BUILD_LOCKS.setdefault(name, asyncio.Lock()):
        record = records.get(name)
        if record is not None and record.ready and await refs_match(record, spec.ref, git_options):
            if emit:
                await emit({"phase": "built", "imageName": f"coursehub/{name}", "message": "Found built.\n"})
            return record
        # Never apt.txt: anyone may name this repository, and apt installs as root.
        course = Course(
            name=name, title=spec.repo_url, repo=spec.repo_url, ref=spec.ref, access="open", allow_apt=False
        )
        settings = Settings(
            sandbox={"python": binder.get("python") or None},
            network=binder.get("network") or {},
            courses=[course],
        )
        paths = StatePaths(Path(binder["state_dir"]))
        record = await _build_streaming(course, settings, paths, emit, git_options)
    if emit:
        await emit({"phase": "built", "imageName": f"coursehub/{name}", "message": "Built.\n"})
    return record


async def _build_streaming(
    course: Course, settings: Settings, paths: StatePaths, emit: Emit, git_options: tuple[str, ...]
) -> Any:
    """Run the (blocking) course build in a thread, sending its log lines as `building` events."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str | None] = asyncio.Queue()

    def on_line(line: str) -> None:
        loop.call_soon_threadsafe(lines.put_nowait, line)

    async def build() -> CourseRecord:
        try:
            # Untrusted: refused when the build cannot have a network namespace of its own.
            job = functools.partial(build_course, git_options=git_options, untrusted=True)
            return await loop.run_in_executor(BUILD_POOL, job, course, settings, paths, on_line)
        finally:
            lines.put_nowait(None)

    task = asyncio.ensure_future(build())
    if emit:
        await emit({"phase": "building", "message": f"Building {course.repo} at {course.ref}…\n"})
    while (line := await lines.get()) is not None:
        if emit:
            await emit({"phase": "building", "message": line.rstrip("\n") + "\n"})
    try:
        return await task
    except CoursehubError as exc:
        raise LaunchRefused(f"The build failed: {exc}", 500) from exc
