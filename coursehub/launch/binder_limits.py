"""How many anonymous Binder servers may start: per-client rate and per-repository/total quotas."""

from __future__ import annotations

import re
import time
from collections import OrderedDict, deque


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


def quota_refusal(running: dict[str, int], name: str, max_per_repo: int, max_total: int) -> str:
    """Why one more server for `name` may not start now ('' when it may); `running` counts per name."""
    total = sum(running.values())
    if total >= max_total:
        return (
            f"This hub already runs its maximum of {max_total} anonymous servers. "
            "Try again in a few minutes, when idle ones have been removed."
        )
    if running.get(name, 0) >= max_per_repo:
        return (
            f"This repository already has its maximum of {max_per_repo} anonymous servers. "
            "Try again in a few minutes."
        )
    return ""


def origin_allowed(origin: str, allowed: list[str]) -> bool:
    """True when a page on `origin` may call the API ('*' in `allowed` admits any origin)."""
    return bool(origin) and ("*" in allowed or origin.rstrip("/") in allowed)


def server_cors_args(allowed: list[str]) -> list[str]:
    """jupyter_server options that admit `allowed` origins (API and websockets) on a user server."""
    if not allowed:
        return []
    if "*" in allowed:
        return ["--ServerApp.allow_origin=*"]
    pattern = "^(" + "|".join(re.escape(origin) for origin in allowed) + ")$"
    return [f"--ServerApp.allow_origin_pat={pattern}"]
