"""When does a freshly started server get its first kernel? Asked of the server itself.

The hub cannot see a cell's result (that is between the browser and the kernel), but it can ask a
server it started for its kernels, with the server's own token (scope `access:servers!server`),
at the server's internal address. This works with any spawner and any way of starting kernels.
Only servers started in the last half hour without a kernel yet are asked, often at first and
then less often, and only a bounded number per round, so that a burst of spawns stays cheap.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tornado.httpclient import AsyncHTTPClient, HTTPClientError

log = logging.getLogger(__name__)
WATCH_SECONDS = 1800.0  # give up on servers without a kernel after this long
REQUEST_TIMEOUT = 5.0
MAX_PER_ROUND = 20  # servers asked per round, at most


@dataclass
class KernelWatch:
    """A freshly started server whose first kernel is not seen yet."""

    course: str
    requested: float  # time.monotonic() of the spawn request
    url: str  # the server's internal base URL, e.g. http://127.0.0.1:41234/user/ana/
    token: str  # the server's own API token
    next_check: float = 0.0  # time.monotonic() of the next question

    def expired(self, now: float) -> bool:
        return now - self.requested > WATCH_SECONDS


def watch_for(spawner: Any, course: str, requested: float) -> KernelWatch | None:
    """A watch of a server that just started, or None when it has no address or token."""
    server, token = getattr(spawner, "server", None), getattr(spawner, "api_token", "")
    url = getattr(server, "url", "") if server is not None else ""
    if not url or not token:
        return None
    return KernelWatch(course, requested, url.rstrip("/") + "/", token)


def next_delay(age: float) -> float:
    """Seconds until the next question, for a server started `age` seconds ago."""
    if age < 60:
        return 2.0
    return 5.0 if age < 300 else 15.0


def due(watches: dict[Any, KernelWatch], now: float) -> list[Any]:
    """The keys to ask this round: due ones, oldest spawn first, at most MAX_PER_ROUND."""
    ready = [key for key, w in watches.items() if w.next_check <= now]
    return sorted(ready, key=lambda key: watches[key].requested)[:MAX_PER_ROUND]


async def has_kernel(watch: KernelWatch, client: AsyncHTTPClient | None = None) -> bool:
    """True when the server lists at least one kernel; False on any error (asked again later)."""
    client = client or AsyncHTTPClient()
    try:
        response = await client.fetch(
            watch.url + "api/kernels",
            headers={"Authorization": f"token {watch.token}"},
            request_timeout=REQUEST_TIMEOUT,
            follow_redirects=False,
        )
        return bool(json.loads(response.body))
    except (HTTPClientError, OSError, ValueError) as exc:
        log.debug("kernels of %s: %s", watch.url, exc)
        return False
