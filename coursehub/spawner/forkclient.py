"""The hub's side of the fork servers: one per environment, started on demand, asked over a socket."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from ..errors import SandboxError
from .bwrap import COURSE_MOUNT, MOUNTS, SYNC_MOUNT, SandboxSpec

log = logging.getLogger(__name__)
# debugpy (pre-imported for kernels) checks for frozen modules at import and warns; the check
# is about breakpoints in the stdlib, which a shared pre-import cannot honour anyway.
PRELOAD_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
SCRIPT = Path(__file__).with_name("forkserver.py")
START_TIMEOUT = 120
_LOCK = threading.Lock()


def fork_request(
    spec: SandboxSpec,
    argv: list[str],
    env: dict[str, str],
    uid: int,
    gid: int,
    cgroup_procs: list[str],
    log_path: Path,
) -> dict:
    """The JSON a fork server needs to start one sandboxed server (pure)."""
    binds = [[str(spec.environment), str(spec.environment), True]]
    binds += [[str(p), str(p), True] for p in spec.readonly]
    for src, dst, ro in (
        (spec.course_src, COURSE_MOUNT, True),
        (spec.sync_script, SYNC_MOUNT, True),
        (spec.shared_data, MOUNTS / "data", True),
        (spec.scratch, MOUNTS / "scratch", False),
    ):
        if src is not None:
            binds.append([str(src), str(dst), ro])
    binds.append([str(spec.home), str(spec.home), False])
    return {
        "op": "spawn",
        "uid": uid,
        "gid": gid,
        "home": str(spec.home),
        "argv": argv,
        "env": env,
        "cgroup_procs": cgroup_procs,
        "log": str(log_path),
        "hostname": spec.hostname,
        "tmp_size": spec.tmp_size,
        "hidden": [str(spec.home_root), *map(str, spec.hidden)],
        "binds": binds,
    }


def _ask(sock_path: Path, request: dict, timeout: float = 30) -> dict:
    """One request/answer on the fork server's socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(sock_path))
        conn.sendall(json.dumps(request).encode() + b"\n")
        answer = conn.makefile("r").readline()
    if not answer:
        raise SandboxError("the fork server closed the connection without answering")
    return json.loads(answer)


def ensure_forkserver(environment: Path, run_dir: Path, log_dir: Path) -> Path:
    """The socket of `environment`'s fork server, starting the server if none answers."""
    sock = run_dir / f"fork-{environment.name}.sock"
    with _LOCK:
        try:
            _ask(sock, {"op": "ping"}, timeout=5)
            return sock
        except (OSError, ValueError):
            pass
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        python = environment / "bin" / "python"
        with open(log_dir / f"forkserver-{environment.name}.log", "ab") as out:
            # A bare environment: nothing of the hub's (children can read their initial environ).
            # -S: no site module, so no .pth file or sitecustomize of the environment runs as root
            # (the script adds the environment's site-packages itself); -E: no PYTHON* variables.
            subprocess.Popen(
                [str(python), "-S", "-E", str(SCRIPT), str(sock)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd="/",
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **PRELOAD_ENV},
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                _ask(sock, {"op": "ping"}, timeout=5)
                log.info("fork server for %s is up", environment.name)
                return sock
            except (OSError, ValueError):
                time.sleep(0.05)
    raise SandboxError(f"the fork server for {environment} did not start; see {log_dir}")


def fork_spawn(sock: Path, request: dict) -> int:
    """Ask the fork server for a server; the pid of its monitor process."""
    answer = _ask(sock, request)
    if not answer.get("ok"):
        raise SandboxError(f"the fork server refused: {answer}")
    return int(answer["pid"])


def forkserver_pid(run_dir: Path, environment: str) -> int | None:
    """The pid of the fork server of `environment` if it answers, else None."""
    try:
        return int(_ask(run_dir / f"fork-{environment}.sock", {"op": "ping"}, timeout=5)["pid"])
    except (OSError, ValueError, KeyError):
        return None


def stop_forkservers(run_dir: Path, environment: str = "*") -> int:
    """Stop the fork servers (of one environment, or all) whose sockets are in `run_dir`.

    Servers already forked keep running: each is in its own session, under its own monitor.
    Returns how many were stopped.
    """
    stopped = 0
    for sock in run_dir.glob(f"fork-{environment}.sock") if run_dir.is_dir() else []:
        try:
            pid = int(_ask(sock, {"op": "ping"}, timeout=5)["pid"])
            os.kill(pid, 15)
            stopped += 1
        except (OSError, ValueError, KeyError):
            pass
        sock.unlink(missing_ok=True)
    return stopped
