"""Removing environments that no course uses and no process runs from (`coursehub course gc`, and `up`).

Every change of a course's requirements builds a new content-addressed environment and leaves the
old one behind (~300 MiB each); a hub that Binder builds for keeps gaining them.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..paths import StatePaths
from ..spawner.forkclient import forkserver_pid, stop_forkservers
from . import catalog

# A build in progress: `.<digest>.<pid>.<thread>.tmp` and its `.work` folder (courses/environments.py).
STAGING = re.compile(r"^\.(?P<digest>[0-9a-f]{16})\.(?P<pid>\d+)\.\d+\.tmp(\.work)?$")
DIGEST = re.compile(r"^[0-9a-f]{16}$")
# A build finishes before its course's record names it: a young environment may be about to be used.
GRACE = 3600.0


@dataclass(frozen=True)
class Unused:
    """A folder of the environments' folder that can go, and why."""

    name: str
    why: str


def unused_environments(
    names: Iterable[str],
    referenced: set[str],
    in_use: set[str],
    alive: set[int],
    recent: frozenset[str] | set[str] = frozenset(),
) -> list[Unused]:
    """Which entries of the environments' folder to remove (pure).

    Kept: what the catalog or the stack refers to, what a process runs from, builds whose process
    lives, environments finished less than GRACE ago.
    """
    found = []
    for name in sorted(names):
        staging = STAGING.match(name)
        if staging:
            if int(staging["pid"]) not in alive:
                found.append(Unused(name, "left by a build that did not finish"))
        elif DIGEST.match(name) and not {name} & (referenced | in_use | recent):
            found.append(Unused(name, "no course uses it and nothing runs from it"))
    return found


def environments_in_use(envs_dir: Path, ignore: frozenset[int] | set[int] = frozenset()) -> set[str]:
    """Environments some process runs from: in its command line or its mapped files (any namespace)."""
    prefix = str(envs_dir) + "/"
    used: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in ignore:
            continue
        try:
            text = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            text += (proc / "maps").read_text(errors="replace")
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        start = text.find(prefix)
        while start != -1:
            name = text[start + len(prefix) :].split("/", 1)[0].split(maxsplit=1)
            if name:
                used.add(name[0])
            start = text.find(prefix, start + 1)
    return used


def _alive_pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, filenames in os.walk(path):
        for name in filenames:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                continue
    return total


def collect(paths: StatePaths, keep: Iterable[str], dry_run: bool = False) -> list[tuple[Unused, int]]:
    """Remove unused environments (and their build logs and fork servers); what went, with sizes.

    `keep`: digests to keep whatever the catalog says (the stack's environment).
    """
    if not paths.envs.is_dir():
        return []
    records = catalog.load_catalog(paths.courses).values()
    referenced = {Path(r.environment).name for r in records} | {
        Path(r.stack).name for r in records if r.stack
    }
    referenced |= set(keep)
    # A fork server of an environment nobody uses would keep it forever: its servers count, it does not.
    forkservers = {
        pid
        for entry in paths.envs.iterdir()
        if DIGEST.match(entry.name) and (pid := forkserver_pid(paths.run, entry.name)) is not None
    }
    in_use = environments_in_use(paths.envs, ignore=forkservers)
    folders = [e for e in paths.envs.iterdir() if e.is_dir()]
    recent = {e.name for e in folders if time.time() - e.stat().st_mtime < GRACE}
    removed = []
    for unused in unused_environments((e.name for e in folders), referenced, in_use, _alive_pids(), recent):
        folder = paths.envs / unused.name
        size = _size(folder)
        if not dry_run:
            if DIGEST.match(unused.name):
                stop_forkservers(paths.run, unused.name)
                (paths.envs / f"{unused.name}.log").unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
        removed.append((unused, size))
    return removed
