"""Unused environments go (`coursehub course gc`, `up`); what a course or a process uses stays."""

from __future__ import annotations

import ctypes.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from coursehub.courses import catalog
from coursehub.courses.gc import GRACE, Unused, collect, environments_in_use, unused_environments
from coursehub.paths import StatePaths

A, B, C, D = "a" * 16, "b" * 16, "c" * 16, "d" * 16


def test_only_what_nothing_refers_to_goes():
    names = [
        A,
        B,
        C,
        f"{A}.log",
        f".{D}.{os.getpid()}.1.tmp",
        f".{D}.999999999.1.tmp",
        f".{D}.999999999.1.tmp.work",
    ]
    found = unused_environments(names, referenced={A}, in_use={B}, alive={os.getpid()})
    assert unused_environments([C], referenced=set(), in_use=set(), alive=set(), recent={C}) == []
    assert found == [
        Unused(f".{D}.999999999.1.tmp", "left by a build that did not finish"),
        Unused(f".{D}.999999999.1.tmp.work", "left by a build that did not finish"),
        Unused(C, "no course uses it and nothing runs from it"),
    ]


def _a_library() -> Path:
    """A shared library of this machine that a process can map from a copy."""
    name = ctypes.util.find_library("z") or ctypes.util.find_library("m")
    assert name, "no libz or libm here"
    for folder in (
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
    ):
        if (Path(folder) / name).exists():
            return Path(folder) / name
    raise AssertionError(f"{name} not found")


def test_collect_keeps_what_a_course_or_a_process_uses(tmp_path):
    paths = StatePaths(tmp_path / "state")
    old = time.time() - 2 * GRACE  # finished long ago: a young environment may be about to be used
    for name in (A, B, C, D):
        (paths.envs / name / "lib").mkdir(parents=True)
        (paths.envs / f"{name}.log").write_text("build log\n")
    young = paths.envs / ("e" * 16)
    young.mkdir()
    catalog.update_record(paths.courses, catalog.CourseRecord(name="demo", environment=str(paths.envs / A)))
    # A server still running on B since its course moved on: it has a library of B mapped.
    library = paths.envs / B / "lib" / "libcoursehub-test.so"
    shutil.copy(_a_library(), library)
    code = (
        f"import ctypes, sys, time; ctypes.CDLL({str(library)!r}); print('ok', flush=True); time.sleep(120)"
    )
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ok"
        assert B in environments_in_use(paths.envs)
        stale = paths.envs / f".{C}.999999999.1.tmp"
        stale.mkdir()
        for folder in (A, B, C, D, stale.name):
            os.utime(paths.envs / folder, (old, old))
        dry = collect(paths, keep={D}, dry_run=True)
        assert [u.name for u, _ in dry] == [stale.name, C] and (paths.envs / C).exists()
        removed = collect(paths, keep={D})
        assert [u.name for u, _ in removed] == [stale.name, C]
        assert {p.name for p in paths.envs.iterdir()} == {
            A,
            B,
            D,
            young.name,
            f"{A}.log",
            f"{B}.log",
            f"{D}.log",
        }
    finally:
        server.kill()
        server.wait()
    # Once the server is gone, B goes too.
    assert [u.name for u, _ in collect(paths, keep={D})] == [B]
