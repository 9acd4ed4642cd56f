"""`coursehub backup` / `restore`: hub database, workshop accounts, cookie secret, catalog, settings, grading
(nbgrader's folders and gradebooks, the LTI grade store and tool key)."""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import shutil
import sqlite3
import stat
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
LTI_GRADES, LTI_KEY, GRADING = "lti-grades.sqlite", "lti-tool-key.pem", "grading.tar"
MEMBERS = {HUB_SQLITE, HUB_PGDUMP, ACCOUNTS, COOKIE, CATALOG, SETTINGS, LTI_GRADES, LTI_KEY, GRADING}
PG_TIMEOUT = 600
# In <state>/grading: regenerated at each server start; SQLite's side files (the database is copied whole).
GRADING_SKIPPED = ("_config",)
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")

log = logging.getLogger(__name__)


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
        if paths.lti_grades.exists():
            files[LTI_GRADES] = _sqlite_copy(paths.lti_grades, tmp / LTI_GRADES)
        if paths.lti_tool_key.exists():
            files[LTI_KEY] = paths.lti_tool_key
        if paths.grading.is_dir():
            files[GRADING] = _grading_tar(paths.grading, tmp / GRADING, tmp)
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
            secrets = (
                (ACCOUNTS, paths.accounts),
                (COOKIE, paths.cookie_secret),
                (LTI_GRADES, paths.lti_grades),
                (LTI_KEY, paths.lti_tool_key),
            )
            for name, target in secrets:
                if name in manifest["members"]:
                    _install(_extract(tar, name, tmp), target)
            if GRADING in manifest["members"]:
                _restore_grading(_extract(tar, GRADING, tmp), paths.grading)
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


def _grading_tar(grading: Path, target: Path, tmp: Path) -> Path:
    """<state>/grading as a tar with owners and modes (nbgrader's groupshared layout needs them).

    Staff and students write in it: the walk never follows a symlink (links are stored as links), and each
    gradebook.db is copied with SQLite's backup API, so a gradebook being written is saved consistent.
    """
    with tarfile.open(target, "w") as tar:
        for folder, folders, files in os.walk(grading):
            here = Path(folder)
            if here == grading:
                folders[:] = [name for name in folders if name not in GRADING_SKIPPED]
            for name in sorted([*folders, *files]):
                path = here / name
                arcname = str(path.relative_to(grading))
                try:
                    regular = stat.S_ISREG(path.lstat().st_mode)
                    if name == "gradebook.db" and regular:
                        _add_sqlite(tar, path, arcname, tmp)
                    elif regular:
                        if not name.endswith(tuple("gradebook.db" + side for side in SQLITE_SIDE_FILES)):
                            _add_regular(tar, path, arcname)
                    else:  # folders and links: their metadata only, nothing read through them
                        tar.add(path, arcname, recursive=False)
                except FileNotFoundError:
                    continue  # removed while the walk ran (before anything of it was written)
                except OSError as exc:
                    message = f"{path} changed while it was saved ({exc}); run the backup again"
                    raise BackupError(message) from None
    return target


def _add_regular(tar: tarfile.TarFile, path: Path, arcname: str) -> None:
    """A file opened without following a symlink (one swapped in after the walk saw a file is left out)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return
        raise
    with os.fdopen(fd, "rb") as opened:
        info = tar.gettarinfo(arcname=arcname, fileobj=opened)
        if info.isfile():
            tar.addfile(info, opened)


def _add_sqlite(tar: tarfile.TarFile, path: Path, arcname: str, tmp: Path) -> None:
    """A gradebook (writable by staff) into `tar`: opened without following a symlink, copied consistent."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        with os.fdopen(os.dup(fd), "rb") as opened:
            info = tar.gettarinfo(arcname=arcname, fileobj=opened)
        if not info.isfile():
            return
        copy = tmp / "gradebook-copy.db"
        copy.unlink(missing_ok=True)
        try:
            _sqlite_copy(Path(f"/proc/self/fd/{fd}"), copy)
        except sqlite3.DatabaseError as exc:  # not SQLite after all: staff may write anything there
            log.warning("left %s out of the backup: %s", path, exc)
            return
        info.size = copy.stat().st_size
        with copy.open("rb") as data:
            tar.addfile(info, data)
    finally:
        os.close(fd)


def _restore_grading(archive: Path, grading: Path) -> None:
    """Put <state>/grading back, with its owners and modes; what was there is kept aside, not merged into."""
    partial = grading.with_name(".grading.restore")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o711)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter=_inside_only)
    except (OSError, tarfile.TarError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise BackupError(f"the backup's grading folders could not be restored: {exc}") from None
    os.chmod(partial, 0o711)
    if grading.exists() or grading.is_symlink():
        grading.rename(grading.with_name(f"grading.replaced-{int(time.time())}"))
    partial.rename(grading)


def _inside_only(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """Members as they were (owners, modes with set-group-id), except any that would reach outside
    `dest` (absolute or `..` paths, links leading out, devices): those are left out."""
    try:
        tarfile.data_filter(member, dest)
    except tarfile.FilterError as exc:
        log.warning("left %s out of the restore: %s", member.name, exc)
        return None
    return member


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
        if not set(members) <= MEMBERS:
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
