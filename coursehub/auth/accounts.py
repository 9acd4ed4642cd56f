"""Workshop accounts kept in one SQLite file shared by the hub and the CLI."""

from __future__ import annotations

import logging
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from coursehub.auth.lockout import user_key
from coursehub.errors import AccountError

log = logging.getLogger(__name__)

PREFIX_RE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
USERNAME_RE = re.compile(r"^[a-z][a-z0-9._-]{0,39}$")
MAX_BATCH = 5000
# No 0/O/1/l/I, and lowercase only: people copy these from a printed card.
PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
MIN_PASSWORD_LEN = 8
MAX_PASSWORD_LEN = 1024
# Seconds a connection waits for another process's write lock before failing.
BUSY_TIMEOUT = 15.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS retired (
    username TEXT PRIMARY KEY,
    retired_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS revocations (
    username TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    count INTEGER NOT NULL,
    first_at REAL NOT NULL,
    locked_until REAL
);
"""


@dataclass(frozen=True)
class Credential:
    """A username with its plaintext password, as printed on a card."""

    username: str
    password: str


@dataclass(frozen=True)
class AccountInfo:
    """What `AccountStore.list` reports about one account (never the hash)."""

    username: str
    enabled: bool
    is_admin: bool
    created_at: datetime
    locked_until: datetime | None


def password_hasher() -> PasswordHasher:
    """argon2id at OWASP's recommended minimum (19 MiB, 2 passes, 1 lane).

    argon2-cffi's default (64 MiB, 3 passes, 4 lanes) costs 0.16 CPU-s per login on a 2-core
    machine: a class of 50 logging in at once queued 8 CPU-s of hashing in front of its
    servers. Generated passwords carry ~60 bits, so the hash's cost adds little to their
    strength; hashes made with other parameters still verify and are redone at the next login.
    """
    return PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def generate_password() -> str:
    """Return a random password like `k7pq-3xwe-m9ha` (12 characters, about 60 bits)."""
    chars = "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(12))
    return "-".join(chars[i : i + 4] for i in range(0, 12, 4))


def _check_username(username: str) -> None:
    if not USERNAME_RE.match(username):
        raise AccountError(
            f"invalid username {username!r}: use a lowercase letter then up to 39 "
            "lowercase letters, digits, '.', '_' or '-'"
        )


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


class AccountStore:
    """Workshop accounts and failed-login counters in one SQLite file."""

    def __init__(self, path: Path | str, *, hasher: PasswordHasher | None = None) -> None:
        self.path = Path(path)
        self.hasher = hasher or password_hasher()
        self._dummy_hash: str | None = None
        self._create_file()
        with closing(self._open()) as conn:
            # WAL lets the hub read while the CLI writes; the mode sticks to the file.
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(SCHEMA)

    def _create_file(self) -> None:
        if not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, mode=0o700)
        # Create it ourselves so it is never world-readable, even for a moment;
        # SQLite gives its -wal and -shm files the same mode.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)

    def _open(self) -> sqlite3.Connection:
        # Autocommit mode: transactions are begun explicitly in `transaction`.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
        return conn

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """Yield a short-lived autocommit connection, for reads."""
        with closing(self._open()) as conn:
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Yield a connection inside a write transaction, committed on success."""
        with closing(self._open()) as conn:
            # IMMEDIATE takes the write lock up front, so read-then-write cannot
            # deadlock with another process doing the same.
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _hash_many(self, passwords: list[str]) -> list[str]:
        # argon2 releases the GIL, so threads use every core for big batches.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            return list(pool.map(self.hasher.hash, passwords))

    def create_batch(self, prefix: str, count: int, *, start: int | None = None) -> list[Credential]:
        """Create `count` accounts `<prefix>-NN`, numbered after the highest taken or from start."""
        if not PREFIX_RE.match(prefix):
            raise AccountError(
                f"invalid prefix {prefix!r}: use a lowercase letter then up to 19 lowercase "
                "letters, digits or '-', e.g. 'esip'"
            )
        if not 1 <= count <= MAX_BATCH:
            raise AccountError(f"cannot create {count} accounts: choose a count from 1 to {MAX_BATCH}")
        if start is not None and start < 1:
            raise AccountError(f"invalid start {start}: account numbers start at 1 or more")
        passwords = [generate_password() for _ in range(count)]
        # Hash before taking the write lock: this is the slow part, and the hub must
        # keep recording logins meanwhile.
        hashes = self._hash_many(passwords)
        now = time.time()
        with self.transaction() as conn:
            numbers = self._free_numbers(conn, prefix, count, start)
            width = max(2, len(str(numbers[-1])))
            names = [f"{prefix}-{n:0{width}d}" for n in numbers]
            conn.executemany(
                "INSERT INTO accounts (username, password_hash, enabled, created_at, is_admin)"
                " VALUES (?, ?, 1, ?, 0)",
                [(name, h, now) for name, h in zip(names, hashes, strict=True)],
            )
        log.info("created %d accounts %s .. %s", count, names[0], names[-1])
        return [Credential(n, p) for n, p in zip(names, passwords, strict=True)]

    @staticmethod
    def _free_numbers(conn: sqlite3.Connection, prefix: str, count: int, start: int | None) -> list[int]:
        pattern = re.compile(rf"^{re.escape(prefix)}-(\d+)$")
        rows = conn.execute(
            "SELECT username FROM accounts WHERE username GLOB ?1 UNION SELECT username FROM retired"
            " WHERE username GLOB ?1",
            (prefix + "-*",),
        )
        used = {int(m.group(1)) for (name,) in rows if (m := pattern.match(name))}
        # Deleted names are retired, never reissued: the next participant must not get the old
        # participant's home, hub user, cookies or tokens. Continue after the highest number.
        n = max(used, default=0) + 1 if start is None else start
        numbers: list[int] = []
        while len(numbers) < count:
            if n not in used:
                numbers.append(n)
            n += 1
        return numbers

    def create(self, username: str, password: str | None = None, *, is_admin: bool = False) -> Credential:
        """Create one account, with a random password unless one is given."""
        _check_username(username)
        if password is None:
            password = generate_password()
        elif not MIN_PASSWORD_LEN <= len(password) <= MAX_PASSWORD_LEN:
            raise AccountError(
                f"password for {username!r} must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} "
                "characters: choose another, or leave it out to get a random one"
            )
        hashed = self.hasher.hash(password)
        try:
            with self.transaction() as conn:
                if conn.execute("SELECT 1 FROM retired WHERE username = ?", (username,)).fetchone():
                    raise AccountError(
                        f"account {username!r} was deleted, and names are never reissued (its home "
                        "and hub user may still exist): choose another name"
                    )
                conn.execute(
                    "INSERT INTO accounts (username, password_hash, enabled, created_at, is_admin)"
                    " VALUES (?, ?, 1, ?, ?)",
                    (username, hashed, time.time(), int(is_admin)),
                )
        except sqlite3.IntegrityError:
            raise AccountError(
                f"account {username!r} already exists: use `coursehub accounts reset {username}` "
                "for a new password"
            ) from None
        log.info("created %saccount %s", "admin " if is_admin else "", username)
        return Credential(username, password)

    def ensure_admin(self, username: str) -> Credential | None:
        """Create admin `username` with a random password if missing; None if it existed."""
        _check_username(username)
        # An existing account named as admin in the config becomes one.
        with self.transaction() as conn:
            cur = conn.execute("UPDATE accounts SET is_admin = 1 WHERE username = ?", (username,))
        if cur.rowcount:
            return None
        try:
            return self.create(username, is_admin=True)
        except AccountError:
            # Another process created it between our two transactions.
            return None

    def list(self, now: float | None = None) -> list[AccountInfo]:
        """Return every account, sorted by username, with any current lockout."""
        now = time.time() if now is None else now
        with self.connect() as conn:
            rows = conn.execute(
                "SELECT a.username, a.enabled, a.is_admin, a.created_at, f.locked_until"
                " FROM accounts a LEFT JOIN failures f"
                " ON f.key = 'user:' || a.username AND f.locked_until > ?"
                " ORDER BY a.username",
                (now,),
            ).fetchall()
        return [
            AccountInfo(name, bool(en), bool(adm), _utc(created), _utc(lk) if lk else None)
            for name, en, adm, created, lk in rows
        ]

    def _update(
        self,
        username: str,
        sql: str,
        params: tuple = (),
        *,
        clear_lockout: bool = False,
        revoke: bool = False,
        retire: bool = False,
    ) -> None:
        with self.transaction() as conn:
            cur = conn.execute(sql, (*params, username))
            if cur.rowcount == 0:
                raise AccountError(f"account {username!r} does not exist: see `coursehub accounts list`")
            if clear_lockout:
                conn.execute("DELETE FROM failures WHERE key = ?", (user_key(username),))
            if retire:
                conn.execute(
                    "INSERT OR REPLACE INTO retired (username, retired_at) VALUES (?, ?)",
                    (username, time.time()),
                )
            if revoke:
                # Done by the hub (`revoked` clears it): at once if it runs, else when it next starts.
                conn.execute(
                    "INSERT OR REPLACE INTO revocations (username, requested_at) VALUES (?, ?)",
                    (username, time.time()),
                )

    def pending_revocations(self) -> list[str]:
        """Usernames whose hub sessions, tokens and servers must still be ended."""
        with self.connect() as conn:
            return [name for (name,) in conn.execute("SELECT username FROM revocations ORDER BY username")]

    def revoked(self, username: str) -> None:
        """Record that the hub has ended `username`'s sessions, tokens and servers."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM revocations WHERE username = ?", (username,))

    def disable(self, username: str) -> None:
        """Refuse further logins to `username` (the account and its files stay)."""
        self._update(username, "UPDATE accounts SET enabled = 0 WHERE username = ?", revoke=True)
        log.info("disabled account %s", username)

    def enable(self, username: str) -> None:
        """Allow logins to a disabled account again."""
        self._update(username, "UPDATE accounts SET enabled = 1 WHERE username = ?")
        log.info("enabled account %s", username)

    def delete(self, username: str) -> None:
        """Delete the account and its failure counter; the name is retired for good."""
        self._update(
            username, "DELETE FROM accounts WHERE username = ?", clear_lockout=True, revoke=True, retire=True
        )
        log.info("deleted account %s", username)

    def reset(self, username: str) -> Credential:
        """Give `username` a new random password and clear its lockout."""
        password = generate_password()
        hashed = self.hasher.hash(password)
        self._update(
            username,
            "UPDATE accounts SET password_hash = ? WHERE username = ?",
            (hashed,),
            clear_lockout=True,
            revoke=True,
        )
        log.info("reset password of account %s", username)
        return Credential(username, password)

    def exists(self, username: str, *, enabled_only: bool = False) -> bool:
        """Return whether the account exists (and, if asked, is enabled)."""
        with self.connect() as conn:
            row = conn.execute("SELECT enabled FROM accounts WHERE username = ?", (username,)).fetchone()
        return row is not None and (bool(row[0]) or not enabled_only)

    def is_admin(self, username: str) -> bool:
        """Return whether the account exists and is flagged admin."""
        with self.connect() as conn:
            row = conn.execute("SELECT is_admin FROM accounts WHERE username = ?", (username,)).fetchone()
        return row is not None and bool(row[0])

    def verify(self, username: str, password: str) -> bool:
        """Return True only for an existing, enabled account and its correct password."""
        if not password or len(password) > MAX_PASSWORD_LEN:
            return False
        with self.connect() as conn:
            row = conn.execute(
                "SELECT password_hash, enabled FROM accounts WHERE username = ?", (username,)
            ).fetchone()
        if row is None:
            # Spend the same argon2 time so response times do not reveal usernames.
            self._check(self._dummy(), password)
            return False
        stored, enabled = row
        if not self._check(stored, password) or not enabled:
            return False
        if self.hasher.check_needs_rehash(stored):
            self._rehash(username, stored, password)
        return True

    def _check(self, stored: str, password: str) -> bool:
        try:
            return self.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash(secrets.token_urlsafe(16))
        return self._dummy_hash

    def _rehash(self, username: str, stored: str, password: str) -> None:
        hashed = self.hasher.hash(password)
        with self.transaction() as conn:
            # Only replace the hash we verified: a concurrent reset must win.
            conn.execute(
                "UPDATE accounts SET password_hash = ? WHERE username = ? AND password_hash = ?",
                (hashed, username, stored),
            )
        log.info("rehashed password of account %s with current parameters", username)
