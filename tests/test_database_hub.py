"""The hub on a real PostgreSQL server: log in, spawn, run a cell, launch links, culling, restart.

The rest of the suite runs on the embedded SQLite default; this module runs the paths that
touch the hub database hardest against PostgreSQL (see docs/security.md's database note).
"""

from __future__ import annotations

import pytest
import requests
from conftest import Hub, hub_root, postgres_settings, wait_for

from coursehub.settings import DEMO_DIR

pytestmark = pytest.mark.hub


@pytest.fixture(scope="module")
def pg_hub(make_hub_module, postgres):
    database = postgres_settings(postgres)
    hub = make_hub_module(database=database, temporary={"idle_timeout": 60}, culler={"every": 10})
    hub.database = database["url"].rsplit("/", 1)[1]
    return hub, postgres


@pytest.fixture(scope="module", autouse=True)
def guest(pg_hub):
    """A temporary user made at the module's start: its minute of idleness runs beside the tests."""
    hub, pg = pg_hub
    hub.cli("course", "add", str(DEMO_DIR), "--name", "open1", "--access", "open")
    # Not following the redirect: a guest without a server, so one culling round removes them.
    response = requests.get(hub.url + "hub/tmplogin?course=open1", allow_redirects=False, timeout=120)
    assert response.status_code == 302 and "/hub/launch/open1" in response.headers["Location"]
    guests = {n for n in pg.sql("SELECT name FROM users", hub.database).split() if n.startswith("tmp-")}
    assert len(guests) == 1
    return guests


def test_hub_state_lives_in_postgres_not_sqlite(pg_hub):
    hub, pg = pg_hub
    (name,) = hub.create_accounts("pg", 1)
    hub.login(name)
    users = pg.sql("SELECT name FROM users ORDER BY name", hub.database).split()
    assert name in users
    # The embedded default file exists (created private at start) but the hub never wrote to it.
    assert (hub.state_dir / "jupyterhub.sqlite").stat().st_size == 0


def test_spawn_and_run_a_cell(pg_hub):
    hub, _ = pg_hub
    (name,) = hub.create_accounts("pgrun", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    assert hub.run(name, token, "print(6 * 7)").strip() == "42"


def test_launch_link_starts_the_course_server(pg_hub):
    hub, _ = pg_hub
    (name,) = hub.create_accounts("pglink", 1)
    session = hub.login(name)
    response = session.get(hub.url + "hub/launch/demo", timeout=120)
    assert response.status_code == 200
    wait_for(
        lambda: hub.api().json("GET", f"users/{name}")["servers"].get("demo", {}).get("ready"),
        timeout=180,
        what="the demo course server",
    )
    lab = session.get(hub.server_url(name, "demo") + "lab/tree/demo/welcome.ipynb", timeout=120)
    assert lab.status_code == 200 and "JupyterLab" in lab.text


def test_backup_restores_into_a_fresh_database(pg_hub):
    """pg_dump while the hub runs, pg_restore into another database: users and tokens come back."""
    hub, pg = pg_hub
    (name,) = hub.create_accounts("pgbk", 1)
    hub.token_for(name)
    archive = hub.root / "pg-backup.tar.gz"
    assert "(0600; postgresql)" in hub.cli("backup", str(archive)).stdout
    fresh = Hub(hub_root(), {"database": postgres_settings(pg)})
    try:
        fresh.cli("restore", str(archive))
        database = fresh.overrides["database"]["url"].rsplit("/", 1)[1]
        assert name in pg.sql("SELECT name FROM users", database).split()
        tokens = "SELECT count(*) FROM api_tokens JOIN users ON users.id = api_tokens.user_id WHERE name = "
        assert int(pg.sql(f"{tokens}'{name}'", database)) >= 1
        assert (fresh.state_dir / "accounts.sqlite").stat().st_size > 0
        refused = fresh.cli("restore", str(archive), check=False)
        assert refused.returncode == 1 and "--force" in refused.stderr
        fresh.cli("restore", "--force", str(archive))  # pg_restore --clean over the restored one
        assert name in pg.sql("SELECT name FROM users", database).split()
    finally:
        fresh.teardown()


def test_kill9_restart_reattaches_the_server(pg_hub):
    hub, _ = pg_hub
    (name,) = hub.create_accounts("pgkill", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    hub.run(name, token, "open('kept.txt', 'w').write('x' * 123)")
    hub.kill9()
    hub.start()
    wait_for(
        lambda: hub.api().json("GET", f"users/{name}")["servers"].get("", {}).get("ready"),
        timeout=120,
        what="the re-attached server",
    )
    # The same kernel-less server answers with the old token: state came back from PostgreSQL.
    assert hub.run(name, token, "print(len(open('kept.txt').read()))").strip() == "123"


def test_temporary_user_is_culled(pg_hub, guest):
    """Last in the module: its guest has been idle since the module started."""
    hub, pg = pg_hub
    wait_for(
        lambda: not guest & set(pg.sql("SELECT name FROM users", hub.database).split()),
        timeout=300,
        interval=2,
        what=f"temporary user {guest} to be culled (idle_timeout 60 s)",
    )
