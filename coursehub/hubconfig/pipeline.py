"""The hub itself: network, database, authentication, services and pass-through traits."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from coursehub.hubconfig import binder, local, passthrough
from coursehub.hubconfig.auth import Secrets, apply_auth
from coursehub.hubconfig.cullers import group_culler
from coursehub.hubconfig.database import apply_database
from coursehub.hubconfig.runtime import Runtime
from coursehub.hubconfig.security import apply_security
from coursehub.names import CLI_SCOPES, CULLER_SCOPES, TEMP_CULLER, TEMPORARY_GROUP
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.auth import resolve_secret


def build(settings: Settings, runtime: Runtime, secrets: Secrets = resolve_secret) -> Config:
    """The complete traitlets Config for `settings` on the local backend."""
    c = Config()
    apply_hub(settings, runtime, c)
    apply_database(settings, runtime, c)
    apply_security(settings, runtime, c)
    apply_auth(settings, runtime, c, secrets)
    apply_services(settings, runtime, c)
    binder.apply_binder(settings, runtime, c)
    local.apply_spawner(settings, runtime, c)
    apply_ops(c)
    apply_passthrough(settings, c)
    return c


def check(settings: Settings) -> None:
    """Build the config without the machine (secrets unread), so `config check` sees what the hub would."""
    placeholder = Runtime(
        paths=StatePaths(settings.hub.state_dir),
        proxy_command="chp",
        python="python3",
        user_env=Path("/"),
        cli_token="-",
    )
    build(settings, placeholder, secrets=lambda reference, what: "-")


def apply_hub(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Network, database, secrets and spawn pacing."""
    hub, paths = settings.hub, runtime.paths
    c.JupyterHub.bind_url = f"http://{hub.ip}:{hub.port}/"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{hub.api_port}"
    c.JupyterHub.cookie_secret_file = str(paths.cookie_secret)
    c.JupyterHub.pid_file = str(paths.hub_pid)
    c.JupyterHub.concurrent_spawn_limit = hub.concurrent_spawn_limit
    # Servers outlive the hub so that a restart (or a crash) re-attaches them;
    # `coursehub down` stops them explicitly.
    c.JupyterHub.cleanup_servers = False
    c.ConfigurableHTTPProxy.command = [runtime.proxy_command]
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{hub.proxy_api_port}"
    c.ConfigurableHTTPProxy.pid_file = str(paths.proxy_pid)
    c.Spawner.start_timeout = hub.start_timeout
    c.Spawner.http_timeout = hub.http_timeout
    c.Spawner.default_url = "/lab"
    c.Authenticator.admin_users = set(settings.admin_users())


def apply_services(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Hub-managed services, each with only the scopes it needs."""
    services: list[dict] = []
    roles: list[dict] = []
    culler = settings.culler
    if culler.enabled:
        services.append(
            {
                "name": "idle-culler",
                "command": [
                    runtime.python,
                    "-m",
                    "jupyterhub_idle_culler",
                    f"--timeout={culler.timeout}",
                    f"--cull-every={culler.every}",
                    f"--max-age={culler.max_age}",
                ],
            }
        )
        roles.append({"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]})
    if settings.culler.enabled:
        # Always on: open courses can be added while the hub runs, and it sees only guests.
        service, role = temporary_culler(settings, runtime.python)
        services.append(service)
        roles.append(role)
    if runtime.cli_token:
        services.append({"name": "coursehub-cli", "api_token": runtime.cli_token})
        roles.append({"name": "coursehub-cli", "scopes": CLI_SCOPES, "services": ["coursehub-cli"]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def has_open_courses(settings: Settings) -> bool:
    """True when some course admits temporary users."""
    return any(course.access == "open" for course in settings.courses)


def temporary_culler(settings: Settings, python: str, url: str = "") -> tuple[dict, dict]:
    """A culler that deletes idle temporary users (and, through the spawner, their files)."""
    return group_culler(
        TEMP_CULLER,
        TEMPORARY_GROUP,
        python,
        timeout=settings.temporary.idle_timeout,
        every=min(settings.culler.every, settings.temporary.idle_timeout),
        url=url,
    )


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def apply_ops(c: Config) -> None:
    """Operations: the admins' status page template (the spawn hook is set in the hub: hub/extensions.py)."""
    c.JupyterHub.template_paths = [str(TEMPLATES)]


def apply_passthrough(settings: Settings, c: Config) -> None:
    """The `jupyterhub:` section, last: its scalars win, its lists and mappings add to coursehub's."""
    passthrough.apply_passthrough(settings.jupyterhub, c)
