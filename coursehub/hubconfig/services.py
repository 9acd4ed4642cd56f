"""Every hub-managed service and its role, for both backends: one list, each with only the scopes it needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from coursehub.hubconfig.cullers import group_culler
from coursehub.names import (
    BINDER_CULLER,
    BINDER_GROUP,
    CLI_SCOPES,
    CULLER_SCOPES,
    CULLERS_ENV,
    TEMP_CULLER,
    TEMPORARY_GROUP,
)
from coursehub.settings import Settings


@dataclass(frozen=True)
class Backend:
    """What differs between one machine and the chart for the services."""

    python: str  # interpreter that runs the services
    hub_api: str = ""  # the hub's API URL when the services cannot find it from their environment
    idle_culler: bool = True  # False where the chart runs its own
    binder: bool = True  # the Binder API (and so its culler) is served on this backend
    cli_token: str = ""  # the coursehub CLI's service token (one machine only)
    guests_always: bool = True  # cull guests even without open courses today (courses change at runtime)
    # Tokens of the cullers that lend theirs to one culler process (one machine); empty: a process each.
    culler_tokens: Mapping[str, str] = field(default_factory=dict)


def hub_services(settings: Settings, backend: Backend) -> tuple[list[dict], list[dict]]:
    """The services to run and the roles that scope them."""
    pairs = []
    culler = settings.culler
    if culler.enabled and backend.idle_culler:
        pairs.append(idle_culler(settings, backend.python))
    if culler.enabled and (backend.guests_always or has_open_courses(settings)):
        pairs.append(temporary_culler(settings, backend.python, backend.hub_api))
    if settings.binder.enabled and backend.binder:
        pairs.append(binder_culler(settings, backend.python))
    if backend.cli_token:
        service = {"name": "coursehub-cli", "api_token": backend.cli_token}
        role = {"name": "coursehub-cli", "scopes": CLI_SCOPES, "services": ["coursehub-cli"]}
        pairs.append((service, role))
    services, roles = [service for service, _ in pairs], [role for _, role in pairs]
    if backend.culler_tokens:
        services = one_culler_process(services, backend.culler_tokens, backend.python)
    return services, roles


CULLER_MODULE = "jupyterhub_idle_culler"


def culler_token_env(name: str) -> str:
    """The environment variable that carries culler `name`'s token to the shared process."""
    return "COURSEHUB_TOKEN_" + name.upper().replace("-", "_")


def one_culler_process(services: list[dict], tokens: Mapping[str, str], python: str) -> list[dict]:
    """Every culler's loop in the first culler's process; the others keep their service, role and token.

    Each jupyterhub-idle-culler is a Python process of ~20 MiB PSS and ~0.2 CPU-s to start; a hub
    ran three (idle servers, guests, Binder readers). Each loop still uses its own service's token,
    so the hub, not the culler, limits what it sees and deletes (the guests' cullers: their group).
    Tokens travel in the process's environment, never its command line (which every user can read).
    """
    cullers = [s for s in services if s.get("command", [])[1:3] == ["-m", CULLER_MODULE]]
    if len(cullers) < 2:
        return services
    first, *lenders = cullers
    loops = [{"name": first["name"], "args": first["command"][3:], "token_env": "JUPYTERHUB_API_TOKEN"}]
    environment = {}
    for service in lenders:
        env_name = culler_token_env(service["name"])
        loops.append({"name": service["name"], "args": service["command"][3:], "token_env": env_name})
        environment[env_name] = tokens[service["name"]]
    environment[CULLERS_ENV] = json.dumps(loops)
    runner = {
        "name": first["name"],
        "command": [python, "-m", "coursehub.hub.cullers"],
        "environment": environment,
    }
    lent = {
        service["name"]: {"name": service["name"], "api_token": tokens[service["name"]]}
        for service in lenders
    }
    return [runner if s is first else lent.get(s["name"], s) for s in services]


def idle_culler(settings: Settings, python: str) -> tuple[dict, dict]:
    """jupyterhub-idle-culler stopping idle (or old) servers of everyone; it deletes no user."""
    culler = settings.culler
    command = [
        python,
        "-m",
        "jupyterhub_idle_culler",
        f"--timeout={culler.timeout}",
        f"--cull-every={culler.every}",
        f"--max-age={culler.max_age}",
    ]
    role = {"name": "idle-culler", "scopes": CULLER_SCOPES, "services": ["idle-culler"]}
    return {"name": "idle-culler", "command": command}, role


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


def binder_culler(settings: Settings, python: str) -> tuple[dict, dict]:
    """jupyterhub-idle-culler limited to the Binder group: deletes idle or old anonymous users."""
    binder = settings.binder
    every = min(60, binder.idle_timeout // 2)
    return group_culler(BINDER_CULLER, BINDER_GROUP, python, binder.idle_timeout, every, binder.max_age)


def has_open_courses(settings: Settings) -> bool:
    """True when some course admits temporary users."""
    return any(course.access == "open" for course in settings.courses)
