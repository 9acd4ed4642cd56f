"""The kernel zygote and its provisioner, run in a real stack environment (no hub)."""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap

import pytest

from tests.conftest import hub_root, needs_root_sandbox

# Runs in the environment's Python: starts a zygote on a private socket, asks it for a kernel the
# way ForkProvisioner does, and reports what was true the moment the answer came.
PROBE = textwrap.dedent(
    """
    import asyncio, json, os, signal, subprocess, sys, time
    import coursehub_kernels as ck
    from jupyter_client.connect import write_connection_file

    folder = sys.argv[1]
    ck.SOCKET = os.path.join(folder, "zygote.sock")
    zygote = subprocess.Popen([sys.executable, "-m", "coursehub_kernels", ck.SOCKET])
    deadline = time.monotonic() + 60
    while not os.path.exists(ck.SOCKET):
        if time.monotonic() > deadline or zygote.poll() is not None:
            sys.exit("the zygote did not listen")
        time.sleep(0.05)
    fn, info = write_connection_file(os.path.join(folder, "kernel.json"), transport="ipc",
                                     ip=os.path.join(folder, "k"))
    iopub = f"{info['ip']}-{info['iopub_port']}"
    shell = f"{info['ip']}-{info['shell_port']}"
    report = {}
    try:
        pid = asyncio.run(ck._ask_zygote({"args": ["-f", fn], "env": dict(os.environ), "cwd": folder}))
        report["bound"] = os.path.exists(iopub) and os.path.exists(shell)
        os.kill(pid, signal.SIGKILL)
        broken = os.path.join(folder, "broken.json")
        with open(broken, "w") as f:
            f.write("not a connection file")
        try:
            os.kill(asyncio.run(ck._ask_zygote({"args": ["-f", broken], "env": dict(os.environ),
                                                "cwd": folder})), signal.SIGKILL)
            report["broken"] = "answered"
        except RuntimeError as exc:
            report["broken"] = str(exc)
    finally:
        zygote.kill()
        zygote.wait()
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


def test_a_forked_kernel_answers_only_once_its_sockets_are_bound(stack_env, tmp_path):
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
    # A kernel that cannot start is an error the server reports, not a pid of a dead process.
    assert "exited while starting" in report["broken"]


def test_the_stack_environment_carries_its_bytecode(stack_env):
    # Sealed environments are read-only: without compiled files, every server, zygote and kernel
    # compiled the modules it imported, at every start.
    (site,) = (stack_env / "lib").glob("python3*/site-packages")
    for module in ("jupyter_server/serverapp", "ipykernel/kernelapp", "jupyterlab/labapp"):
        folder = site / module.rsplit("/", 1)[0] / "__pycache__"
        name = module.rsplit("/", 1)[1]
        assert list(folder.glob(f"{name}.*.pyc")), f"no bytecode for {module} in {folder}"
