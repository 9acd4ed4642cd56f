"""The machine and software a benchmark ran on, for its report."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path

from coursehub import __version__
from coursehub.courses.environments import server_stack
from coursehub.host.runtime import REPO_ROOT

CHP_PACKAGE = REPO_ROOT / "node_modules" / "configurable-http-proxy" / "package.json"


def cpu_model(cpuinfo: str) -> str:
    """The first 'model name' of /proc/cpuinfo (pure)."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def mem_total_gib(meminfo: str) -> float:
    """MemTotal of /proc/meminfo in GiB (pure)."""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return 0.0


def _kib_field(meminfo: str, name: str) -> int:
    """One field of /proc/meminfo, in KiB (pure)."""
    for line in meminfo.splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise ValueError(f"no {name} line in /proc/meminfo")


def mem_available_mib(meminfo: str) -> float:
    """MemAvailable of /proc/meminfo in MiB: what can be used without swapping (pure)."""
    return _kib_field(meminfo, "MemAvailable") / 1024


def mem_total_mib(meminfo: str) -> float:
    """MemTotal of /proc/meminfo in MiB (pure)."""
    return _kib_field(meminfo, "MemTotal") / 1024


def safety_margin_mib(total_mib: float) -> float:
    """Memory the live-users scenario leaves free: a tenth of the machine, at least 2 GiB (pure)."""
    return max(2048.0, total_mib / 10)


def read_meminfo() -> str:
    """/proc/meminfo now."""
    return _read("/proc/meminfo")


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _command_version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "unknown"


def _chp_version() -> str:
    try:
        return json.loads(CHP_PACKAGE.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"


def describe_machine(user_python: str) -> dict[str, object]:
    """CPU, cores, RAM, kernel, Pythons and the versions of everything benchmarked."""
    stack = dict(item.split("==", 1) for item in server_stack())
    return {
        "cpu": cpu_model(_read("/proc/cpuinfo")),
        "cores": os.cpu_count(),
        "ram_gib": mem_total_gib(_read("/proc/meminfo")),
        "kernel": platform.release(),
        "os": platform.platform(terse=True),
        "python_hub": platform.python_version(),
        "python_users": _command_version([user_python, "--version"]).removeprefix("Python "),
        "coursehub": __version__,
        **stack,
        "configurable-http-proxy": _chp_version(),
        "node": _command_version(["node", "--version"]),
    }
