"""Start a real coursehub hub with a given auth section and courses (the demo content, renamed)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import requests
import yaml
from conftest import Hub, hub_root, needs_root_sandbox

from coursehub.settings import DEMO_DIR


def secret_file(root: Path, name: str, value: str) -> str:
    """A 0600 file holding `value`; its 'file:' reference for coursehub.yaml."""
    path = root / f"{name}.secret"
    path.write_text(value)
    os.chmod(path, 0o600)
    return f"file:{path}"


def start_hub(
    auth: Callable[[Path], dict],
    courses: dict[str, list[str] | str],
    public: bool = True,
    jupyterhub: dict | None = None,
) -> Hub:
    """A running hub whose auth section is `auth(root folder)`, with courses {name: access} of the demo
    content."""
    needs_root_sandbox()
    hub = Hub(hub_root(), {})
    data = yaml.safe_load(hub.config.read_text())
    data["auth"].update(auth(hub.root))
    # The default under a provider: nobody is admin unless named (conftest names the workshop admin).
    data["hub"].pop("admin_users", None)
    if public:
        data["hub"]["public_url"] = hub.url.rstrip("/")
    data["courses"] = [
        {"name": name, "repo": str(DEMO_DIR), "access": access, "default_notebook": "welcome.ipynb"}
        for name, access in courses.items()
    ]
    if jupyterhub:
        data["jupyterhub"] = jupyterhub  # pass-through traits (e.g. endpoints pointed at a local provider)
    hub.config.write_text(yaml.safe_dump(data))
    hub.start()
    return hub


def sso_login(hub, idp_url: str, user: str) -> tuple[requests.Session, requests.Response]:
    """Sign in at the provider, then follow the hub's OAuth redirects as a browser does."""
    session = requests.Session()
    assert session.get(f"{idp_url}/login", params={"user": user}, timeout=10).status_code == 200
    response = session.get(hub.url + "hub/oauth_login?next=/hub/home", timeout=60)
    return session, response


def hub_user(hub, name: str) -> dict | None:
    response = hub.api().request("GET", f"users/{name}")
    return response.json() if response.status_code == 200 else None
