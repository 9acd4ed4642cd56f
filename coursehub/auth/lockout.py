"""Failed-login lockout and slow-down, persisted in the account store's SQLite file."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger(__name__)

USER_PREFIX = "user:"
IP_PREFIX = "ip:"


def user_key(username: str) -> str:
    """Return the failures-table key of a username."""
    return USER_PREFIX + username


def ip_key(addr: str) -> str:
    """Return the failures-table key of a client address."""
    return IP_PREFIX + addr


class FailureStore(Protocol):
    """Where failures are kept: the account store's SQLite file (a protocol, so the store imports us)."""

    def connect(self) -> AbstractContextManager[sqlite3.Connection]: ...

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass(frozen=True)
class LockoutPolicy:
    """How many failures lock a key, for how long, and how failed answers are slowed down."""

    max_failures: int = 5
    window: float = 300
    lockout: float = 600
    slow_after: int = 2
    max_delay: float = 5
    # A whole classroom often shares one NAT address: a per-user threshold on the
    # address would lock everyone out after five typos, so addresses get their own.
    ip_max_failures: int = 50

    def threshold(self, key: str) -> int:
        """Return how many failures within the window lock this key."""
        return self.ip_max_failures if key.startswith(IP_PREFIX) else self.max_failures

    def delay(self, failures: int) -> float:
        """Return the delay before answering after this many recent failures."""
        if failures <= self.slow_after:
            return 0.0
        return min(self.max_delay, 0.5 * 2 ** (failures - self.slow_after))


class LockoutTracker:
    """Counts failed logins per key in the store's failures table."""

    def __init__(self, store: FailureStore, policy: LockoutPolicy | None = None) -> None:
        self.store = store
        self.policy = policy or LockoutPolicy()

    def check(self, keys: Iterable[str], now: float) -> float | None:
        """Return the seconds left if any key is locked at `now`, else None."""
        keys = list(keys)
        marks = ",".join("?" * len(keys))
        with self.store.connect() as conn:
            row = conn.execute(
                f"SELECT MAX(locked_until) FROM failures WHERE key IN ({marks}) AND locked_until > ?",
                (*keys, now),
            ).fetchone()
        return None if row[0] is None else row[0] - now

    def begin_attempt(self, keys: Iterable[str], now: float) -> float | None:
        """Seconds left if any key is locked; else count this attempt against its username and return None.

        One write transaction: concurrent attempts at one username are counted one after the other, so a
        burst cannot all pass the check before any of them counts (at most `max_failures` passwords of
        one account get checked). A successful login takes the count back (`record_success`).
        An address is counted only once a password is known wrong (`record_failure(begun=True)`): a
        classroom behind one NAT address logs in at once, and its attempts in flight are no failures
        (counted up front, 50 students starting together locked their address for ten minutes).
        """
        keys = list(keys)
        marks = ",".join("?" * len(keys))
        with self.store.transaction() as conn:
            row = conn.execute(
                f"SELECT MAX(locked_until) FROM failures WHERE key IN ({marks}) AND locked_until > ?",
                (*keys, now),
            ).fetchone()
            if row[0] is not None:
                return row[0] - now
            self._forget_stale(conn, now)
            for key in keys:
                if key.startswith(USER_PREFIX):
                    self._count(conn, key, now)
        return None

    def _forget_stale(self, conn: sqlite3.Connection, now: float) -> None:
        # Forget stale rows so sprayed usernames do not grow the table forever.
        conn.execute(
            "DELETE FROM failures WHERE first_at < ? AND (locked_until IS NULL OR locked_until <= ?)",
            (now - self.policy.window, now),
        )

    def record_failure(self, keys: Iterable[str], now: float, *, begun: bool = False) -> None:
        """Count one failed login against every key (`begun`: its username was counted by
        begin_attempt already), locking those over the threshold."""
        with self.store.transaction() as conn:
            self._forget_stale(conn, now)
            for key in keys:
                if not (begun and key.startswith(USER_PREFIX)):
                    self._count(conn, key, now)

    def _count(self, conn: sqlite3.Connection, key: str, now: float) -> None:
        row = conn.execute(
            "SELECT count, first_at, locked_until FROM failures WHERE key = ?", (key,)
        ).fetchone()
        if row is not None and row[2] is not None and row[2] > now:
            # Still locked: keep counting, but the lock neither ends early nor grows.
            count, first_at, locked_until = row[0] + 1, row[1], row[2]
        elif row is None or row[2] is not None or now - row[1] > self.policy.window:
            # No row, an expired lock or a stale window: start a fresh count.
            count, first_at, locked_until = 1, now, None
        else:
            count, first_at, locked_until = row[0] + 1, row[1], None
        if count >= self.policy.threshold(key) and locked_until is None:
            locked_until = now + self.policy.lockout
            log.warning("locking %s for %.0f s after %d failed logins", key, self.policy.lockout, count)
        conn.execute(
            "INSERT OR REPLACE INTO failures (key, count, first_at, locked_until) VALUES (?, ?, ?, ?)",
            (key, count, first_at, locked_until),
        )

    def record_success(self, keys: Iterable[str]) -> None:
        """Clear the user keys after a successful login (begin_attempt's count included)."""
        # Address keys stay: one valid account must not reset a password-spraying client.
        user_keys = [k for k in keys if k.startswith(USER_PREFIX)]
        with self.store.transaction() as conn:
            if user_keys:
                marks = ",".join("?" * len(user_keys))
                conn.execute(f"DELETE FROM failures WHERE key IN ({marks})", user_keys)

    def delay_for(self, keys: Iterable[str], now: float | None = None) -> float:
        """Return how long to wait before answering a failed login for these keys."""
        keys = list(keys)
        marks = ",".join("?" * len(keys))
        with self.store.connect() as conn:
            rows = conn.execute(
                f"SELECT key, count, first_at FROM failures WHERE key IN ({marks})", keys
            ).fetchall()
        failures = 0
        for key, count, first_at in rows:
            if now is not None and now - first_at > self.policy.window:
                continue
            # Scale address counts so a shared address slows down no sooner than one user.
            scaled = count * self.policy.max_failures // self.policy.threshold(key)
            failures = max(failures, scaled)
        return self.policy.delay(failures)
