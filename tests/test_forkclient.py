"""The hub's side of the fork servers, against real processes (no hub, no sandbox)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

from coursehub.spawner.forkclient import ensure_forkserver, forkserver_pid, stop_forkservers


def old_forkserver(sock: Path, pid: int) -> threading.Thread:
    """A fork server of an earlier coursehub: it answers pings, without saying which version it is."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(sock))
    listener.listen(8)

    def serve() -> None:
        with listener:
            while True:
                conn, _ = listener.accept()
                with conn:
                    conn.makefile("r").readline()
                    conn.sendall(json.dumps({"ok": True, "pid": pid}).encode() + b"\n")
                if not sock.exists():
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def test_a_fork_server_of_another_version_is_replaced(tmp_path):
    # After an upgrade the hub restarts but fork servers keep running; an old one would not
    # understand the new requests (e.g. the mounts of the sandbox's view).
    environment = tmp_path / "env"
    (environment / "bin").mkdir(parents=True)
    (environment / "bin" / "python").symlink_to(sys.executable)
    run, logs = tmp_path / "run", tmp_path / "logs"
    run.mkdir()
    logs.mkdir()
    stand_in = subprocess.Popen(["sleep", "300"])  # the old server's process
    old_forkserver(run / "fork-env.sock", stand_in.pid)
    new = None
    try:
        ensure_forkserver(environment, run, logs)
        assert stand_in.wait(timeout=30) == -15  # the old one was stopped
        new = forkserver_pid(run, "env")
        assert new and new != stand_in.pid
        assert ensure_forkserver(environment, run, logs) and forkserver_pid(run, "env") == new  # kept
    finally:
        stand_in.kill()
        stop_forkservers(run)
        if new and new != stand_in.pid:  # whatever the outcome, no fork server outlives the test
            try:
                os.kill(new, 15)
            except ProcessLookupError:
                pass
    assert not os.path.exists(run / "fork-env.sock")
