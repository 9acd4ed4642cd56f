"""Sandboxes start while mounts under /run come and go, as other hubs' network namespaces do.

Run 48: a build step failed with bwrap's "remount /newroot/run/netns/...: Invalid argument" because
its recursive --ro-bind / / met a namespace that another hub removed meanwhile. The same argv, with
the churn below, failed 100 of 200 starts on this machine; the root is now bound entry by entry.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import needs_root_sandbox, wait_for

from coursehub.courses.buildbox import sandbox_argv
from coursehub.spawner.bwrap import SandboxSpec, bwrap_args, find_bwrap, host_root

pytestmark = pytest.mark.hub
STARTS = 60
# Mounts and unmounts tmpfs under a shared folder as fast as it can, like `ip netns add/del`.
CHURN = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
points = [os.path.join(sys.argv[1], str(i)).encode() for i in range(30)]
for p in points:
    os.makedirs(p, exist_ok=True)
while True:
    for p in points:
        libc.mount(b"none", p, b"tmpfs", 0, None)
    for p in points:
        libc.umount2(p, 2)
"""


def mounts_under(base: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted((p for p in points if p == str(base) or p.startswith(f"{base}/")), reverse=True)


@pytest.fixture
def churning_run():
    """A shared mount in /run whose submounts another process adds and removes all the time."""
    needs_root_sandbox()
    base = Path("/run") / f"coursehub-test-churn-{secrets.token_hex(3)}"
    base.mkdir()
    subprocess.run(["mount", "--bind", str(base), str(base)], check=True)
    subprocess.run(["mount", "--make-shared", str(base)], check=True)
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(base)])
    try:
        # The starts below run only once the churn has mounted something under the shared folder.
        wait_for(lambda: len(mounts_under(base)) > 1, timeout=30, interval=0.01, what="the churn's mounts")
        yield base
    finally:
        churn.kill()
        churn.wait()
        for point in mounts_under(base):
            subprocess.run(["umount", "-l", point], check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", str(base)], check=False)


def failures(argv: list[str]) -> list[str]:
    errors = []
    for _ in range(STARTS):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            errors.append(result.stderr.strip())
    return errors


def test_a_build_step_starts_while_namespaces_come_and_go(churning_run):
    argv = sandbox_argv(find_bwrap(), [], (), Path("/"), ["true"], root=host_root())
    assert failures(argv) == []


def server_spec(tmp_path: Path) -> SandboxSpec:
    """An exec-mode server's sandbox with a home of its own under `tmp_path`."""
    homes = tmp_path / "homes"
    (homes / "ch-a").mkdir(parents=True)
    return SandboxSpec(home=homes / "ch-a", home_root=homes, environment=Path(sys.prefix))


def test_an_exec_mode_server_sandbox_starts_while_namespaces_come_and_go(churning_run, tmp_path):
    spec = server_spec(tmp_path)
    script = f"touch /x 2>/dev/null && exit 3; touch {spec.home}/written"
    argv = bwrap_args(spec, ["sh", "-c", script], bwrap=find_bwrap())
    # Every start succeeds, and the root built entry by entry is read-only while the home is not.
    assert failures(argv) == []
    assert (spec.home / "written").exists() and not Path("/x").exists()


def test_a_folder_added_to_the_hosts_root_later_shows_in_the_next_sandbox(tmp_path):
    needs_root_sandbox()
    host_root()  # a hub that has started sandboxes before
    added = Path("/") / f"coursehub-test-{secrets.token_hex(3)}"
    added.mkdir()
    try:
        (added / "data.txt").write_text("shared")
        argv = bwrap_args(server_spec(tmp_path), ["cat", str(added / "data.txt")], bwrap=find_bwrap())
        result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert result.stdout == "shared", result.stderr
    finally:
        subprocess.run(["rm", "-rf", "--one-file-system", str(added)], check=False)
