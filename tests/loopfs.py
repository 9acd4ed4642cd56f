"""Loop-mounted file systems for homes in the disk quota tests, always unmounted and detached after."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import eventually

# (file system, mkfs command, mount options, whether project quotas are enforced): the first that
# mounts wins. Kernels without ext4's quota formats (CONFIG_QFMT_V2) refuse even to mount an ext4
# with the quota feature, and kernels without CONFIG_XFS_QUOTA refuse XFS's prjquota: the last
# choice is XFS without quotas, where project ids work but limits do not.
CHOICES = (
    ("ext4", ["mkfs.ext4", "-q", "-F", "-O", "quota,project"], "prjquota", True),
    ("xfs", ["mkfs.xfs", "-q", "-f"], "prjquota", True),
    ("xfs", ["mkfs.xfs", "-q", "-f"], "noquota", False),
)
SIZE = 320 * 1024**2  # XFS's smallest


@dataclass(frozen=True)
class LoopFS:
    mount: Path
    fstype: str
    enforced: bool
    device: str


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@contextlib.contextmanager
def loop_filesystem(base: Path, want_quota: bool = True) -> Iterator[LoopFS]:
    """A fresh file system at base/homes on a sparse file (with enforced project quotas if the kernel can)."""
    image, mount = base / "homes.img", base / "homes"
    mount.mkdir(mode=0o755, exist_ok=True)
    tried = []
    for fstype, mkfs, options, enforced in CHOICES:
        if enforced and not want_quota:
            continue
        if not shutil.which(mkfs[0]):
            tried.append(f"{fstype}: {mkfs[0]} is not installed")
            continue
        with open(image, "wb") as f:
            f.truncate(SIZE)
        made = _run(*mkfs, str(image))
        if made.returncode != 0:
            tried.append(f"{fstype}: {made.stderr.strip()}")
            continue
        device = _run("losetup", "--find", "--show", str(image)).stdout.strip()
        if not device:
            tried.append(f"{fstype}: no free loop device")
            continue
        mounted = _run("mount", "-t", fstype, "-o", options, device, str(mount))
        if mounted.returncode != 0:
            _run("losetup", "-d", device)
            tried.append(f"{fstype} -o {options}: {mounted.stderr.strip()}")
            continue
        os.chmod(mount, 0o755)
        try:
            yield LoopFS(mount, fstype, enforced, device)
        finally:
            # A process of a stopping server may still hold a file: retry until a deadline, then detach.
            if not eventually(lambda: _run("umount", str(mount)).returncode == 0, timeout=10):
                _run("umount", "-l", str(mount))
            _run("losetup", "-d", device)
            image.unlink(missing_ok=True)
        return
    raise RuntimeError("no loop file system could be made: " + "; ".join(tried))
