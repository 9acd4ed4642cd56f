"""`coursehub install` / `uninstall`: write or remove the systemd units, and tell systemd when it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from coursehub.errors import CoursehubError
from coursehub.host.runtime import REPO_ROOT, find_proxy
from coursehub.host.units import HUB_UNIT, TLS_UNIT, UNIT_DIR, Install, units
from coursehub.settings import Settings

Echo = Callable[[str], None]
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
STARTER = """\
# coursehub.yaml: the settings of this machine's hub (written by `coursehub install`).
# Every setting and its default: `coursehub config reference`. Change one with
# `coursehub config set KEY VALUE`, then apply it with `coursehub reload` (students' servers keep running).
# Running it in production: docs/production.md.
hub:
  state_dir: /var/lib/coursehub
"""


def this_install(config: Path) -> Install:
    """The units' view of this coursehub: this interpreter, the config given, the proxy on PATH."""
    folders = [str(Path(find_proxy()).parent), str(Path(sys.executable).parent), SYSTEM_PATH]
    return Install(
        python=sys.executable,
        config=config.absolute(),
        path=":".join(dict.fromkeys(folders)),
        docs=REPO_ROOT / "docs" / "production.md",
    )


def under(root: Path, path: Path) -> Path:
    """`path` of the target system inside the install root."""
    return root / path.absolute().relative_to("/")


def systemd_running(root: Path) -> bool:
    """True when units written under `root` are this machine's and systemd manages it."""
    return root.resolve() == Path("/") and Path("/run/systemd/system").is_dir()


def systemctl(*args: str) -> None:
    """Run systemctl; CoursehubError with its message when it fails."""
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise CoursehubError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")


def _write(path: Path, text: str, mode: int) -> None:
    """Replace `path` atomically with `text`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def install(settings: Settings, inst: Install, root: Path, echo: Echo) -> list[Path]:
    """Write the units (and a starter config where none exists) under `root`; the unit files written."""
    config = under(root, inst.config)
    if not config.exists():
        _write(config, STARTER, 0o644)
        echo(f"Wrote a starter config: {config}")
    folder = root / UNIT_DIR
    written = []
    rendered = units(settings, inst)
    for name, text in rendered.items():
        _write(folder / name, text, 0o644)
        written.append(folder / name)
        echo(f"Wrote {folder / name}")
    if TLS_UNIT not in rendered and (folder / TLS_UNIT).exists():
        (folder / TLS_UNIT).unlink()  # tls: was removed since the last install
        echo(f"Removed {folder / TLS_UNIT} (tls: is off)")
    if systemd_running(root):
        systemctl("daemon-reload")
        systemctl("enable", HUB_UNIT)
        echo(f"Enabled {HUB_UNIT}. Start it: systemctl start coursehub (logs: journalctl -u coursehub)")
    elif root.resolve() == Path("/"):
        echo("systemd is not running on this machine: the units are written; nothing was enabled or started.")
    return written


def uninstall(root: Path, echo: Echo) -> list[Path]:
    """Stop and disable the units when systemd runs, then remove them; config and state stay."""
    folder = root / UNIT_DIR
    present = [folder / name for name in (TLS_UNIT, HUB_UNIT) if (folder / name).exists()]
    if systemd_running(root) and present:
        systemctl("disable", "--now", *(path.name for path in present))
        echo("Stopped and disabled " + ", ".join(path.name for path in present))
    for path in present:
        path.unlink()
        echo(f"Removed {path}")
    if systemd_running(root):
        systemctl("daemon-reload")
    elif root.resolve() == Path("/"):
        echo("systemd is not running on this machine: nothing was stopped or disabled.")
    if not present:
        echo(f"No coursehub units in {folder}.")
    echo("The config and the state folder (database, homes' accounts, courses) are kept.")
    return present
