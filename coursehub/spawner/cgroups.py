"""One cgroup per user server, on cgroup v2 (unified) or v1 (one hierarchy per controller)."""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError

log = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD = 100_000
DEFAULT_PARENT = "coursehub"
# Set by `coursehub up` when it runs as a systemd service with Delegate=yes: servers' groups then live in the
# service's own subtree (systemd owns the rest of the tree), inherited by the hub and every CLI command.
PARENT_ENV = "COURSEHUB_CGROUP_PARENT"


def parent_group() -> str:
    """The parent of servers' groups, relative to the cgroup root: the service's subtree, or 'coursehub'."""
    return os.environ.get(PARENT_ENV) or DEFAULT_PARENT


def adopt_parent(record: Path) -> None:
    """CLI commands run from a shell use the parent the service's `up` recorded in `record`, if any."""
    if os.environ.get(PARENT_ENV):
        return
    try:
        parent = record.read_text().strip()
    except OSError:
        return
    if parent:
        os.environ[PARENT_ENV] = parent


def delegated_parent(proc_cgroup: str, version: int) -> str | None:
    """Servers' parent inside a delegated service's subtree, from /proc/self/cgroup (pure).

    Only on cgroup v2 and only inside a systemd service's group: elsewhere (a shell, a container at '/')
    there is nothing delegated, and None keeps the shared 'coursehub' group.
    """
    if version != 2:
        return None
    for line in proc_cgroup.splitlines():
        if line.startswith("0::"):
            path = line[3:].strip().strip("/")
            if path.endswith(".service"):
                return f"{path}/servers"
    return None


def enter_delegated_subtree(parent: str, root: Path = CGROUP_ROOT) -> None:
    """Move this process into a `hub` leaf beside `parent`: a group with controllers for its children
    may hold no processes itself (cgroup v2), and children started later inherit the leaf."""
    service = (root / parent).parent
    leaf = service / "hub"
    try:
        leaf.mkdir(exist_ok=True)
        (leaf / "cgroup.procs").write_text(str(os.getpid()))
    except OSError as exc:
        raise SandboxError(f"cannot use the service's delegated cgroup {service}: {exc}") from exc


@dataclass(frozen=True)
class Cgroup:
    """A server's cgroup: `dirs` are one folder (v2) or one per controller (v1)."""

    version: int
    dirs: tuple[Path, ...]

    @property
    def procs_files(self) -> list[str]:
        """Files a process writes its pid to in order to join this group."""
        return [str(d / "cgroup.procs") for d in self.dirs]

    def view_binds(self, root: Path = CGROUP_ROOT) -> list[tuple[Path, Path]]:
        """(host folder, folder in the sandbox): the group shown as the whole of /sys/fs/cgroup (pure)."""
        if self.version == 2:
            return [(self.dirs[0], root)]
        return [(d, root / d.relative_to(root).parts[0]) for d in self.dirs]

    def join(self, pid: int) -> None:
        """Move `pid` into the group (safe to call between fork and exec)."""
        for path in self.procs_files:
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)

    def pids(self) -> set[int]:
        """Every process in the group."""
        found: set[int] = set()
        for d in self.dirs:
            try:
                found.update(int(p) for p in (d / "cgroup.procs").read_text().split())
            except FileNotFoundError:
                continue
        return found

    def _file(self, name: str) -> Path | None:
        for d in self.dirs:
            if (d / name).exists():
                return d / name
        return None

    def oom_kills(self) -> int:
        """How many processes the kernel's OOM killer has killed in this group."""
        path = self._file("memory.events") or self._file("memory.oom_control")
        if path is None:
            return 0
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def memory_bytes(self) -> int:
        """Memory the group uses now."""
        path = self._file("memory.current") or self._file("memory.usage_in_bytes")
        return int(path.read_text()) if path else 0

    def kill_and_remove(self, timeout: float = 10) -> None:
        """SIGKILL everything in the group and delete it; idempotent."""
        kill_file = self._file("cgroup.kill")
        deadline = time.monotonic() + timeout
        while (pids := self.pids()) and time.monotonic() < deadline:
            if kill_file:
                kill_file.write_text("1")
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)
        for d in self.dirs:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove cgroup %s: %s", d, exc)


def cgroup_version(root: Path = CGROUP_ROOT) -> int:
    """2 on a unified hierarchy, 1 on per-controller hierarchies, 0 when neither is usable."""
    if (root / "cgroup.controllers").exists():
        return 2
    if all((root / c).is_dir() for c in V1_CONTROLLERS):
        return 1
    return 0


def group_for(name: str, parent: str | None = None, root: Path = CGROUP_ROOT) -> Cgroup:
    """The (not yet created) cgroup called `name` under coursehub's parent group."""
    parent = parent or parent_group()
    version = cgroup_version(root)
    if version == 2:
        return Cgroup(2, (root / parent / name,))
    if version == 1:
        return Cgroup(1, tuple(root / c / parent / name for c in V1_CONTROLLERS))
    raise SandboxError(f"no usable cgroup hierarchy under {root}: mount cgroup v2 or v1")


def create(group: Cgroup, memory: int, cpu: float, pids: int) -> None:
    """Create `group` with its limits (existing leftovers are emptied first)."""
    if any(d.exists() for d in group.dirs):
        group.kill_and_remove()
    try:
        if group.version == 2:
            _enable_v2_controllers(group.dirs[0].parent)
        for d in group.dirs:
            d.mkdir(parents=True, exist_ok=True)
        for name, value in _limit_files(group.version, memory, cpu, pids):
            path = group._file(name)
            if path is not None:
                path.write_text(value)
    except OSError as exc:
        raise SandboxError(f"cannot set up cgroup {group.dirs[0]}: {exc}") from exc


def _limit_files(version: int, memory: int, cpu: float, pids: int) -> list[tuple[str, str]]:
    """(file, value) pairs that enforce the limits, in a safe order."""
    quota = max(1000, int(cpu * CPU_PERIOD))
    if version == 2:
        return [
            ("memory.max", str(memory)),
            ("memory.swap.max", "0"),
            ("cpu.max", f"{quota} {CPU_PERIOD}"),
            ("pids.max", str(pids)),
        ]
    return [
        ("memory.limit_in_bytes", str(memory)),
        ("memory.memsw.limit_in_bytes", str(memory)),
        ("cpu.cfs_period_us", str(CPU_PERIOD)),
        ("cpu.cfs_quota_us", str(quota)),
        ("pids.max", str(pids)),
    ]


def _enable_v2_controllers(parent: Path) -> None:
    """Delegate memory, cpu and pids from the root down to coursehub's parent group."""
    parent.mkdir(exist_ok=True)
    for d in (parent.parent, parent):
        control = d / "cgroup.subtree_control"
        enabled = control.read_text().split()
        for controller in ("memory", "cpu", "pids"):
            if controller not in enabled:
                control.write_text(f"+{controller}")


def all_groups(parent: str | None = None, root: Path = CGROUP_ROOT) -> list[Cgroup]:
    """Every server cgroup coursehub has created (for status, cleanup and `down`)."""
    parent = parent or parent_group()
    version = cgroup_version(root)
    if version == 0:
        return []
    first = root / parent if version == 2 else root / V1_CONTROLLERS[0] / parent
    names = sorted(d.name for d in first.iterdir() if d.is_dir()) if first.is_dir() else []
    return [group_for(name, parent, root) for name in names]


def remove_empty_groups(prefix: str, parent: str | None = None, root: Path = CGROUP_ROOT) -> int:
    """Delete this hub's leftover groups (names starting with `prefix`) with no process; how many.

    Other hubs on the machine share the parent group: an empty group of theirs may be a server
    being started this instant (created, its process not yet in it), so it is never ours to remove.
    """
    removed = 0
    for group in all_groups(parent, root):
        if group.dirs[0].name.startswith(prefix) and not group.pids():
            group.kill_and_remove()
            removed += 1
    return removed
