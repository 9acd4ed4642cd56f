"""What the hostile, crash and leak tests measured, written as they finish (test-output/reliability.md)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from coursehub.tools.reliability import read_records, render

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"
# A full-count run can keep its records apart from everyday runs.
RECORDS = Path(os.environ.get("COURSEHUB_RELIABILITY_RECORDS", OUTPUT / "reliability.jsonl"))


def scale() -> float:
    """COURSEHUB_RELIABILITY_SCALE: 1 runs the issue's full counts; CI's default is a small fraction."""
    return float(os.environ.get("COURSEHUB_RELIABILITY_SCALE", "0.02"))


def full_counts() -> bool:
    """True in a full-count run (`./run reliability`), not in the everyday suite."""
    return scale() >= 1


def scaled(full: int, minimum: int) -> int:
    """`full` times the scale, never below `minimum`."""
    return max(minimum, round(full * scale()))


def record(scenario: str, what: str, attempts: int, held: bool, mode: str = "", **figures: Any) -> None:
    """Append one row and regenerate test-output/reliability.md (no session hook needed)."""
    OUTPUT.mkdir(exist_ok=True)
    row = {
        "scenario": scenario,
        "mode": mode,
        "attempts": attempts,
        "held": held,
        "what": what,
        "figures": figures,
        "scale": scale(),
        "when": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    with RECORDS.open("a") as f:
        f.write(json.dumps(row) + "\n")
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    RECORDS.with_suffix(".md").write_text(render(read_records(RECORDS)))


def before_after(before: Any, after: Any) -> dict[str, str]:
    """Figures of two snapshots (dataclasses) as 'name: before -> after'."""
    return {name: f"{value} -> {getattr(after, name)}" for name, value in vars(before).items()}


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and private memory (clean and dirty) of `pid` in KiB (from smaps_rollup)."""
    out = {"private": 0}
    for line in _read(f"/proc/{pid}/smaps_rollup").splitlines():
        key, _, value = line.partition(":")
        if key in ("Rss", "Pss"):
            out[key.lower()] = int(value.split()[0])
        elif key in ("Private_Clean", "Private_Dirty"):
            out["private"] += int(value.split()[0])
    return out


def open_fds(pid: int) -> int:
    """How many file descriptors `pid` has open."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (by parent links in /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def processes_of_uids(uids: set[int], zombies: bool = True) -> set[int]:
    """Processes whose real uid is one of `uids` (zombies too, unless told not to)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            status = _read(f"/proc/{entry}/status")
            if not zombies and "\nState:\tZ" in status:
                continue
            for line in status.splitlines():
                if line.startswith("Uid:") and int(line.split()[1]) in uids:
                    found.add(int(entry))
    return found


def forkserver_pids(state_dir: Path, cgroup_parent: str = "coursehub") -> set[int]:
    """Fork servers of the hub whose state is in `state_dir` (not their forked children)."""
    marker = f"forkserver.py {state_dir}".encode()
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker in cmdline:
                found.add(int(entry))
    # Forked monitors and servers keep the fork server's command line, but they sit in a
    # server's cgroup (even once a killed fork server's children are re-parented).
    return {pid for pid in found if f"/{cgroup_parent}/" not in _read(f"/proc/{pid}/cgroup")}


def describe(pid: int) -> str:
    """A process as a reader of a failure wants it: pid, uid, command line, and whether a zombie."""
    status = _read(f"/proc/{pid}/status")
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        cmdline = ""
    zombie = " (zombie)" if fields.get("State", "").startswith("Z") else ""  # R/S/D change all the time
    return f"{pid} uid={fields.get('Uid', '?').split()[0]} {cmdline[:120].strip()}{zombie}"


def answers(hub: Any, name: str, token: str) -> bool:
    """True when the user's server answers through the proxy."""
    import requests

    try:
        response = requests.get(
            hub.server_url(name) + "api/status", headers={"Authorization": f"token {token}"}, timeout=30
        )
    except requests.RequestException:
        return False
    return response.status_code == 200


class Terminal:
    """A Jupyter terminal of a user's server, driven over its websocket as a browser does."""

    def __init__(self, server_url: str, token: str) -> None:
        import requests
        from websockets.sync.client import connect

        self.server_url = server_url.rstrip("/") + "/"
        headers = {"Authorization": f"token {token}"}
        response = requests.post(self.server_url + "api/terminals", headers=headers, timeout=60)
        assert response.status_code == 200, f"terminals are off or refused: {response.status_code}"
        self.name = response.json()["name"]
        url = "ws" + self.server_url[4:] + f"terminals/websocket/{self.name}"
        self._connection = connect(url, additional_headers=headers, open_timeout=60, max_size=None)
        self.ws = self._connection.__enter__()
        self.http_headers = headers
        self.run("stty -echo; export PS1='' PS2=''; bind 'set enable-bracketed-paste off'")

    def run(self, command: str, timeout: float = 120) -> tuple[int, str]:
        """Type `command`; its exit status and output (what the shell printed before the marker)."""
        import re
        import uuid

        marker = uuid.uuid4().hex
        self.ws.send(json.dumps(["stdin", f"{command}; echo {marker}:$?\r"]))
        found = re.compile(marker + r":(\d+)")
        text, deadline = "", time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                raw = self.ws.recv(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            kind, *payload = json.loads(raw)
            if kind == "stdout":
                text += payload[0]
                if match := found.search(text):
                    output = text[: match.start()].replace(f"echo {marker}:$?", "")
                    return int(match.group(1)), re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", output)
        raise AssertionError(f"no answer from the terminal within {timeout} s to {command!r}: {text[-500:]}")

    def close(self) -> None:
        import requests

        try:
            self._connection.__exit__(None, None, None)
        finally:
            requests.delete(
                self.server_url + f"api/terminals/{self.name}", headers=self.http_headers, timeout=30
            )


def socket_peers(pid: int) -> dict[int, int]:
    """How many TCP connections `pid` holds, by the remote port (listening sockets excluded)."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return {}
    peers: dict[int, int] = {}
    for table in ("tcp", "tcp6"):
        for line in _read(f"/proc/{pid}/net/{table}").splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes and fields[3] != "0A":
                port = int(fields[2].rsplit(":", 1)[1], 16)
                peers[port] = peers.get(port, 0) + 1
    return peers
