"""The textbook scenario: readers of a page with runnable cells, through the Binder API.

coursehub only (stock JupyterHub has no Binder API). The demo course is served from a local git
daemon as an open course, as a textbook's repository would be; readers do what thebe does after
"activate" (`bench/readers.py`): build stream -> ready -> kernel -> one cell -> its output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from coursehub.errors import CoursehubError
from coursehub.settings import DEMO_DIR
from coursehub.tools.bench.readers import binder_spec, measure_readers
from coursehub.tools.bench.systems import CoursehubHub, free_port, hub_env
from coursehub.tools.loadtest import describe

Echo = Callable[[str], None]
GIT_TIMEOUT = 60


def textbook(hub: CoursehubHub, repeat: int, crowd: int, emit: Echo) -> dict[str, Any]:
    """One reader `repeat` times, then `crowd` readers at once: seconds from activate to output."""
    repos = hub.workdir / "git"
    _make_repo(repos / "book")
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--export-all", "--reuseaddr", f"--port={port}", "--listen=127.0.0.1"]
        + [f"--base-path={repos}", str(repos)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"git://127.0.0.1:{port}/book"
    try:
        _wait_for_git(url)
        _cli(hub, "course", "add", url, "--name", "book", "--access", "open")
        binder_url, spec = hub.url + "hub/binder", binder_spec(url)
        singles = []
        for i in range(repeat):
            run = measure_readers(binder_url, spec, 1)
            singles.extend(run.readers)
            emit(f"[{hub.system}] textbook, one reader {i + 1}/{repeat}: {run.summary()}")
            hub.stop_all_servers()
        many = measure_readers(binder_url, spec, crowd)
        emit(f"[{hub.system}] textbook, {crowd} readers at once: {many.summary()}")
        hub.stop_all_servers()
    finally:
        daemon.terminate()
        daemon.wait(10)
    one = [r.seconds for r in singles if r.seconds is not None]
    return {
        "one": {"readers": len(singles), "ok": len(one), "seconds": describe(one)},
        "crowd": {**many.summary(), "seconds": describe(many.seconds), "errors": many.errors[:5]},
    }


def _make_repo(repo: Any) -> None:
    """The demo course as a git repository (what a textbook's repo would be)."""
    shutil.copytree(DEMO_DIR, repo)
    for args in (
        ["init", "-q"],
        ["add", "-A"],
        ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "book"],
    ):
        subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=GIT_TIMEOUT)


def _wait_for_git(url: str) -> None:
    deadline = time.monotonic() + GIT_TIMEOUT
    while time.monotonic() < deadline:
        probe = subprocess.run(["git", "ls-remote", url], capture_output=True, timeout=GIT_TIMEOUT)
        if probe.returncode == 0:
            return
        time.sleep(0.2)
    raise CoursehubError(f"git daemon for the textbook scenario did not answer at {url}")


def _cli(hub: CoursehubHub, *args: str) -> None:
    config = hub.workdir / "coursehub.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "coursehub", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=hub_env(),
        timeout=600,
    )
    if result.returncode != 0:
        raise CoursehubError(f"coursehub {' '.join(args)} failed: {result.stderr.strip()[-800:]}")
