"""The hub itself: network, database, authentication, services and pass-through traits."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config

from ..paths import StatePaths
from ..settings import Settings
from . import binder, local
from .auth import apply_auth
from .database import apply_database
from .security import apply_security

CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]
CLI_SCOPES = [
    "list:users",
    "read:users",
    "read:servers",
    "delete:servers",
    "admin:users",
    "read:metrics",
]
TEMPORARY_GROUP = "coursehub-temporary"  # temporary users belong here; only they are culled
TEMP_CULLER = "coursehub-temporary-culler"


@dataclass(frozen=True)
class Runtime:
    """Facts found on the machine that the pure config needs (resolved by the caller)."""

    paths: StatePaths
    proxy_command: str
    python: str  # interpreter that runs hub-side services
    user_env: Path  # environment whose jupyterhub-singleuser users run
    cli_token: str = ""
    db_url: str = ""  # resolved with its password at the edge; empty: SQLite in the state folder
    extra: dict[str, str] = field(default_factory=dict)


def build(settings: Settings, runtime: Runtime) -> Config:
    """The complete traitlets Config for `settings` on the local backend."""
    c = Config()
    apply_hub(settings, runtime, c)
    apply_database(settings, runtime, c)
    apply_security(settings, runtime, c)
    apply_auth(settings, runtime, c)
    apply_services(settings, runtime, c)
    binder.apply_binder(settings, runtime, c)
    local.apply_spawner(settings, runtime, c)
    apply_ops(c)
    apply_passthrough(settings, c)
    return c


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
    c.Authenticator.admin_users = set(hub.admin_users)


def hub_api_ip(settings: Settings, state_dir: Path) -> str:
    """Where the hub's API listens: loopback, or the gateway servers in namespaces reach."""
    if settings.network.isolate:
        from ..spawner.netns import hub_net

        return hub_net(state_dir, settings.network.subnet).gateway
    return "127.0.0.1"


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
    command = [
        python,
        "-m",
        "jupyterhub_idle_culler",
        "--cull-users=true",
        "--remove-named-servers=true",
        f"--timeout={settings.temporary.idle_timeout}",
        f"--cull-every={min(settings.culler.every, settings.temporary.idle_timeout)}",
    ]
    if url:
        command.append(f"--url={url}")
    # Every scope filtered to the group: this culler cannot see, let alone delete, anyone else.
    scopes = [f"{scope}!group={TEMPORARY_GROUP}" for scope in [*CULLER_SCOPES, "admin:users"]]
    return (
        {"name": TEMP_CULLER, "command": command},
        {"name": TEMP_CULLER, "scopes": scopes, "services": [TEMP_CULLER]},
    )


TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def apply_ops(c: Config) -> None:
    """Operations: spawns timed for coursehub's metrics, and the admins' status page template."""
    from ..ops.monitor import pre_spawn_hook

    c.Spawner.pre_spawn_hook = pre_spawn_hook
    c.JupyterHub.template_paths = [str(TEMPLATES)]


def apply_passthrough(settings: Settings, c: Config) -> None:
    """Traits set by class name in the `jupyterhub:` section win over everything else."""
    for class_name, traits in settings.jupyterhub.items():
        for trait, value in traits.items():
            c[class_name][trait] = value
