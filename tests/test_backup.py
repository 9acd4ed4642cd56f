"""`coursehub backup` / `restore` on real hubs: restore into a fresh state folder and log in."""

from __future__ import annotations

import json
import stat
import tarfile

import pytest
from conftest import Hub, hub_root

from coursehub.clients.hubapi import HubAPI

pytestmark = pytest.mark.hub


def test_backup_restores_into_a_fresh_state_dir(edge_hub):
    """SQLite, end to end; PostgreSQL's restore is checked in test_database_hub.py."""
    hub = edge_hub
    (name,) = hub.create_accounts("bk", 1)
    token = hub.token_for(name)  # a hub user and an API token, both only in the hub database
    archive = hub.root / "hub-backup.tar.gz"
    out = hub.cli("backup", str(archive)).stdout  # while the hub runs
    assert "Wrote" in out
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest["database"] == "sqlite"
    assert {"accounts.sqlite", "cookie_secret", "catalog.json", "coursehub.yaml"} <= set(manifest["members"])

    # Never over a running hub's state.
    refused = hub.cli("restore", str(archive), check=False)
    assert refused.returncode == 1 and "coursehub down" in refused.stderr

    fresh = Hub(hub_root(), {})
    try:
        fresh.cli("restore", str(archive))
        secret = fresh.state_dir / "jupyterhub_cookie_secret"
        assert secret.read_bytes() == (hub.state_dir / "jupyterhub_cookie_secret").read_bytes()
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        again = fresh.cli("restore", str(archive), check=False)
        assert again.returncode == 1 and "--force" in again.stderr  # a second restore is not silent
        fresh.start()
        fresh.login(name, hub.passwords[name])  # the same workshop password
        # The token made before the backup still works: the hub database came back.
        assert HubAPI(fresh.url, token).json("GET", f"users/{name}")["name"] == name
        fresh.spawn(name, token)
        assert fresh.run(name, token, "print('restored', 6 * 7)").strip() == "restored 42"
    finally:
        fresh.teardown()
