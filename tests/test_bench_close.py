"""The benchmark's hubs leave no process behind, even a kernel whose server died first (no hub started)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from conftest import wait_for

from coursehub.tools.bench import procstats
from coursehub.tools.bench.systems import BenchHub

# A stand-in hub: a "server" child that starts a "kernel" grandchild, each waiting for a signal; prints
# their pids.
TREE = """
import signal, subprocess, sys
server = subprocess.Popen([sys.executable, "-c", '''
import signal, subprocess, sys
kernel = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
print(kernel.pid, flush=True)
signal.pause()
'''], stdout=subprocess.PIPE, text=True)
print(server.pid, server.stdout.readline().strip(), flush=True)
signal.pause()
"""


class TreeHub(BenchHub):
    """A hub whose stop kills its server the hard way, as a server that did not stop its kernels."""

    def stop_all_servers(self, timeout: float = 0) -> int:
        os.kill(self.server_pid, signal.SIGKILL)
        return 1


def test_a_kernel_whose_server_died_first_is_stopped_with_the_hub(tmp_path):
    hub = TreeHub("tree", tmp_path)
    hub.proc = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    server, kernel = (int(pid) for pid in hub.proc.stdout.readline().split())
    hub.server_pid = server
    try:
        assert kernel in procstats.descendants(hub.proc.pid)
        hub.close()
        wait_for(lambda: procstats.read_stat(kernel) is None, timeout=30, what="the kernel to be gone")
    finally:
        for pid in (kernel, server, hub.proc.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert not Path(hub.workdir).exists()
