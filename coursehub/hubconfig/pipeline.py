"""The hub itself: network, database, authentication, services and pass-through traits."""

from __future__ import annotations

from pathlib import Path

from traitlets.config import Config

from coursehub.hubconfig import binder, local, passthrough
from coursehub.hubconfig.auth import Secrets, apply_auth
from coursehub.hubconfig.database import apply_database
from coursehub.hubconfig.runtime import Runtime
from coursehub.hubconfig.security import apply_security
from coursehub.hubconfig.services import Backend, hub_services
from coursehub.hubconfig.staff import staff_roles
from coursehub.hubconfig.updates import apply_course_updates
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
    apply_course_updates(settings, runtime, c, secrets)
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
    c.JupyterHub.hub_bind_url = f"http://{hub_api_ip(settings, paths.root)}:{hub.api_port}"
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
    c.SandboxSpawner.kernel_cull_timeout = settings.culler.kernel_seconds()
    c.Authenticator.admin_users = set(settings.admin_users())


def hub_api_ip(settings: Settings, state_dir: Path) -> str:
    """Where the hub's API listens: loopback, or the gateway servers in namespaces reach."""
    if settings.network.isolate:
        from coursehub.spawner.netns import hub_net

        return hub_net(state_dir, settings.network.subnet).gateway
    return "127.0.0.1"


def apply_services(settings: Settings, runtime: Runtime, c: Config) -> None:
    """Hub-managed services on one machine (hubconfig/services.py holds every one, for both backends)."""
    backend = Backend(python=runtime.python, cli_token=runtime.cli_token, culler_tokens=runtime.culler_tokens)
    services, roles = hub_services(settings, backend)
    c.JupyterHub.services, c.JupyterHub.load_roles = services, [*roles, *staff_roles(settings)]


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def apply_ops(c: Config) -> None:
    """Operations: the admins' status page template (the spawn hook is set in the hub: hub/extensions.py)."""
    c.JupyterHub.template_paths = [str(TEMPLATES)]


def apply_passthrough(settings: Settings, c: Config) -> None:
    """The `jupyterhub:` section, last: its scalars win, its lists and mappings add to coursehub's."""
    passthrough.apply_passthrough(settings.jupyterhub, c)
