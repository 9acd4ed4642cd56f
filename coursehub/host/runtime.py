"""Facts about this machine that the hub config needs, found at the edge with clear errors."""

from __future__ import annotations

import os
import secrets
import shutil
import sys
from pathlib import Path

from coursehub.errors import CoursehubError
from coursehub.hubconfig import Runtime
from coursehub.names import SHARED_CULLER_NAMES
from coursehub.paths import StatePaths
from coursehub.settings import Settings

PROXY = "configurable-http-proxy"
REPO_ROOT = Path(__file__).resolve().parents[2]


def find_proxy() -> str:
    """configurable-http-proxy: $COURSEHUB_PROXY, on PATH, or in the repo's node_modules."""
    for candidate in (
        os.environ.get("COURSEHUB_PROXY"),
        shutil.which(PROXY),
        str(REPO_ROOT / "node_modules" / ".bin" / PROXY),
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CoursehubError(
        f"{PROXY} was not found: run `npm install` in {REPO_ROOT} (the README's first command "
        f"does it) or `npm install -g {PROXY}`"
    )


def ensure_state_dir(paths: StatePaths) -> None:
    """The state folder: traversable by users' sandboxes (for envs), secrets inside kept 0600."""
    paths.root.mkdir(parents=True, exist_ok=True)
    os.chmod(paths.root, 0o755)
    for folder in (paths.logs, paths.config_d, paths.cards):
        folder.mkdir(exist_ok=True)
        os.chmod(folder, 0o700)
    for secret in paths.secret_files:
        if secret.exists():
            os.chmod(secret, 0o600)
    # SQLite keeps the mode of an existing file: create the hub database private.
    os.close(os.open(paths.db, os.O_CREAT | os.O_WRONLY, 0o600))


def ensure_secret(path: Path) -> str:
    """A random token stored 0600 at `path`, created on first use."""
    if path.exists():
        return path.read_text().strip()
    token = secrets.token_hex(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    return token


def runtime_for(paths: StatePaths, user_env: Path, settings: Settings | None = None) -> Runtime:
    """The Runtime of a hub started from this interpreter."""
    from coursehub.host.database import resolve_url

    return Runtime(
        paths=paths,
        proxy_command=find_proxy(),
        python=sys.executable,
        user_env=user_env,
        cli_token=ensure_secret(paths.cli_token),
        culler_tokens={name: ensure_secret(paths.service_token(name)) for name in SHARED_CULLER_NAMES},
        db_url=resolve_url(settings, paths) if settings is not None else "",
    )
