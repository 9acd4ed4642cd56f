"""The hub's side of the fork servers: one per stack environment, started on demand, asked over a socket."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from ..errors import SandboxError
from .bwrap import SandboxSpec
from .view import fork_mounts, sandbox_view

log = logging.getLogger(__name__)
# debugpy (pre-imported for kernels) checks for frozen modules at import and warns; the check
# is about breakpoints in the stdlib, which a shared pre-import cannot honour anyway.
PRELOAD_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
SCRIPT = Path(__file__).parent.parent / "payloads" / "forkserver.py"
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
    log_max: int = 16 << 20,
) -> dict:
    """The JSON a fork server needs to start one sandboxed server (pure)."""
    return {
        "op": "spawn",
        "uid": uid,
        "gid": gid,
        "home": str(spec.home),
        "argv": argv,
        "env": env,
        "cgroup_procs": cgroup_procs,
        "log": str(log_path),
        "log_max": log_max,
        "hostname": spec.hostname,
        "mounts": fork_mounts(sandbox_view(spec)),
        "cgroup_namespace": bool(spec.cgroup_binds),
    }


def script_version() -> str:
    """The digest a fork server running SCRIPT answers pings with."""
    return hashlib.sha256(SCRIPT.read_bytes()).hexdigest()[:16]


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
            answer = _ask(sock, {"op": "ping"}, timeout=5)
            if answer.get("version") == script_version():
                return sock
            # Left running by an earlier coursehub (fork servers outlive the hub): its requests
            # differ. Servers it forked keep running, their output still copied by its log collector;
            # their kernel channel ends with it, so their kernels start the slow way until they restart.
            log.info("replacing the fork server of %s (another version)", environment.name)
            os.kill(int(answer["pid"]), signal.SIGTERM)
        except (OSError, ValueError, KeyError):
            pass
        sock.unlink(missing_ok=True)  # pings go unanswered until the new server listens
        run_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(run_dir, 0o700)
        python = environment / "bin" / "python"
        with open(log_dir / f"forkserver-{environment.name}.log", "ab") as out:
            # A bare environment: nothing of the hub's (children can read their initial environ).
            # The stack environment's: coursehub's pins, no course's code. -S: no site module, so no
            # .pth file or sitecustomize runs as root (the script adds the site-packages itself);
            # -I: no PYTHON* variables, no user site, not the script's folder on sys.path.
            subprocess.Popen(
                [str(python), "-I", "-S", str(SCRIPT), str(sock)],
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
                if _ask(sock, {"op": "ping"}, timeout=5).get("version") == script_version():
                    log.info("fork server for %s is up", environment.name)
                    return sock
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
    raise SandboxError(f"the fork server for {environment} did not start; see {log_dir}")


def fork_spawn(sock: Path, request: dict) -> int:
    """Ask the fork server for a server; the pid of its process (its sandbox's PID 1, as the host sees it)."""
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

    Servers already forked keep running, each in its own session; the collector copies their output
    until they end.
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
