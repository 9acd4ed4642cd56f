"""`coursehub backup` / `restore`: hub database, workshop accounts, cookie secret, catalog, settings."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from coursehub import __version__
from coursehub.errors import BackupError
from coursehub.paths import StatePaths
from coursehub.settings.database import is_postgres

FORMAT = 1
MANIFEST = "manifest.json"
HUB_SQLITE, HUB_PGDUMP = "jupyterhub.sqlite", "jupyterhub.pgdump"
ACCOUNTS, COOKIE, CATALOG, SETTINGS = "accounts.sqlite", "cookie_secret", "catalog.json", "coursehub.yaml"
PG_TIMEOUT = 600


@dataclass(frozen=True)
class Summary:
    """What a backup holds (or a restore put back)."""

    archive: Path
    database: str  # "sqlite" or "postgresql"
    members: tuple[str, ...]


def create_backup(paths: StatePaths, db_url: str, settings_yaml: str, archive: Path) -> Summary:
    """Write one 0600 tar of the hub's state to `archive` (the hub may keep running)."""
    kind = "postgresql" if is_postgres(db_url) else "sqlite"
    with _private_dir() as tmp:
        files: dict[str, Path] = {}
        if kind == "postgresql":
            files[HUB_PGDUMP] = _pg_dump(db_url, tmp / HUB_PGDUMP)
        else:
            files[HUB_SQLITE] = _sqlite_copy(_sqlite_path(db_url), tmp / HUB_SQLITE)
        if paths.accounts.exists():
            files[ACCOUNTS] = _sqlite_copy(paths.accounts, tmp / ACCOUNTS)
        if paths.cookie_secret.exists():
            files[COOKIE] = paths.cookie_secret
        catalog = paths.courses / CATALOG
        if catalog.exists():
            files[CATALOG] = catalog
        (tmp / SETTINGS).write_text(settings_yaml)
        files[SETTINGS] = tmp / SETTINGS
        manifest = {
            "format": FORMAT,
            "coursehub": __version__,
            "created": time.time(),
            "database": kind,
            "state_dir": str(paths.root),
            "members": sorted(files),
        }
        _write_tar(archive, manifest, files)
    return Summary(archive, kind, tuple(sorted(files)))


def restore_backup(
    paths: StatePaths, db_url: str, archive: Path, running_pid: int | None, force: bool
) -> Summary:
    """Put an archive's state into `paths` (and the configured database); never under a running hub."""
    if running_pid is not None:
        raise BackupError(
            f"a hub is running from {paths.root} (pid {running_pid}): stop it with `coursehub down` "
            "before restoring over its state"
        )
    kind = "postgresql" if is_postgres(db_url) else "sqlite"
    with _open_archive(archive) as tar:
        manifest = _manifest(tar, archive)
        if manifest["database"] != kind:
            raise BackupError(
                f"{archive} holds a {manifest['database']} hub database but this hub is configured for "
                f"{kind}; restore with the same database.url kind (copying between the two is not supported)"
            )
        if not force and _has_state(paths, db_url):
            raise BackupError(
                f"{paths.root} already holds a hub's state; restore into a fresh state folder, "
                "or pass --force to replace it"
            )
        paths.root.mkdir(parents=True, exist_ok=True)
        with _private_dir() as tmp:
            if kind == "postgresql":
                _pg_restore(db_url, _extract(tar, HUB_PGDUMP, tmp))
            else:
                _install(_extract(tar, HUB_SQLITE, tmp), _sqlite_path(db_url))
            for name, target in ((ACCOUNTS, paths.accounts), (COOKIE, paths.cookie_secret)):
                if name in manifest["members"]:
                    _install(_extract(tar, name, tmp), target)
            if CATALOG in manifest["members"]:
                text = _extract(tar, CATALOG, tmp).read_text()
                # Paths in the catalog name the old state folder; `up` rebuilds what is missing there.
                paths.courses.mkdir(parents=True, exist_ok=True)
                _install_text(text.replace(manifest["state_dir"], str(paths.root)), paths.courses / CATALOG)
            _install(_extract(tar, SETTINGS, tmp), paths.root / "coursehub.yaml.from-backup")
    return Summary(archive, kind, tuple(manifest["members"]))


def _sqlite_path(db_url: str) -> Path:
    database = make_url(db_url).database
    if not database or database == ":memory:":
        raise BackupError(f"the hub database {db_url} is not a SQLite file")
    return Path(database)


def _sqlite_copy(source: Path, target: Path) -> Path:
    """A consistent copy of a live SQLite file (its backup API, not a racy file copy)."""
    if not source.exists():
        raise BackupError(f"{source} does not exist: has this hub ever started?")
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return target


def _install(source: Path, target: Path) -> None:
    """Move a file into place atomically, 0600 (every member is a secret or names one)."""
    tmp = target.with_name(f".{target.name}.restore")
    shutil.copyfile(source, tmp)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
    for suffix in ("-wal", "-shm", "-journal"):
        # A stale write-ahead log of the replaced database would be replayed into the restored one.
        target.with_name(target.name + suffix).unlink(missing_ok=True)


def _install_text(text: str, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.restore")
    tmp.write_text(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)


def _has_state(paths: StatePaths, db_url: str) -> bool:
    """True when restoring would replace accounts or a used hub database."""
    if paths.accounts.exists() and paths.accounts.stat().st_size > 0:
        return True
    return (
        not is_postgres(db_url) and _sqlite_path(db_url).exists() and _sqlite_path(db_url).stat().st_size > 0
    )


@contextmanager
def _private_dir() -> Iterator[Path]:
    """A 0700 scratch folder (tempfile makes it so), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="coursehub-backup-") as tmp:
        yield Path(tmp)


def _write_tar(archive: Path, manifest: dict, files: dict[str, Path]) -> None:
    """The tar, created 0600 before any secret is written to it."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    tmp = archive.with_name(f".{archive.name}.partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        data = json.dumps(manifest, indent=1).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o600, int(time.time())
        tar.addfile(info, io.BytesIO(data))
        for name, path in sorted(files.items()):
            info = tar.gettarinfo(str(path), arcname=name)
            info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
            with path.open("rb") as f:
                tar.addfile(info, f)
    os.replace(tmp, archive)


@contextmanager
def _open_archive(archive: Path) -> Iterator[tarfile.TarFile]:
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            yield tar
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{archive} is not a coursehub backup: {exc}") from None


def _manifest(tar: tarfile.TarFile, archive: Path) -> dict:
    try:
        manifest = json.loads(_member_bytes(tar, MANIFEST))
        if manifest.get("format") != FORMAT or manifest.get("database") not in ("sqlite", "postgresql"):
            raise ValueError("unknown format")
        members = [str(m) for m in manifest["members"]]
        if not set(members) <= {HUB_SQLITE, HUB_PGDUMP, ACCOUNTS, COOKIE, CATALOG, SETTINGS}:
            raise ValueError("unknown members")
        return {**manifest, "members": members, "state_dir": str(manifest["state_dir"])}
    except (ValueError, KeyError, TypeError) as exc:
        raise BackupError(f"{archive} is not a coursehub backup (format {FORMAT}): {exc}") from None


def _member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    """One regular member's bytes; names come from our list, never from the archive (no path tricks)."""
    try:
        member = tar.getmember(name)
    except KeyError:
        raise BackupError(f"the backup has no {name}") from None
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise BackupError(f"{name} in the backup is not a regular file")
    return f.read()


def _extract(tar: tarfile.TarFile, name: str, tmp: Path) -> Path:
    target = tmp / name
    target.write_bytes(_member_bytes(tar, name))
    return target


def _pg_tool(name: str) -> str:
    """pg_dump/pg_restore: on PATH, or the newest of Debian's versioned installs."""
    found = shutil.which(name)
    versions = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), key=lambda p: int(p.parts[-3]))
    if versions:
        return str(versions[-1])
    if found:
        return found
    raise BackupError(f"{name} is not installed: apt-get install postgresql-client")


def _pg_env(db_url: str) -> dict[str, str]:
    """libpq's variables for `db_url`: the password stays out of the command line (and `ps`)."""
    url = make_url(db_url)
    env = {**os.environ}
    pairs = {
        "PGHOST": url.host or url.query.get("host"),
        "PGPORT": url.port or url.query.get("port"),
        "PGUSER": url.username,
        "PGPASSWORD": url.password,
        "PGDATABASE": url.database,
    }
    env.update({key: str(value) for key, value in pairs.items() if value})
    return env


def _pg_run(cmd: list[str], db_url: str, what: str) -> None:
    try:
        result = subprocess.run(cmd, env=_pg_env(db_url), capture_output=True, text=True, timeout=PG_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} took longer than {PG_TIMEOUT} s") from None
    if result.returncode != 0:
        raise BackupError(f"{what} failed: {result.stderr.strip()[-800:]}")


def _pg_dump(db_url: str, target: Path) -> Path:
    """pg_dump's custom format: consistent while the hub runs, restorable with --clean."""
    _pg_run([_pg_tool("pg_dump"), "--format=custom", "--no-owner", f"--file={target}"], db_url, "pg_dump")
    return target


def _pg_restore(db_url: str, dump: Path) -> None:
    cmd = [
        _pg_tool("pg_restore"),
        "--clean",
        "--if-exists",
        "--no-owner",
        "--no-privileges",
        "--single-transaction",
    ]
    _pg_run([*cmd, f"--dbname={make_url(db_url).database}", str(dump)], db_url, "pg_restore")
