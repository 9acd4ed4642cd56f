"""Anonymous users (guest links, Binder launches): how they are made, how fast one address may make them."""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from typing import Any

from jupyterhub import orm


class RateLimiter:
    """At most `per_minute` events per key in any 60 s window, for at most `max_keys` keys (in memory)."""

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_keys = max_keys
        # Least recently seen key first, so that making room never scans the table.
        self.recent: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, key: str, now: float | None = None) -> bool:
        """Count one event for `key`; False (and not counted) when over the limit."""
        now = time.monotonic() if now is None else now
        window = self.recent.get(key)
        if window is None:
            self._make_room(now)
            window = self.recent[key] = deque(maxlen=self.per_minute)
        else:
            self.recent.move_to_end(key)
        while window and now - window[0] > 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        return True

    def _make_room(self, now: float) -> None:
        """Forget keys idle for a minute (under no limit anyway), then, if still full, the stalest.

        Only a client with more than `max_keys` addresses fills the table with live keys; it escapes
        per-address limits by rotating them anyway, so forgetting the stalest costs nothing more.
        """
        while self.recent:
            key, window = next(iter(self.recent.items()))
            if window and now - window[-1] <= 60 and len(self.recent) < self.max_keys:
                break
            del self.recent[key]


# One limiter per purpose and rate, shared by every request of this hub process.
_LIMITERS: dict[tuple[str, int], RateLimiter] = {}


def limiter(purpose: str, per_minute: int) -> RateLimiter:
    """The hub-wide limiter of `purpose` ('tmplogin', 'binder') at `per_minute`."""
    return _LIMITERS.setdefault((purpose, per_minute), RateLimiter(per_minute))


def create_anonymous_user(handler: Any, prefix: str, groups: list[str]) -> Any:
    """A fresh user named `prefix`-<random>, in `groups` (created when missing), committed."""
    user = handler.user_from_username(f"{prefix}-{secrets.token_hex(6)}")
    for name in groups:
        group = orm.Group.find(handler.db, name)
        if group is None:
            group = orm.Group(name=name)
            handler.db.add(group)
        user.orm_user.groups.append(group)
    handler.db.commit()
    return user
