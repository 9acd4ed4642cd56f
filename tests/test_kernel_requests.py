"""Kernel requests and the provisioner, run in a real stack environment (no hub, no privileges).

The fork server's part (joining the server's cgroup and namespaces as its user) is tested on hubs:
tests/test_hub_isolation.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.conftest import hub_root, needs_root_sandbox

# Runs in the environment's Python: a stand-in for the fork server forks `serve_request` for each
# message on a socket pair; the provisioner's `_ask_fork_server` asks it for kernels; the report says
# what was true the moment each answer came.
PROBE = textwrap.dedent(
    """
    import asyncio, json, os, signal, socket, sys, tempfile, time
    import coursehub_kernels as ck
    from jupyter_client.connect import write_connection_file

    folder = sys.argv[1]
    ck.REPLY_DIR = tempfile.mkdtemp(prefix="ck-", dir="/tmp")  # a socket's path has 107 bytes at most
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stand_in = os.fork()
    if stand_in == 0:
        ours.close()
        while message := theirs.recv(1 << 20):
            if os.fork() == 0:
                try:
                    ck.serve_request(message)
                finally:
                    os._exit(0)
        os._exit(0)
    theirs.close()
    fn, info = write_connection_file(os.path.join(folder, "kernel.json"), transport="ipc",
                                     ip=os.path.join(folder, "k"))
    iopub = f"{info['ip']}-{info['iopub_port']}"
    shell = f"{info['ip']}-{info['shell_port']}"
    report = {}
    try:
        request = {"args": ["-f", fn], "env": dict(os.environ), "cwd": folder}
        pid = asyncio.run(ck._ask_fork_server(request, ours))
        report["bound"] = os.path.exists(iopub) and os.path.exists(shell)
        kernel = ck.ForkedKernel(pid)
        report["running"] = kernel.poll()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (status := kernel.poll()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        report["status"] = status  # a zombie is gone to the provisioner; its parent reaps it
        broken = os.path.join(folder, "broken.json")
        with open(broken, "w") as f:
            f.write("not a connection file")
        try:
            request = {"args": ["-f", broken], "env": dict(os.environ), "cwd": folder}
            os.kill(asyncio.run(ck._ask_fork_server(request, ours)), signal.SIGKILL)
            report["broken"] = "answered"
        except RuntimeError as exc:
            report["broken"] = str(exc)
        try:
            asyncio.run(ck._ask_fork_server(request))  # this process has no channel of the fork server's
            report["no channel"] = "answered"
        except OSError as exc:
            report["no channel"] = str(exc)
        report["left"] = os.listdir(ck.REPLY_DIR)
    finally:
        ours.close()
        os.waitpid(stand_in, 0)
    print(json.dumps(report))
    """
)


@pytest.fixture(scope="module")
def stack_env():
    from coursehub.courses.environments import ensure_environment, find_user_python, stack_spec

    needs_root_sandbox()
    root = hub_root()
    env = ensure_environment(stack_spec(str(find_user_python())), root / "state" / "envs")
    yield env
    shutil.rmtree(root, ignore_errors=True)


def test_a_requested_kernel_answers_only_once_its_sockets_are_bound(stack_env, tmp_path):
    # Answering before binding made jupyter_server's activity monitor miss the kernel's first
    # status messages, so every first cell waited for the websocket's second nudge (0.5 s).
    tmp_path.chmod(0o755)
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    result = subprocess.run(
        [str(stack_env / "bin" / "python"), str(probe), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["bound"] is True
    assert report["running"] is None
    assert report["status"] == 0  # the provisioner sees it end
    # A kernel that cannot start is an error the server reports, not a pid of a dead process.
    assert "exited while starting" in report["broken"]
    # Without the channel (exec mode, a process the server started) the provisioner starts kernels itself.
    assert "no kernel channel" in report["no channel"]
    assert report["left"] == []  # the reply sockets are removed


def test_the_stack_environment_carries_its_bytecode(stack_env):
    # Sealed environments are read-only: without compiled files, every server and kernel
    # compiled the modules it imported, at every start.
    (site,) = (stack_env / "lib").glob("python3*/site-packages")
    for module in ("jupyter_server/serverapp", "ipykernel/kernelapp", "jupyterlab/labapp"):
        folder = site / module.rsplit("/", 1)[0] / "__pycache__"
        name = module.rsplit("/", 1)[1]
        assert list(folder.glob(f"{name}.*.pyc")), f"no bytecode for {module} in {folder}"


def run_with_fake_node(python: Path, args: list[str], folder: Path) -> tuple[str, bool]:
    """Run `python args` with a `node` first on PATH that records whether it ran; (stdout, node ran)."""
    folder.chmod(0o755)
    marker = folder / "node-ran"
    marker.unlink(missing_ok=True)
    node = folder / "node"
    node.write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    node.chmod(0o755)
    done = subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": f"{folder}:/usr/bin:/bin", "HOME": str(folder)},
        cwd=folder,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, marker.exists()


def test_the_fork_servers_preload_starts_no_nodejs(stack_env, tmp_path):
    # Importing jupyterlab.labapp asks `node yarn.js config --json` for the npm registry (0.6 CPU-s of
    # every hub start). A `node` first on PATH records that it ran: it must run only without the fix.
    from coursehub.spawner.forkclient import SCRIPT

    def preload(skip: bool) -> bool:
        probe = (
            "import runpy, sys; ns = runpy.run_path(sys.argv[1]); ns['add_environment_path']();"
            + ("ns['skip_yarn_config']();" if skip else "")
            + "import jupyterlab.labapp"
        )
        return run_with_fake_node(
            stack_env / "bin" / "python", ["-I", "-S", "-c", probe, str(SCRIPT)], tmp_path
        )[1]

    assert preload(skip=False), "the probe's node was never asked: the test shows nothing"
    assert not preload(skip=True)


def test_an_exec_mode_server_is_jupyterhub_singleuser_without_nodejs(stack_env, tmp_path):
    # Exec mode runs coursehub_kernels.singleuser(): the same server program, minus the yarn call.
    from coursehub.spawner.sandbox import EXEC_SERVER

    probe = EXEC_SERVER.replace("coursehub_kernels.singleuser()", "coursehub_kernels.skip_yarn_config()")
    probe += "; import jupyterlab.labapp, jupyterhub.singleuser as s; print(callable(s.main))"
    out, node_ran = run_with_fake_node(stack_env / "bin" / "python", ["-s", "-c", probe], tmp_path)
    assert out.strip() == "True"
    assert not node_ran
