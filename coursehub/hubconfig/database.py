"""The hub database in the traitlets config: SQLite in the state folder, or the configured URL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from traitlets.config import Config

from coursehub.settings.database import check_url, is_postgres

from ..paths import StatePaths
from ..settings import Settings

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime


def sqlite_url(paths: StatePaths) -> str:
    """The embedded default: a SQLite file in the state folder."""
    return f"sqlite:///{paths.db}"


def effective_url(settings: Settings, paths: StatePaths, env_url: str | None, password: str | None) -> str:
    """The URL the hub connects with: $COURSEHUB_DATABASE_URL, else database.url (+ password), else SQLite."""
    if env_url:
        return check_url(env_url, source="COURSEHUB_DATABASE_URL", allow_password=True)
    if not settings.database.url:
        return sqlite_url(paths)
    from sqlalchemy.engine import make_url  # here: 0.18 s to import, for PostgreSQL only

    url = make_url(settings.database.url)
    if url.drivername == "postgresql":
        # Name the driver: a bare postgresql:// means psycopg2 to SQLAlchemy < 2.1, psycopg 3 after.
        url = url.set(drivername="postgresql+psycopg")
    if password is not None:
        url = url.set(password=password)
    # SQLAlchemy quotes the password, so any character in it survives the URL.
    return url.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    """`url` safe to print or log."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def apply_database(settings: Settings, runtime: Runtime, c: Config) -> None:
    """c.JupyterHub.db_url (resolved by the caller, secrets included) and PostgreSQL pool options."""
    c.JupyterHub.db_url = runtime.db_url or sqlite_url(runtime.paths)
    if is_postgres(c.JupyterHub.db_url):
        # pre_ping: a connection dropped by a database restart is replaced, not raised as a 500.
        c.JupyterHub.db_kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
