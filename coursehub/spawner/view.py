"""The sandbox's view of the filesystem, described once; rendered to bubblewrap's arguments and to the
fork server's request, so that both spawn modes show a server the same files. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class SandboxSpec:
    """What a server's sandbox shows and hides."""

    home: Path
    home_root: Path
    environment: Path
    course_src: Path | None = None
    sync_script: Path | None = None
    shared_data: Path | None = None
    scratch: Path | None = None
    # nbgrader (courses/grading.grading_binds): (host folder, target, read-only), after the course's folders.
    grading: tuple[tuple[Path, Path, bool], ...] = ()
    hidden: tuple[Path, ...] = ()
    readonly: tuple[Path, ...] = ()
    hostname: str = "jupyter"
    # Bytes of the private /tmp (and half of it for /dev/shm); 0 leaves the kernel's default,
    # half the machine's RAM, where a full /tmp ends in the OOM killer rather than "disk full".
    tmp_size: int = 0
    # The server's own cgroup folders shown as /sys/fs/cgroup (in a cgroup namespace of its own).
    cgroup_binds: tuple[tuple[Path, Path], ...] = ()


# Under /run, which the sandbox replaces with a tmpfs: mount points can be made there.
MOUNTS = Path("/run/coursehub")
COURSE_MOUNT = MOUNTS / "course"
SYNC_MOUNT = MOUNTS / "sync.py"
CGROUP_VIEW = Path("/sys/fs/cgroup")
# Tmpfs that only hide host folders: nothing needs to write there.
HIDING_TMPFS_SIZE = 1 << 20

# root: the host's root, read-only; proc: a new /proc; dev: a minimal /dev (null, zero, full, random,
# urandom, tty, a private devpts); scratch: a private writable tmpfs; hide: a tmpfs over a host folder;
# bind: a host path shown at `target`; remount-ro: make `target` read-only once binds inside it exist.
Kind = Literal["root", "proc", "dev", "scratch", "hide", "bind", "remount-ro"]


@dataclass(frozen=True)
class Mount:
    """One step of building the view, applied in order."""

    kind: Kind
    target: str
    source: str = ""
    readonly: bool = True
    size: int = 0  # bytes of a tmpfs; 0: the kernel's default


def sandbox_view(spec: SandboxSpec) -> list[Mount]:
    """Read-only root, private /proc, /dev, /tmp and /dev/shm, hidden homes and state, the user's own home."""
    view = [Mount("root", "/"), Mount("proc", "/proc"), Mount("dev", "/dev")]
    view += [
        Mount("scratch", "/tmp", readonly=False, size=spec.tmp_size),
        Mount("scratch", "/dev/shm", readonly=False, size=spec.tmp_size // 2),
    ]
    hiding = ["/run", *map(str, (spec.home_root, *spec.hidden))]
    hiding += [str(CGROUP_VIEW)] if spec.cgroup_binds else []
    view += [Mount("hide", folder, size=HIDING_TMPFS_SIZE) for folder in hiding]
    # Binds come after the tmpfs that hide their parents, so they show through.
    shown = [(spec.environment, spec.environment, True), *((p, p, True) for p in spec.readonly)]
    shown += [
        (source, target, readonly)
        for source, target, readonly in (
            (spec.course_src, COURSE_MOUNT, True),
            (spec.sync_script, SYNC_MOUNT, True),
            (spec.shared_data, MOUNTS / "data", True),
            (spec.scratch, MOUNTS / "scratch", False),
        )
        if source is not None
    ]
    shown += spec.grading
    shown.append((spec.home, spec.home, False))
    shown += [(source, target, True) for source, target in spec.cgroup_binds]
    view += [Mount("bind", str(target), source=str(source), readonly=ro) for source, target, ro in shown]
    # In bwrap's user namespace those tmpfs belong to the user: make them read-only once the
    # binds inside them exist, so they cannot become more unbounded scratch space.
    view += [Mount("remount-ro", folder) for folder in hiding]
    return view


# A top-level entry of the host's root: its name and, for a symlink (/bin -> usr/bin), its target.
RootEntry = tuple[str, str | None]
# Top-level folders the view always replaces (proc, dev, scratch, hide), so the root leaves them out.
# /run above all: it holds network namespaces (/run/netns, a shared mount) that other spawns and
# builds add and remove at any moment, and bwrap's recursive --ro-bind / / failed with "remount
# /newroot/run/netns/...: Invalid argument" when one went between its bind and its read-only remount.
ROOT_REPLACED = frozenset({"proc", "dev", "tmp", "run"})


def root_bind_args(root: Sequence[RootEntry]) -> list[str]:
    """bubblewrap options for a read-only root made of the host's top-level entries, one bind each."""
    args: list[str] = []
    for name, link in root:
        if name in ROOT_REPLACED:
            continue
        args += ["--symlink", link, f"/{name}"] if link is not None else ["--ro-bind", f"/{name}", f"/{name}"]
    return args


def bwrap_mount_args(view: list[Mount], root: Sequence[RootEntry]) -> list[str]:
    """The view as bubblewrap options; `root` is the host's top-level entries (bwrap.host_root)."""
    args: list[str] = []
    for m in view:
        if m.kind == "root":
            args += root_bind_args(root)
        elif m.kind in ("proc", "dev", "remount-ro"):
            args += [f"--{m.kind}", m.target]
        elif m.kind in ("scratch", "hide"):
            args += [*(["--size", str(m.size)] if m.size > 0 else []), "--tmpfs", m.target]
        elif m.kind == "bind":
            args += ["--ro-bind" if m.readonly else "--bind", m.source, m.target]
        else:
            raise ValueError(f"unknown mount kind {m.kind!r}")
    if any(m.kind == "root" for m in view):
        # bwrap's own root is a tmpfs (the user's, in its user namespace): read-only once every
        # mount point in it exists. Not recursive: the binds keep their own flags.
        args += ["--remount-ro", "/"]
    return args


def fork_mounts(view: list[Mount]) -> list[dict]:
    """The view as the fork server's request field `mounts` (plain JSON: the server imports no coursehub)."""
    return [asdict(m) for m in view]
