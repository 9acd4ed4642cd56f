"""What the pure config needs to know about the machine, found by the caller at the edge."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from coursehub.paths import StatePaths


@dataclass(frozen=True)
class Runtime:
    """Facts found on the machine that the pure config needs (resolved by the caller)."""

    paths: StatePaths
    proxy_command: str
    python: str  # interpreter that runs hub-side services
    user_env: Path  # environment whose jupyterhub-singleuser users run
    cli_token: str = ""
    culler_tokens: dict[str, str] = field(default_factory=dict)  # the cullers that share one process
    db_url: str = ""  # resolved with its password at the edge; empty: SQLite in the state folder
    extra: dict[str, str] = field(default_factory=dict)
