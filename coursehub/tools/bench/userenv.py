"""The users' environment of the stock hubs: coursehub's exact package pins, installed plainly."""

from __future__ import annotations

import fcntl
import logging
import shutil
import subprocess
import tempfile
from pathlib import Path

from coursehub.courses.environments import EnvSpec, stack_spec, uv_binary
from coursehub.errors import EnvironmentBuildError

log = logging.getLogger(__name__)
ENVS = Path(tempfile.gettempdir()) / "coursehub-bench" / "envs"
READY = ".bench-ready"
BUILD_TIMEOUT = 1800


def stock_environment(python: Path, envs: Path = ENVS) -> Path:
    """A cached venv with the same Python and packages as coursehub's users get.

    Stock hubs get a plain `uv pip install` of those pins, without the kernelspec and
    JupyterLab settings coursehub adds, so that they run exactly what upstream ships.
    """
    spec = stack_spec(str(python))
    target = envs / f"stock-{spec.digest}"
    if (target / READY).exists():
        return target
    envs.mkdir(parents=True, exist_ok=True)
    # One build at a time: two benchmarks (or two test workers) starting together built the same
    # folder at once, and one removed what the other was creating.
    with open(envs / ".build.lock", "w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        if not (target / READY).exists():
            _build(spec, target)
    return target


def _build(spec: EnvSpec, target: Path) -> None:
    """Build the stock environment at `target` from scratch."""
    # Built in place (entry-point scripts hard-code their venv's path); READY is written last,
    # so a half-built environment is rebuilt next time.
    shutil.rmtree(target, ignore_errors=True)
    uv = uv_binary()
    _run([uv, "venv", "--python", spec.python, str(target)])
    python_bin = str(target / "bin" / "python")
    # Copies, not hard links to uv's cache: a file changed in place in one environment
    # (coursehub rewrites kernel.json) would otherwise change it in the cache and every venv.
    # The stack's lock, hashes checked: stock JupyterHub runs the very versions coursehub's users get.
    lock = target / "stack-lock.txt"
    lock.write_text(spec.lock)
    # Bytecode compiled as pip does by default (uv does not): what a stock install has.
    install = [uv, "pip", "install", "--link-mode=copy", "--compile-bytecode", "--python", python_bin]
    _run([*install, "--require-hashes", "--no-deps", "-r", str(lock)])  # as environments._build_steps
    # The kernelspec exactly as ipykernel installs it, whatever the cache's copy says.
    _run([python_bin, "-m", "ipykernel", "install", "--prefix", str(target)])
    (target / READY).write_text("ok\n")


def _run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        raise EnvironmentBuildError(f"{' '.join(cmd[:3])} timed out") from exc
    if done.returncode != 0:
        raise EnvironmentBuildError(
            f"building the stock users' environment failed ({' '.join(cmd[:3])}):\n{done.stderr[-2000:]}"
        )
