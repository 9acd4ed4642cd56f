"""coursehub_kernels: installed into every course environment as a top-level module (stdlib + jupyter).

Kernels are forked by the root fork server (coursehub/payloads/forkserver.py), which has imported
ipykernel once, straight into their server's sandbox as its user, so a new kernel answers in tens
of milliseconds instead of a fresh interpreter's second. `ForkProvisioner`, a jupyter_client
kernel provisioner, sends the request on the kernel channel the fork server gave the server
(PID 1 of the sandbox only) and falls back to starting kernels the usual way when there is none
(exec mode, or a fork server that has been replaced). The fork server never reads a request: its
child becomes the user in the sandbox first, then runs `serve_request` here.

The forked kernel itself answers the provisioner, once its sockets are bound: jupyter_server
connects its activity monitor to the kernel's IOPub as soon as the provisioner returns, and a
subscriber that connects before the kernel binds misses the first status messages (ZeroMQ
reconnects after 100 ms), which left the kernel "starting" until the websocket's next
kernel_info nudge, 0.5 s later, on every first cell.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import secrets
import signal
import socket
import sys
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner

CHANNEL_ENV = "COURSEHUB_KERNEL_CHANNEL"  # set by the fork server in the server's process only
REPLY_DIR = "/tmp"  # the sandbox's private /tmp: only the user's own processes reach a socket there
_CHANNEL: list[socket.socket] = []


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
    """See packages installed with pip install --user (the user site is off until here)."""
    import site

    site.USER_BASE = site.USER_SITE = None  # computed in the fork server for root: recompute
    user_site = site.getusersitepackages()
    if os.path.isdir(user_site) and user_site not in sys.path:
        site.addsitedir(user_site)


def serve_request(message: bytes, refuse: str = "") -> None:
    """Become the kernel a request asks for (the fork server's child, already the user in the sandbox).

    `refuse`: why it may not (the answer the server gets instead). Its parent, the fork server,
    reaps it.
    """
    request = json.loads(message)
    reply = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    reply.connect(str(request["reply"]))
    if refuse:
        reply.sendall(json.dumps({"error": refuse}).encode() + b"\n")
        return
    _run_kernel(request, reply)


class ForkedKernel:
    """Enough of Popen's interface for LocalProvisioner, for a kernel that is not our child.

    Its parent is the fork server, which reaps it; from inside the sandbox that parent is outside the
    PID namespace (getppid() is 0).
    """

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


def _channel() -> socket.socket | None:
    """The fork server's kernel channel: in the server's own process (PID 1 of its sandbox), else None."""
    if _CHANNEL:
        return _CHANNEL[0]
    value = os.environ.get(CHANNEL_ENV, "")
    if os.getpid() != 1 or not value.isdigit():
        return None  # a process the server started (nbgrader, a terminal's jupyter) has no channel
    try:
        sock = socket.socket(fileno=os.dup(int(value)))
    except OSError:
        return None
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_SEQPACKET:
        sock.close()
        return None
    sock.settimeout(10)
    _CHANNEL.append(sock)
    return sock


async def _ask_fork_server(request: dict[str, Any], channel: socket.socket | None = None) -> int:
    """The pid of a kernel forked for `request`, once it is ready for connections.

    OSError: no channel, or the fork server is gone (start the kernel the usual way); RuntimeError:
    the kernel did not start.
    """
    channel = channel or _channel()
    if channel is None:
        raise OSError("no kernel channel in this process")
    path = os.path.join(REPLY_DIR, f".coursehub-kernel-{secrets.token_hex(8)}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        listener.listen(1)
        listener.setblocking(False)
        channel.send(json.dumps({**request, "reply": path}).encode())
        loop = asyncio.get_running_loop()
        # The fork server never writes on the channel: readable means it has closed (killed, replaced).
        # A request sent while it was dying is lost; no kernel will answer it, so start one the usual way.
        accepted = asyncio.ensure_future(loop.sock_accept(listener))
        gone: asyncio.Future = loop.create_future()
        loop.add_reader(channel.fileno(), lambda: gone.done() or gone.set_result(None))
        try:
            done, _ = await asyncio.wait(
                {accepted, gone}, timeout=ANSWER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            loop.remove_reader(channel.fileno())
        if accepted not in done:
            accepted.cancel()
            if gone in done:
                _CHANNEL.clear()
                channel.close()
                raise OSError("the fork server has gone")
            raise RuntimeError(f"the kernel did not get ready in {ANSWER_TIMEOUT} s")
        try:
            conn, _ = accepted.result()
            with conn:
                line = await asyncio.wait_for(_read_line(loop, conn), ANSWER_TIMEOUT)
        except (TimeoutError, OSError) as exc:  # not an OSError to the caller: a kernel is starting
            raise RuntimeError(f"the kernel did not get ready in {ANSWER_TIMEOUT} s ({exc!r})") from None
    finally:
        listener.close()
        try:
            os.unlink(path)
        except OSError:
            pass
    if not line:
        # RuntimeError, as jupyter_client raises for a kernel that fails to start (payloads import no
        # coursehub, so not an errors.py class): the server answers the request with its message.
        raise RuntimeError("the kernel exited while starting; the server's log says why")
    answer = json.loads(line)
    if "error" in answer:
        raise RuntimeError(str(answer["error"]))
    return int(answer["pid"])


async def _read_line(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    """Bytes from `conn` up to a newline or its end."""
    conn.setblocking(False)
    data = b""
    while not data.endswith(b"\n"):
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            break
        data += chunk
    return data


class ForkProvisioner(LocalProvisioner):  # type: ignore[misc]
    """Kernels forked by the fork server into this sandbox; the usual exec when there is no channel."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):  # type: ignore[override]
        try:
            env = dict(kwargs.get("env") or os.environ)
            env.pop(CHANNEL_ENV, None)  # the kernel has no channel; what it starts must not look for one
            request = {"args": _kernel_args(cmd), "env": env, "cwd": str(kwargs.get("cwd") or "")}
        except (ValueError, KeyError) as exc:
            self.log.info("not a kernel the fork server can start (%s); starting it normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        try:
            pid = await _ask_fork_server(request)
        except OSError as exc:
            self.log.info("no fork server for kernels (%s); starting the kernel normally", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = ForkedKernel(pid)
        self.pid = self.pgid = pid  # the child called setsid: its pid is its process group
        self.cwd = kwargs.get("cwd")
        return self.connection_info


def skip_yarn_config() -> None:
    """Keep jupyterlab from running `node yarn.js config --json` when it is imported.

    Importing jupyterlab.labapp computes its version through an AppOptions whose `registry` default
    asks yarn for the npm registry the user configured: a Node.js process, 0.6 CPU-s of every start of
    a server (exec mode) or fork server whenever node is installed. A server never builds JupyterLab
    (its environment is read-only to it), so the default registry is all it could use anyway.
    """
    try:
        import jupyterlab.commands as commands
    except ImportError:
        return

    def no_yarn_config(_logger: object) -> dict:
        return {"yarn config": {}, "npm config": {}}  # what jupyterlab uses when node is missing

    commands._yarn_config = no_yarn_config


def singleuser() -> None:
    """Exec mode's server: jupyterhub-singleuser (its arguments in sys.argv), without the yarn call."""
    skip_yarn_config()
    from jupyterhub.singleuser import main

    sys.exit(main())
