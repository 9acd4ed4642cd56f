"""coursehub_kernels: installed into every course environment as a top-level module (stdlib + jupyter).

A kernel "zygote" per server pre-imports ipykernel and forks a kernel per request, so a new
kernel answers in tens of milliseconds instead of a fresh interpreter's second. The zygote runs
inside the user's sandbox, as the user (the fork server starts it right after dropping
privileges); `ForkProvisioner`, a jupyter_client kernel provisioner, asks it for kernels and
falls back to starting them the usual way when there is no zygote (exec mode).
"""

from __future__ import annotations

import gc
import json
import os
import resource
import signal
import socket
import sys
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

SOCKET = "/tmp/.coursehub-kernels.sock"  # the sandbox's private /tmp


def _kernel_args(cmd: list[str]) -> list[str]:
    """The ipykernel_launcher arguments inside a kernelspec command (with or without a wrapper)."""
    for i, part in enumerate(cmd):
        if part == "ipykernel_launcher" and i > 0 and cmd[i - 1] == "-m":
            return cmd[i + 1 :]
    raise ValueError("not an ipykernel command")


def _run_kernel(request: dict[str, Any]) -> None:
    """In the forked child: become a fresh kernel process, then run ipykernel."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    nproc = request["env"].get("COURSEHUB_KERNEL_NPROC", "")
    if nproc.isdigit():
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.closerange(3, 65536)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request.get("cwd") or os.environ.get("HOME", "/"))
    _add_user_site()
    sys.argv = ["ipykernel_launcher", *request["args"]]
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


def _add_user_site() -> None:
    """See packages installed with pip install --user since the zygote started."""
    import site

    site.USER_BASE = site.USER_SITE = None  # computed in the fork server for root: recompute
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site) and user_site not in sys.path:
        site.addsitedir(user_site)


def _reap(_signum: int, _frame: object) -> None:
    """Collect exited kernels, saying how each ended (the server's log is this process's stderr)."""
    try:
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid <= 0:
                return
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                print(f"coursehub kernel zygote: kernel {pid} exited with {code}", file=sys.stderr)
    except ChildProcessError:
        pass


def zygote(path: str = SOCKET) -> None:
    """Pre-import ipykernel, then fork a kernel per request on a private Unix socket."""
    import ipykernel.kernelapp  # noqa: F401 - the point: paid once, shared by every kernel

    gc.collect()
    gc.freeze()
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    os.chmod(path, 0o600)
    server.listen(16)
    signal.signal(signal.SIGCHLD, _reap)
    while True:
        conn, _ = server.accept()
        with conn:
            request = json.loads(conn.makefile("r").readline())
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    server.close()
                    conn.close()
                    _run_kernel(request)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - the kernel's last words go to the server's log
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


class ForkedKernel:
    """Enough of Popen's interface for LocalProvisioner, for a kernel that is not our child."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return 0
        return 0 if state in ("Z", "X") else None

    def wait(self, timeout: float | None = None) -> int:
        return self.poll() or 0

    def send_signal(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass  # already gone: what Popen.send_signal does too, so restarts can proceed

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


def _ask_zygote(request: dict[str, Any]) -> int:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(SOCKET)
        conn.sendall(json.dumps(request).encode() + b"\n")
        return int(json.loads(conn.makefile("r").readline())["pid"])


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Kernels forked from the server's zygote; the usual exec when there is none."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):  # type: ignore[override]
        try:
            request = {
                "args": _kernel_args(cmd),
                "env": dict(kwargs.get("env") or os.environ),
                "cwd": str(kwargs.get("cwd") or ""),
            }
            pid = _ask_zygote(request)
        except (OSError, ValueError, KeyError) as exc:
            self.log.info("kernel zygote unavailable (%s); starting the kernel normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid)
        self.pid = self.pgid = pid  # the child called setsid: its pid is its process group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


if __name__ == "__main__":
    zygote(sys.argv[1] if len(sys.argv) > 1 else SOCKET)
