"""The hub database URL with its secret, read at the edge: environment, a 0600 file, or neither."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from coursehub.errors import ConfigError
from coursehub.hubconfig.database import effective_url
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.database import URL_ENV


def read_password_file(path: Path) -> str:
    """The password in `path`, refused unless only its owner (root or us) can read it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"database.password_file {path}: cannot read it ({exc.strerror})") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"database.password_file {path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}): "
            f"run `chmod 600 {path}`"
        )
    if info.st_uid not in (0, os.geteuid()):
        raise ConfigError(f"database.password_file {path} must be owned by root (or by the hub's user)")
    return text.strip()


def database_password(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """The password from the variable or file the settings name; None when they name neither."""
    db = settings.database
    if db.password_env:
        if db.password_env not in environ:
            raise ConfigError(
                f"database.password_env names ${db.password_env}, which is not set: export it "
                "before starting coursehub"
            )
        return environ[db.password_env]
    if db.password_file:
        return read_password_file(db.password_file)
    return None


def resolve_url(settings: Settings, paths: StatePaths, environ: Mapping[str, str] = os.environ) -> str:
    """The URL the hub (and backup/restore) connect with, password included."""
    env_url = environ.get(URL_ENV)
    try:
        return effective_url(
            settings, paths, env_url, None if env_url else database_password(settings, environ)
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
