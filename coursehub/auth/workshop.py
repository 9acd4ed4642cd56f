"""JupyterHub authenticator for workshop accounts, with failed-login lockout."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from typing import Any

from jupyterhub.auth import Authenticator
from tornado.web import HTTPError
from traitlets import Float, Integer, Unicode, default

from coursehub.auth.accounts import AccountStore
from coursehub.auth.clientaware import ClientAddressMixin
from coursehub.auth.lockout import LockoutPolicy, LockoutTracker, ip_key, user_key
from coursehub.clientaddr import limit_key
from coursehub.courses.access import is_temporary
from coursehub.errors import ConfigError

# Longer names cannot be accounts; refusing them early keeps junk out of the failures table.
MAX_USERNAME_LEN = 64


def _locked_message(remaining: float) -> str:
    minutes = max(1, math.ceil(remaining / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many failed logins: try again in {minutes} {unit}."


class WorkshopAuthenticator(ClientAddressMixin, Authenticator):
    """Log in with accounts from `coursehub accounts create`, locking out password guessers."""

    accounts_db = Unicode("", help="Path of the SQLite file holding the workshop accounts.").tag(config=True)
    max_failures = Integer(5, help="Failed logins for one username within failure_window that lock it.").tag(
        config=True
    )
    ip_max_failures = Integer(
        50,
        help="Failed logins from one address within failure_window that lock it "
        "(high, since a classroom often shares one address).",
    ).tag(config=True)
    ip_max_pending = Integer(
        # A lecture hall of 400 behind one campus address, all at once (the benchmark's largest burst).
        500,
        help="Logins from one address whose password is being checked at once; more are asked to retry "
        "in a few seconds (a whole class behind one address fits; a guesser's burst is bounded).",
    ).tag(config=True)
    failure_window = Float(300, help="Seconds over which failed logins are counted.").tag(config=True)
    lockout_seconds = Float(600, help="Seconds a locked username or address must wait.").tag(config=True)
    slow_after_failures = Integer(
        2, help="Failed logins after which answers to further failures are delayed."
    ).tag(config=True)
    max_failure_delay = Float(5, help="Longest delay, in seconds, before answering a failure.").tag(
        config=True
    )

    @default("any_allow_config")
    def _default_any_allow_config(self) -> bool:
        # check_allowed (an enabled account) is the allow config; silence the
        # "nobody can login" warning JupyterHub 5+ prints without allowed_users.
        return True

    _store: AccountStore | None = None
    _pending: Counter[str]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._pending = Counter()  # address -> logins being checked now (one hub process: in memory)

    @property
    def store(self) -> AccountStore:
        """The account store at `accounts_db`, opened on first use."""
        if not self.accounts_db:
            raise ConfigError(
                "WorkshopAuthenticator needs an accounts file: set "
                "c.WorkshopAuthenticator.accounts_db to its path"
            )
        if self._store is None or str(self._store.path) != self.accounts_db:
            self._store = AccountStore(self.accounts_db)
        return self._store

    @property
    def tracker(self) -> LockoutTracker:
        """The lockout tracker, with a policy built from the current traits."""
        policy = LockoutPolicy(
            max_failures=self.max_failures,
            window=self.failure_window,
            lockout=self.lockout_seconds,
            slow_after=self.slow_after_failures,
            max_delay=self.max_failure_delay,
            ip_max_failures=self.ip_max_failures,
        )
        return LockoutTracker(self.store, policy)

    async def authenticate(self, handler: Any, data: dict[str, Any]) -> dict[str, Any] | None:
        """Return {"name": username} for a correct password, None otherwise; 429 if locked."""
        username = self.normalize_username(str(data.get("username") or "").strip())
        password = str(data.get("password") or "")
        if not username or not password or len(username) > MAX_USERNAME_LEN:
            return None
        addr = self.client_address(handler.request)
        source = limit_key(addr)
        keys = [user_key(username), ip_key(source)]
        tracker = self.tracker
        # An address's failures are counted once known (a class behind one address logs in at once),
        # so what bounds one address's guesses in flight is this: the passwords it has being checked.
        if self._pending[source] >= self.ip_max_pending:
            self.log.warning(
                "Refused login for %r from %s: %d logins in flight", username, addr, self.ip_max_pending
            )
            raise HTTPError(429, "Too many logins from your network at once: try again in a few seconds.")
        self._pending[source] += 1
        try:
            return await self._check_password(username, password, addr, keys, tracker)
        finally:
            self._pending[source] -= 1
            if not self._pending[source]:
                del self._pending[source]

    async def _check_password(
        self, username: str, password: str, addr: str, keys: list[str], tracker: LockoutTracker
    ) -> dict[str, Any] | None:
        """The lock check, the (slow) password check, and what each outcome counts."""
        # Check the lock and count this attempt at its username in one step, before the password check.
        remaining = await asyncio.to_thread(tracker.begin_attempt, keys, time.time())
        if remaining is not None:
            self.log.warning("Refused login for %r from %s: locked out", username, addr)
            raise HTTPError(429, _locked_message(remaining))
        # argon2 is deliberately CPU-heavy: keep it off the event loop.
        if await asyncio.to_thread(self.store.verify, username, password):
            await asyncio.to_thread(tracker.record_success, keys)
            return {"name": username}
        await asyncio.to_thread(tracker.record_failure, keys, time.time(), begun=True)
        delay = await asyncio.to_thread(tracker.delay_for, keys, time.time())
        self.log.warning("Failed login for %r from %s", username, addr)
        await asyncio.sleep(delay)
        return None

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        """Allow exactly the usernames with an existing, enabled account."""
        # allow_all stays False (the JupyterHub 5+ default), so get_authenticated_user
        # always asks this method; authenticate already refuses other names too.
        return self.store.exists(username, enabled_only=True)

    def is_admin(self, handler: Any, authentication: dict[str, Any]) -> bool | None:
        """Make accounts flagged admin in the store hub admins, besides admin_users."""
        if self.store.is_admin(authentication["name"]):
            return True
        return super().is_admin(handler, authentication)

    async def refresh_user(self, user: Any, handler: Any = None) -> bool:
        """Ask a disabled or deleted account to log in again (which then fails)."""
        if is_temporary(user):
            return True  # made by a tmplogin link: no account to check
        return await asyncio.to_thread(self.store.exists, user.name, enabled_only=True)
