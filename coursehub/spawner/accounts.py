"""Hub users -> Unix accounts: a pure name mapping and an idempotent `ensure_unix_account`."""

from __future__ import annotations

import fcntl
import grp
import hashlib
import logging
import os
import pwd
import re
import shutil
import subprocess
import threading
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import SandboxError

log = logging.getLogger(__name__)
MAX_UNIX_NAME = 32
_CLEAN = re.compile(r"^[a-z][a-z0-9-]*$")
_LOCK = threading.Lock()
LOCK_FILE = Path("/run/coursehub-useradd.lock")
# Every student account is in this group (for sshd's DenyGroups, docs/security.md) and expired on day 1
# for PAM: coursehub never logs anyone in through PAM, so an ssh key a student writes into their home
# (or a cron job) gets nothing outside the sandbox.
STUDENT_GROUP = "coursehub-students"
EXPIRED = "1970-01-02"


@dataclass(frozen=True)
class UnixAccount:
    """The Unix identity a hub user's servers run as."""

    name: str
    uid: int
    gid: int
    home: Path


def unix_name(hub_name: str, prefix: str = "ch-") -> str:
    """A valid, unique Unix name for any hub username (e-mail, unicode, 200 characters...)."""
    if _CLEAN.fullmatch(hub_name) and len(prefix) + len(hub_name) <= MAX_UNIX_NAME:
        return prefix + hub_name
    ascii_name = unicodedata.normalize("NFKD", hub_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")
    # A digest keeps names that collide after sanitising apart (Ana@x and ana-x, say).
    digest = hashlib.sha256(hub_name.encode()).hexdigest()[:10]
    room = MAX_UNIX_NAME - len(prefix) - len(digest) - 1
    slug = slug[:room].strip("-")
    return f"{prefix}{slug}-{digest}" if slug else f"{prefix}{digest}"


def owner_marker(hub_name: str) -> str:
    """The GECOS field that binds a Unix account to exactly one hub user."""
    return "coursehub " + hashlib.sha256(hub_name.encode()).hexdigest()[:40]


def ensure_unix_account(hub_name: str, prefix: str, home_root: Path) -> UnixAccount:
    """Create (once) the account and 0700 home of `hub_name`; refuse an account owned by another."""
    name = unix_name(hub_name, prefix)
    home = home_root / name
    with _LOCK, _file_lock():
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            entry = _useradd(name, home, owner_marker(hub_name))
        if entry.pw_gecos != owner_marker(hub_name):
            raise SandboxError(
                f"Unix account {name} already exists and belongs to someone else; "
                f"ask an admin to set sandbox.user_prefix or remove that account"
            )
        _close_logins(name)
    _ensure_home(Path(entry.pw_dir), entry.pw_uid, entry.pw_gid, home_root)
    return UnixAccount(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))


def _useradd(name: str, home: Path, marker: str) -> pwd.struct_passwd:
    """Run useradd for a login-less account with its own group."""
    cmd = [
        "useradd",
        "--no-create-home",
        "--home-dir",
        str(home),
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        marker,
        "--user-group",
        "--expiredate",
        EXPIRED,
        "--groups",
        _student_group(),
        name,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise SandboxError(f"could not create Unix account {name}: {result.stderr.strip()}")
    log.info("created Unix account %s", name)
    return pwd.getpwnam(name)


def login_fixes(expiry: str, in_group: bool) -> list[str]:
    """usermod options that close an account to PAM logins (pure): [] when it already is.

    `expiry` is the account's expiry field of /etc/shadow (days since 1970, '' for never).
    """
    fixes = []
    if not expiry.isdigit() or int(expiry) > 1:
        fixes += ["--expiredate", EXPIRED]
    if not in_group:
        fixes += ["--append", "--groups", STUDENT_GROUP]
    return fixes


def _close_logins(name: str) -> None:
    """Expire `name` for PAM and put it in the students' group, if an older coursehub made it without."""
    fixes = login_fixes(_shadow_expiry(name), name in grp.getgrnam(_student_group()).gr_mem)
    if fixes:
        result = subprocess.run(["usermod", *fixes, name], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SandboxError(f"could not close Unix account {name} to logins: {result.stderr.strip()}")
        log.info("closed Unix account %s to PAM logins", name)


def _shadow_expiry(name: str) -> str:
    """The account expiry field of `name` in /etc/shadow ('' when it has none)."""
    with open("/etc/shadow") as shadow:
        for line in shadow:
            fields = line.rstrip("\n").split(":")
            if fields[0] == name and len(fields) > 7:
                return fields[7]
    return ""


def _student_group() -> str:
    """The students' group, created (as a system group) the first time."""
    try:
        grp.getgrnam(STUDENT_GROUP)
    except KeyError:
        result = subprocess.run(
            ["groupadd", "--system", STUDENT_GROUP], capture_output=True, text=True, timeout=60
        )
        if result.returncode not in (0, 9):  # 9: created meanwhile by another hub
            raise SandboxError(f"could not create group {STUDENT_GROUP}: {result.stderr.strip()}") from None
    return STUDENT_GROUP


def _ensure_home(home: Path, uid: int, gid: int, home_root: Path) -> None:
    """A private home: 0700, owned by the user, under a root-owned 0755 parent."""
    home_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    home.mkdir(mode=0o700, exist_ok=True)
    stat = home.lstat()
    if home.is_symlink() or stat.st_uid not in (uid, 0):
        raise SandboxError(f"{home} is not a plain folder owned by its user; refusing to use it")
    os.chown(home, uid, gid)
    os.chmod(home, 0o700)


class _file_lock:
    """Serialise useradd across processes (useradd's own lock fails instead of waiting)."""

    def __enter__(self) -> None:
        self.fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


@contextmanager
def passwd_lock() -> Iterator[None]:
    """Hold the lock every coursehub useradd and userdel takes (useradd fails while /etc/passwd is locked)."""
    with _LOCK, _file_lock():
        yield


def delete_unix_account(name: str, remove_home: bool = False) -> None:
    """Remove a coursehub-created account (and optionally its home)."""
    entry = pwd.getpwnam(name)
    if not entry.pw_gecos.startswith("coursehub "):
        raise SandboxError(f"{name} was not created by coursehub; not deleting it")
    cmd = ["userdel", *(["--remove"] if remove_home else []), name]
    # Locked like useradd: an unlocked userdel makes a concurrent useradd fail ("cannot lock /etc/passwd").
    with passwd_lock():
        subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)


def remove_account_and_home(name: str, home_root: Path) -> None:
    """Delete a coursehub account and its home folder (only one under `home_root`)."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return
    home = Path(entry.pw_dir)
    delete_unix_account(name)
    if home.parent == home_root and home.name == name and not home.is_symlink():
        shutil.rmtree(home, ignore_errors=True)
