"""`coursehub backup` / `restore` on real hubs: restore into a fresh state folder and log in."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
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


def test_backup_keeps_the_gradebooks_and_the_lti_grade_store(edge_hub):
    """`<state>/grading` (exchange, staff folders, gradebook.db), lti-grades.sqlite and the tool key."""
    from coursehub.auth import ags_store
    from coursehub.auth.ags import AgsLaunch

    hub = edge_hub
    grading = hub.state_dir / "grading"
    course = grading / "bk" / "course"
    feedback = grading / "bk" / "exchange" / "bk" / "feedback"
    for folder in (course / "submitted" / "ch-ann" / "ps1", feedback, grading / "_config" / "bk"):
        folder.mkdir(parents=True, exist_ok=True)
    os.chown(course, 0, 4321)
    os.chmod(course, 0o2770)
    gradebook = sqlite3.connect(course / "gradebook.db")
    gradebook.execute("CREATE TABLE IF NOT EXISTS grade (student TEXT, score REAL)")
    gradebook.execute("INSERT INTO grade VALUES ('ch-ann', 2.0)")
    gradebook.commit()
    (course / "submitted" / "ch-ann" / "ps1" / "ps1.ipynb").write_text('{"cells": []}')
    (course / "link-out").symlink_to("/etc/passwd")  # a staff member's link: saved as a link, never followed
    launch = AgsLaunch("ann", "bk", "https://lms", "cid", "dep", "sub-ann", "", "https://lms/item/1", ("s",))
    ags_store.save_launch(hub.state_dir / "lti-grades.sqlite", launch)
    key = hub.state_dir / "lti-tool-key.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\ntest\n-----END PRIVATE KEY-----\n")
    os.chmod(key, 0o600)
    archive = hub.root / "grading-backup.tar.gz"
    try:
        # A write in progress (not committed) while the backup runs stays out of it.
        gradebook.execute("BEGIN IMMEDIATE")
        gradebook.execute("INSERT INTO grade VALUES ('ch-bob', 0.0)")
        hub.cli("backup", str(archive))
        gradebook.rollback()
        with tarfile.open(archive) as tar:
            members = set(json.load(tar.extractfile("manifest.json"))["members"])
            inner = tarfile.open(fileobj=tar.extractfile("grading.tar"))
            assert inner.getmember("bk/course/link-out").issym()
            names = inner.getnames()  # the generated config is left out: each server start writes it
            assert "bk/course/gradebook.db" in names and not any(name.startswith("_config") for name in names)
        assert {"grading.tar", "lti-grades.sqlite", "lti-tool-key.pem"} <= members

        fresh = Hub(hub_root(), {})
        try:
            fresh.cli("restore", str(archive))
            restored = fresh.state_dir / "grading" / "bk" / "course"
            rows = sqlite3.connect(restored / "gradebook.db").execute("SELECT * FROM grade").fetchall()
            assert rows == [("ch-ann", 2.0)]
            assert (restored / "submitted" / "ch-ann" / "ps1" / "ps1.ipynb").read_text() == '{"cells": []}'
            info = restored.lstat()
            assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o2770, 4321)  # modes and group kept
            assert (fresh.state_dir / "grading" / "bk" / "exchange" / "bk" / "feedback").is_dir()
            assert not (restored / "link-out").exists() and not (restored / "link-out").is_symlink()
            store = fresh.state_dir / "lti-grades.sqlite"
            assert ags_store.launches(store, "bk") == {"ann": launch}
            assert (fresh.state_dir / "lti-tool-key.pem").read_text() == key.read_text()
            for secret in (store, fresh.state_dir / "lti-tool-key.pem"):
                assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        finally:
            fresh.teardown()
    finally:
        gradebook.close()
        shutil.rmtree(grading / "bk", ignore_errors=True)
        shutil.rmtree(grading / "_config", ignore_errors=True)
        for path in (key, hub.state_dir / "lti-grades.sqlite", archive):
            path.unlink(missing_ok=True)
