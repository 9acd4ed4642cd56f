"""jupyterhub-idle-culler as hub-managed services: the idle-server culler and the group cullers of guests."""

from __future__ import annotations

from coursehub.names import CULLER_SCOPES


def group_culler(
    name: str, group: str, python: str, timeout: int, every: int, max_age: int = 0, url: str = ""
) -> tuple[dict, dict]:
    """A service and role deleting idle (or old) users of `group` with their files, and no one else."""
    # No --remove-named-servers: JupyterHub removes a named server after it has answered, so the
    # culler's next request (deleting the user) raced that removal and got 500 "orm_spawner not
    # found". Deleting the user deletes all their servers anyway.
    command = [python, "-m", "jupyterhub_idle_culler", "--cull-users=true", f"--timeout={timeout}"]
    if max_age:
        command.append(f"--max-age={max_age}")
    command.append(f"--cull-every={every}")
    if url:
        command.append(f"--url={url}")
    # Every scope filtered to the group: this culler cannot see, let alone delete, anyone else.
    scopes = [f"{scope}!group={group}" for scope in [*CULLER_SCOPES, "admin:users"]]
    return {"name": name, "command": command}, {"name": name, "scopes": scopes, "services": [name]}
