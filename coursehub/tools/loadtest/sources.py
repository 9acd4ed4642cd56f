"""Who the simulated students are: workshop accounts from a CSV, dummy users, or guests (pure + file read)."""

from __future__ import annotations

import csv
from pathlib import Path

from coursehub.errors import ConfigError
from coursehub.tools.loadtest.students import Credential

MAX_USERS = 5000


def from_csv(path: Path, limit: int | None = None) -> list[Credential]:
    """Credentials from a CSV with `username` and `password` columns (`coursehub accounts create`)."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = {"username", "password"} - set(reader.fieldnames or [])
            if missing:
                raise ConfigError(
                    f"{path} has no {' or '.join(sorted(missing))} column: use the CSV written by "
                    "`coursehub accounts create` (columns username,password)"
                )
            creds = [Credential(row["username"], row["password"]) for row in reader if row["username"]]
    except OSError as exc:
        raise ConfigError(f"cannot read accounts from {path}: {exc.strerror}") from exc
    if not creds:
        raise ConfigError(f"{path} lists no accounts")
    return creds[:limit] if limit else creds


def dummy_users(count: int, password: str = "", prefix: str = "loadtest") -> list[Credential]:
    """`count` users for a hub with JupyterHub's DummyAuthenticator: prefix-001, prefix-002, …"""
    _check_count(count)
    width = max(2, len(str(count)))
    return [Credential(f"{prefix}-{i:0{width}d}", password) for i in range(1, count + 1)]


def guests(count: int) -> list[Credential]:
    """Placeholders for temporary users: each gets its real name from the hub at login."""
    _check_count(count)
    width = max(2, len(str(count)))
    return [Credential(f"guest-{i:0{width}d}", "") for i in range(1, count + 1)]


def _check_count(count: int) -> None:
    if not 1 <= count <= MAX_USERS:
        raise ConfigError(f"the number of simulated students must be within 1 and {MAX_USERS}, not {count}")


def choose_students(
    accounts: Path | None,
    dummy: int | None,
    guest_course: str | None,
    users: int | None,
    password: str = "",
    prefix: str = "loadtest",
) -> list[Credential]:
    """The students of exactly one source: a CSV of accounts, N dummy users, or N guests."""
    given = [source for source in (accounts, dummy, guest_course) if source]
    if len(given) != 1:
        raise ConfigError(
            "choose the students with exactly one of --accounts FILE, --dummy N, --tmplogin COURSE"
        )
    if accounts is not None:
        return from_csv(accounts, users)
    if dummy is not None:
        return dummy_users(dummy, password, prefix)
    if users is None:
        raise ConfigError("--tmplogin needs --users N: how many temporary users to create")
    return guests(users)
