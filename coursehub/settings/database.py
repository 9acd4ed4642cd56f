"""The `database:` section: where the hub keeps its state (SQLite by default, or PostgreSQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from coursehub.settings.base import Model

# What coursehub tests and ships a driver for (the `postgres` extra installs psycopg 3).
DRIVERS = ("sqlite", "postgresql", "postgresql+psycopg")
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
URL_ENV = "COURSEHUB_DATABASE_URL"  # wins over the file: a full URL, password allowed


class DatabaseSettings(Model):
    """The hub's database; the password never lives in coursehub.yaml."""

    url: str | None = Field(
        None,
        description="SQLAlchemy URL without a password, e.g. postgresql://hub@db.example.org/coursehub "
        f"(default: SQLite in the state folder). ${URL_ENV} overrides it.",
    )
    password_env: str | None = Field(
        None, pattern=ENV_NAME, description="Environment variable holding the database password."
    )
    password_file: Path | None = Field(
        None, description="File (mode 0600, owned by root) holding the database password."
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return check_url(value, source="the URL")

    @field_validator("password_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_absolute():
            raise ValueError(f"{value} must be an absolute path")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> DatabaseSettings:
        if self.password_env and self.password_file:
            raise ValueError("set database.password_env or database.password_file, not both")
        if (self.password_env or self.password_file) and not is_postgres(self.url):
            raise ValueError("a database password needs a postgresql:// database.url")
        return self


def check_url(value: Any, source: str, allow_password: bool = False) -> str:
    """A database URL coursehub can use; ValueError saying what to change otherwise."""
    # Imported here: SQLAlchemy takes 0.18 s to import, and every CLI command loads the settings,
    # most of them with no database URL to check.
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(str(value))
    except (ArgumentError, ValueError) as exc:
        raise ValueError(f"{source} is not a database URL such as postgresql://user@host/db: {exc}") from None
    if url.drivername not in DRIVERS:
        raise ValueError(f"{source}: '{url.drivername}' is not supported; use one of {', '.join(DRIVERS)}")
    if (url.password is not None or "password" in url.query) and not allow_password:
        raise ValueError(
            f"{source} contains a password: remove it from the URL and put it in an environment "
            f"variable named by database.password_env, a 0600 file named by database.password_file, "
            f"or give the whole URL in ${URL_ENV}"
        )
    return str(value)


def is_postgres(url: str | None) -> bool:
    """True for a PostgreSQL URL (any driver)."""
    return bool(url) and str(url).startswith("postgresql")
