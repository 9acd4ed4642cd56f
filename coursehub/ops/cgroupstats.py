"""Readings from servers' cgroups: memory, OOM kills, and whether a kernel runs (blocking I/O)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .servers import ServerInfo

log = logging.getLogger(__name__)
PROC = Path("/proc")


def read_usage(servers: Iterable[ServerInfo]) -> None:
    """Fill in `memory` and `oom_kills` of servers that have a cgroup (others keep 0)."""
    for server in servers:
        if server.cgroup is None:
            continue
        try:
            server.memory = server.cgroup.memory_bytes()
            server.oom_kills = server.cgroup.oom_kills()
        except (OSError, ValueError) as exc:  # the server stopped while we read
            log.debug("cannot read the cgroup of %s: %s", server.key, exc)


def is_kernel_command(args: Sequence[str]) -> bool:
    """True for a Jupyter kernel's command line (ipykernel, or any kernel given a connection file)."""
    if any("ipykernel" in arg for arg in args):
        return True
    return any(Path(arg).name.startswith("kernel-") and arg.endswith(".json") for arg in args)


def command_of(pid: int, proc: Path = PROC) -> list[str]:
    """The command line of `pid` ([] when it is gone)."""
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def runs_kernel(group: Any, proc: Path = PROC) -> bool:
    """True when some process in the cgroup is a kernel."""
    try:
        pids = group.pids()
    except OSError:
        return False
    return any(is_kernel_command(command_of(pid, proc)) for pid in pids)
