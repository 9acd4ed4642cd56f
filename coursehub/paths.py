"""Where coursehub keeps its state: one dataclass, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from coursehub.names import SHARED_CULLER_NAMES


@dataclass(frozen=True)
class StatePaths:
    """Every file and folder under the state directory, named once."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "jupyterhub.sqlite"

    @property
    def cookie_secret(self) -> Path:
        return self.root / "jupyterhub_cookie_secret"

    @property
    def accounts(self) -> Path:
        return self.root / "accounts.sqlite"

    @property
    def cli_token(self) -> Path:
        return self.root / "cli-token"

    def service_token(self, service: str) -> Path:
        """A hub-managed service's token, where it lends it to another process (hub/cullers.py)."""
        return self.root / f"{service}-token"

    @property
    def hub_pid(self) -> Path:
        return self.root / "hub.pid"

    @property
    def hub_url(self) -> Path:
        return self.root / "hub.url"

    @property
    def up_pid(self) -> Path:
        """The `coursehub up` process that supervises the hub (and reloads it on SIGHUP)."""
        return self.root / "up.pid"

    @property
    def reload_status(self) -> Path:
        """What `up` answers a reload: 'ok' or 'error: …' on its first line."""
        return self.root / "reload.status"

    @property
    def cgroup_parent(self) -> Path:
        """Servers' parent cgroup when `up` runs as a delegated systemd service (absent otherwise)."""
        return self.root / "cgroup-parent"

    @property
    def proxy_pid(self) -> Path:
        return self.root / "proxy.pid"

    @property
    def envs(self) -> Path:
        return self.root / "envs"

    @property
    def courses(self) -> Path:
        return self.root / "courses"

    @property
    def sync_script(self) -> Path:
        return self.root / "bin" / "coursehub-sync.py"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def config_d(self) -> Path:
        return self.root / "jupyterhub_config.d"

    @property
    def disk_projects(self) -> Path:
        """Project ids of the homes (disk quotas), by Unix name."""
        return self.root / "disk-projects.json"

    @property
    def cards(self) -> Path:
        return self.root / "accounts"

    @property
    def caddy(self) -> Path:
        """The TLS front end's folder (root only): its Caddyfile, certificates and ACME account."""
        return self.root / "caddy"

    @property
    def caddyfile(self) -> Path:
        return self.caddy / "Caddyfile"

    @property
    def caddy_pid(self) -> Path:
        return self.root / "caddy.pid"

    @property
    def tls_ask_key(self) -> Path:
        """The key Caddy's on-demand `ask` requests carry, so that only Caddy gets answers."""
        return self.root / "tls-ask-key"

    @property
    def grading(self) -> Path:
        """nbgrader's exchanges, staff folders (gradebook.db) and generated config of grading courses."""
        return self.root / "grading"

    @property
    def lti_grades(self) -> Path:
        """LTI 1.3 launches (what grade posts need per user and course) and score posts."""
        return self.root / "lti-grades.sqlite"

    @property
    def lti_tool_key(self) -> Path:
        """The tool's private key (PEM) that signs its LTI Advantage token requests."""
        return self.root / "lti-tool-key.pem"

    @property
    def secret_files(self) -> tuple[Path, ...]:
        """Files that must stay 0600 and hidden from users' sandboxes."""
        return (
            self.db,
            self.cookie_secret,
            self.accounts,
            self.cli_token,
            *(self.service_token(name) for name in SHARED_CULLER_NAMES),
            self.tls_ask_key,
            self.lti_grades,
            self.lti_tool_key,
        )
