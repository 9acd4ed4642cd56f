"""coursehub_oom: installed into every environment, so that JupyterLab says why a kernel died of memory.

The server's kernel websocket connection (`ServerApp.kernel_websocket_connection_class`, set in the
environment's `etc/jupyter/jupyter_server_config.d/coursehub.json`). When the kernel restarter finds
the kernel dead and the server's cgroup (its own, at /sys/fs/cgroup: a cgroup namespace) counted a
new OOM kill, the cell that was running gets an error saying so, sent just before Jupyter Server's
own "restarting" status: the student reads it in the cell instead of only "the kernel died".

It also turns Nagle's algorithm off on the websocket (TCP_NODELAY, as configurable-http-proxy does
on both of its sockets): Tornado leaves it on, so the small messages a cell's run ends with waited
for the browser's delayed ACK, about 40 ms on every cell (measured: `2+2` took 48 ms through Jupyter
Server against 5 ms straight to the kernel).
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

CGROUP = "/sys/fs/cgroup"  # the server's own cgroup, seen through its cgroup namespace
EVENTS = ("memory.events", "memory/memory.oom_control")  # cgroup v2, v1
LIMITS = ("memory.max", "memory/memory.limit_in_bytes")
V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
NO_LIMIT = 1 << 60  # cgroup v1 writes "no limit" as a huge number


def oom_kill_count(text: str) -> int:
    """The `oom_kill` count in a memory.events / memory.oom_control file's text (pure)."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill" and value.strip().isdigit():
            return int(value)
    return 0


def size_text(size: int) -> str:
    """Bytes as people write them: 2 GiB, 1.5 GiB, 256 MiB (pure)."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} bytes"


def notice(limit: int | None, course: str) -> str:
    """What the student reads in the cell whose kernel the OOM killer stopped (pure)."""
    whose = f"the limit of the course {course}" if course else "the limit of your server"
    limit_text = f"may use {size_text(limit)}, {whose}" if limit else "reached its memory limit"
    return (
        "Your kernel ran out of memory and was stopped: this server (kernels, terminals and Jupyter "
        f"together) {limit_text}. The kernel restarts with none of its variables: run the cells again "
        "with less data in memory (smaller samples, `del` what you no longer need)."
    )


def _read(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            with open(os.path.join(CGROUP, name)) as f:
                return f.read()
        except OSError:
            continue
    return None


def oom_kills() -> int:
    """Processes of this server the kernel's OOM killer has killed (0 when no cgroup shows it)."""
    text = _read(EVENTS)
    return oom_kill_count(text) if text else 0


def memory_limit() -> int | None:
    """This server's memory limit: its cgroup's, else MEM_LIMIT (as JupyterHub sets it)."""
    text = (_read(LIMITS) or "").strip()
    if text.isdigit() and int(text) < NO_LIMIT:
        return int(text)
    env = os.environ.get("MEM_LIMIT", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def __getattr__(name: str) -> Any:
    """OOMNoticeConnection, made on first use: Jupyter Server is imported only inside a server."""
    if name == "OOMNoticeConnection":
        return _connection_class()
    raise AttributeError(name)


@functools.cache
def _connection_class() -> type:
    from jupyter_client.jsonutil import json_default
    from jupyter_server.services.kernels.connection.base import (
        deserialize_binary_message,
        deserialize_msg_from_ws_v1,
        serialize_msg_to_ws_v1,
    )
    from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

    class OOMNoticeConnection(ZMQChannelsWebsocketConnection):
        """Jupyter Server's kernel connection, plus a cell error when the kernel died of memory."""

        def connect(self) -> Any:
            """Send each message at once (no Nagle), then connect as Jupyter Server does."""
            self.websocket_handler.set_nodelay(True)
            return super().connect()

        def _running(self) -> dict[str, Any]:
            """execute_request headers this browser sent that have no reply yet, oldest first."""
            if not hasattr(self, "_pending"):
                self._pending: dict[str, Any] = {}
                self._kills_before = oom_kills()
            return self._pending

        def handle_incoming_message(self, incoming_msg: Any) -> None:
            """Note each execute request (the kernel runs them in order), then pass it on."""
            header = None
            try:
                if self.subprotocol == V1_PROTOCOL:
                    channel, parts = deserialize_msg_from_ws_v1(incoming_msg)
                    header = self.session.unpack(parts[0]) if channel == "shell" else None
                else:
                    msg = (
                        deserialize_binary_message(incoming_msg)
                        if isinstance(incoming_msg, bytes)
                        else json.loads(incoming_msg)
                    )
                    header = msg.get("header") if msg.get("channel") in ("shell", None) else None
            except Exception:  # noqa: BLE001 - Jupyter Server reports malformed messages itself
                header = None
            if header and header.get("msg_type") == "execute_request":
                pending = self._running()
                if not pending:
                    self._kills_before = oom_kills()
                pending[header["msg_id"]] = header
            super().handle_incoming_message(incoming_msg)

        def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
            """Forget a request once its reply goes out."""
            channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
            pending = self._running()
            if channel == "shell" and pending:
                try:
                    _, parts = self.session.feed_identities(outgoing_msg)
                    parent = self.session.unpack(getattr(parts[2], "bytes", parts[2]))
                    pending.pop(parent.get("msg_id"), None)
                except Exception:  # noqa: BLE001
                    pass
            super().handle_outgoing_message(stream, outgoing_msg)

        def on_kernel_restarted(self) -> None:
            """The kernel died: if the OOM killer did it, tell the cell that was running, then restart."""
            pending = self._running()
            if pending and oom_kills() > self._kills_before:
                text = notice(memory_limit(), os.environ.get("COURSEHUB_COURSE", ""))
                self.log.warning("kernel %s was killed for memory: %s", self.kernel_id, text)
                running = next(iter(pending.values()))
                content = {
                    "ename": "MemoryError",
                    "evalue": text,
                    "traceback": [f"\x1b[0;31mMemoryError\x1b[0m: {text}"],
                }
                self._send_iopub("error", content, running)
            pending.clear()
            self._kills_before = oom_kills()
            super().on_kernel_restarted()

        def _send_iopub(self, msg_type: str, content: dict[str, Any], parent: dict[str, Any]) -> None:
            """An iopub message to this browser, as Jupyter Server sends its own status messages."""
            iopub = self.channels.get("iopub", None)
            if iopub and not iopub.closed():
                iopub.flush()  # the kernel's last outputs first
            msg = self.session.msg(msg_type, content, parent=parent)
            if self.subprotocol == V1_PROTOCOL:
                self.write_message(serialize_msg_to_ws_v1(msg, "iopub", self.session.pack), binary=True)
            else:
                msg["channel"] = "iopub"
                self.write_message(json.dumps(msg, default=json_default))

    return OOMNoticeConnection
