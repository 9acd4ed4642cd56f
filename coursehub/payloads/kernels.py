"""coursehub_kernels: installed into every course environment as a top-level module (stdlib + jupyter).

A kernel "zygote" per server pre-imports ipykernel and forks a kernel per request, so a new
kernel answers in tens of milliseconds instead of a fresh interpreter's second. The zygote runs
inside the user's sandbox, as the user (the fork server starts it right after dropping
privileges); `ForkProvisioner`, a jupyter_client kernel provisioner, asks it for kernels and
falls back to starting them the usual way when there is no zygote (exec mode).

The forked kernel itself answers the provisioner, once its sockets are bound: jupyter_server
connects its activity monitor to the kernel's IOPub as soon as the provisioner returns, and a
subscriber that connects before the kernel binds misses the first status messages (ZeroMQ
reconnects after 100 ms), which left the kernel "starting" until the websocket's next
kernel_info nudge, 0.5 s later, on every first cell.
"""

from __future__ import annotations

import asyncio
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


def _run_kernel(request: dict[str, Any], reply: socket.socket) -> None:
    """In the forked child: become a fresh kernel process, bind its sockets, answer, run ipykernel."""
    for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.setsid()
    nproc = request["env"].get("COURSEHUB_KERNEL_NPROC", "")
    if nproc.isdigit():
        resource.setrlimit(resource.RLIMIT_NPROC, (int(nproc), int(nproc)))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    keep = reply.fileno()
    os.closerange(3, keep)
    os.closerange(keep + 1, 65536)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request.get("cwd") or os.environ.get("HOME", "/"))
    _add_user_site()
    sys.argv = ["ipykernel_launcher", *request["args"]]
    from ipykernel.kernelapp import IPKernelApp

    # What kernelapp.launch_new_instance does, with the answer between binding and serving.
    app = IPKernelApp.instance()
    app.initialize()
    reply.sendall(json.dumps({"pid": os.getpid()}).encode() + b"\n")
    reply.close()
    app.start()


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


# What IPKernelApp.initialize imports on first use (traitlets' lazy class names, IPython's debugger,
# the history's sqlite3): measured with sys.modules around initialize() in a forked child, where
# they cost 0.25 s per kernel (debugpy alone 0.2 s). Names missing from other versions are skipped.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "argcomplete",
    "pdb",
    "sqlite3",
    "tornado.platform.asyncio",
    "traitlets.config.argcomplete_config",
)


def zygote(path: str = SOCKET) -> None:
    """Pre-import ipykernel, then fork a kernel per request on a private Unix socket."""
    import importlib

    for name in PRELOAD:  # the point: paid once, shared by every kernel
        try:
            importlib.import_module(name)
        except ImportError:
            pass

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
                    _run_kernel(request, conn)
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else 1
                except BaseException:  # noqa: BLE001 - the kernel's last words go to the server's log
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    os._exit(code)
            # The child answers (see the module's docstring); this copy of the connection closes here.


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


# A kernel binds its sockets in a fraction of a second; a whole class starting at once on a small
# machine can stretch that to tens of seconds.
ANSWER_TIMEOUT = 120


async def _ask_zygote(request: dict[str, Any]) -> int:
    """The pid of a kernel forked for `request`, once it is ready for connections."""
    reader, writer = await asyncio.open_unix_connection(SOCKET)  # OSError: no zygote here
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
    except TimeoutError:  # an OSError too: it must not look like "no zygote here"
        raise RuntimeError(f"the kernel did not get ready in {ANSWER_TIMEOUT} s") from None
    finally:
        writer.close()
    if not line:
        # RuntimeError, as jupyter_client raises for a kernel that fails to start (payloads import no
        # coursehub, so not an errors.py class): the server answers the request with its message.
        raise RuntimeError("the kernel exited while starting; the server's log says why")
    return int(json.loads(line)["pid"])


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Kernels forked from the server's zygote; the usual exec when there is none."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):  # type: ignore[override]
        try:
            request = {
                "args": _kernel_args(cmd),
                "env": dict(kwargs.get("env") or os.environ),
                "cwd": str(kwargs.get("cwd") or ""),
            }
        except (ValueError, KeyError) as exc:
            self.log.info("not a kernel the zygote can fork (%s); starting it normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        try:
            pid = await _ask_zygote(request)
        except OSError as exc:
            self.log.info("kernel zygote unavailable (%s); starting the kernel normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid)
        self.pid = self.pgid = pid  # the child called setsid: its pid is its process group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


if __name__ == "__main__":
    zygote(sys.argv[1] if len(sys.argv) > 1 else SOCKET)
