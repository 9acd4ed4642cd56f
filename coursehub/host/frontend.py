"""The TLS front end on this machine: Debian's caddy, configured from coursehub.yaml, started by `up`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from coursehub.errors import CoursehubError
from coursehub.host.caddyfile import FrontEnd, render
from coursehub.host.runtime import ensure_secret
from coursehub.hubconfig.pipeline import hub_api_ip
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.tls import https_port

DEBIAN_CADDY = "/usr/bin/caddy"
START_TIMEOUT = 30.0


def find_caddy() -> str:
    """caddy on PATH or Debian's, else a CoursehubError saying how to install it."""
    for candidate in (shutil.which("caddy"), DEBIAN_CADDY):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise CoursehubError(
        "tls is on but caddy (the TLS front end) is not installed: apt-get install caddy "
        "(`./run up` installs it), or set tls.mode: off"
    )


def check_files(settings: Settings) -> None:
    """The admin's certificate and key exist and are readable (tls.mode files)."""
    tls = settings.tls
    for key, path in (("tls.cert_file", tls.cert_file), ("tls.key_file", tls.key_file)):
        if path is not None and not os.access(path, os.R_OK):
            raise CoursehubError(f"{key}: {path} does not exist or cannot be read")


def caddyfile_text(settings: Settings, paths: StatePaths) -> str:
    """The Caddyfile `settings` need, with this state folder's storage and ask key."""
    front = FrontEnd(
        storage=paths.caddy / "data",
        api_host=hub_api_ip(settings, paths.root),
        ask_key=ensure_secret(paths.tls_ask_key),
    )
    return render(settings, front)


def write_caddyfile(settings: Settings, paths: StatePaths) -> Path:
    """The Caddyfile (0600) in the front end's root-only folder, with the hub's ask key."""
    for folder in (paths.caddy, paths.caddy / "data", paths.caddy / "config"):
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    tmp = paths.caddyfile.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(caddyfile_text(settings, paths))
    os.replace(tmp, paths.caddyfile)
    return paths.caddyfile


def caddy_command(settings: Settings, paths: StatePaths) -> tuple[list[str], dict[str, str]]:
    """caddy's command line and environment for `settings` (the Caddyfile is written first)."""
    caddy = find_caddy()
    check_files(settings)
    caddyfile = write_caddyfile(settings, paths)
    # Caddy's own files (autosave, account, locks) stay in its root-only folder, not root's home.
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(paths.caddy),
        "XDG_DATA_HOME": str(paths.caddy / "data"),
        "XDG_CONFIG_HOME": str(paths.caddy / "config"),
    }
    return [caddy, "run", "--config", str(caddyfile), "--adapter", "caddyfile"], env


def exec_caddy(settings: Settings, paths: StatePaths) -> None:
    """Become caddy for `settings` (the TLS front end's systemd unit runs this in the foreground)."""
    command, env = caddy_command(settings, paths)
    os.execve(command[0], command, env)


def listening(port: int) -> bool:
    """True when something accepts connections on the loopback port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def launch(settings: Settings, paths: StatePaths) -> subprocess.Popen:
    """Start caddy for `settings` and wait until it listens; CoursehubError with its log otherwise."""
    command, env = caddy_command(settings, paths)
    log_path = paths.logs / "caddy.log"
    log = open(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        [*command, "--pidfile", str(paths.caddy_pid)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=paths.caddy,
        start_new_session=True,
    )
    log.close()
    port = https_port(settings.hub.public_url or "")
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        if listening(port):
            return proc
        time.sleep(0.2)
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise CoursehubError(f"caddy (the TLS front end) did not start on port {port}; its log ends:\n{tail}")
