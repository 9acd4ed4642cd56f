"""Run code in a kernel of a Jupyter server over its REST API and websocket (through the proxy)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from websockets.sync.client import connect

from coursehub.clients.loopback import resolve_localhost_names
from coursehub.errors import CoursehubError

TIMEOUT = 60


@dataclass
class ExecResult:
    """What one execute_request produced."""

    status: str  # "ok", "error", or "died" when the kernel went away mid-run
    stdout: str = ""
    stderr: str = ""
    error: str = ""
    results: list[str] = field(default_factory=list)


class KernelSession:
    """One kernel on a server: create, execute code, delete."""

    def __init__(
        self,
        server_url: str,
        token: str,
        session: requests.Session | None = None,
        kernel_id: str | None = None,
    ):
        """A new kernel, or (kernel_id) a new connection to a running one."""
        resolve_localhost_names()  # a local hub with subdomains serves <user>.localhost
        self.server_url = server_url.rstrip("/") + "/"
        self.http = session or requests.Session()
        self.http.headers["Authorization"] = f"token {token}"
        self.token = token
        if kernel_id is None:
            response = self.http.post(f"{self.server_url}api/kernels", json={}, timeout=TIMEOUT)
            if response.status_code != 201:
                raise CoursehubError(f"kernel not created: {response.status_code} {response.text}")
            kernel_id = response.json()["id"]
        self.kernel_id: str = kernel_id
        ws_url = "ws" + self.server_url[4:] + f"api/kernels/{self.kernel_id}/channels"
        self._connection = connect(
            ws_url,
            additional_headers={"Authorization": f"token {token}"},
            open_timeout=TIMEOUT,
            max_size=None,
        )
        self.ws = self._connection.__enter__()

    def execute(self, code: str, timeout: float = TIMEOUT) -> ExecResult:
        """Run `code` and collect its output until the kernel is idle again."""
        msg_id = uuid.uuid4().hex
        self.ws.send(json.dumps(_execute_request(code, msg_id)))
        result = ExecResult(status="ok")
        while True:
            try:
                raw = self.ws.recv(timeout=timeout)
            except Exception as exc:  # connection closed: the kernel (or server) died
                result.status, result.error = "died", f"{type(exc).__name__}: {exc}"
                return result
            msg = json.loads(raw)
            # The server announces a dead or restarting kernel without our msg_id as parent.
            if msg.get("msg_type") == "status" and _kernel_gone(msg, result):
                return result
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if _collect(msg, result):
                return result

    def disconnect(self) -> None:
        """Close the websocket; the kernel keeps running."""
        self._connection.__exit__(None, None, None)

    def close(self) -> None:
        """Close the websocket and delete the kernel."""
        try:
            self.disconnect()
        finally:
            self.http.delete(f"{self.server_url}api/kernels/{self.kernel_id}", timeout=TIMEOUT)

    def __enter__(self) -> KernelSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _collect(msg: dict[str, Any], result: ExecResult) -> bool:
    """Fold one iopub/shell message into `result`; True when the execution is over."""
    kind, content = msg["msg_type"], msg.get("content", {})
    if kind == "stream":
        if content.get("name") == "stderr":
            result.stderr += content.get("text", "")
        else:
            result.stdout += content.get("text", "")
    elif kind == "execute_result":
        result.results.append(content.get("data", {}).get("text/plain", ""))
    elif kind == "error":
        result.status = "error"
        result.error = f"{content.get('ename')}: {content.get('evalue')}"
    elif kind == "status" and content.get("execution_state") == "idle":
        return True
    return False


def _kernel_gone(msg: dict[str, Any], result: ExecResult) -> bool:
    """True (and `result` marked) when a status message says the kernel died or restarts."""
    state = msg.get("content", {}).get("execution_state")
    if state in ("dead", "restarting", "autorestarting"):
        # Keep what the server said first (why the kernel died: its OOM notice).
        said = f": {result.error}" if result.error else ""
        result.status, result.error = "died", f"kernel {state}{said}"
        return True
    return False


def _execute_request(code: str, msg_id: str) -> dict[str, Any]:
    """A Jupyter messaging protocol execute_request on the shell channel."""
    return {
        "header": {
            "msg_id": msg_id,
            "username": "coursehub",
            "session": uuid.uuid4().hex,
            "msg_type": "execute_request",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {},
        "channel": "shell",
        "buffers": [],
        "content": {
            "code": code,
            "silent": False,
            "store_history": False,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        },
    }
