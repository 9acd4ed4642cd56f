"""How many anonymous Binder servers may start: per-repository and total quotas, and CORS."""

from __future__ import annotations

import re

from coursehub.launch.guests import RateLimiter

__all__ = ["RateLimiter", "origin_allowed", "quota_refusal", "server_cors_args"]


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
