"""The `database:` section, pure: URLs, where passwords may come from, and the hub config they give."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from coursehub.errors import ConfigError
from coursehub.host.database import resolve_url
from coursehub.hubconfig import Runtime, build
from coursehub.hubconfig.database import redacted
from coursehub.paths import StatePaths
from coursehub.settings.yamlfile import parse_settings

PATHS = StatePaths(Path("/srv/state"))
RUNTIME = Runtime(paths=PATHS, proxy_command="/bin/chp", python="/venv/bin/python", user_env=Path("/e"))
PG = "database: {url: 'postgresql://hub@db.example.org:5433/coursehub', password_env: HUB_DB_PW}"


def test_default_is_sqlite_in_the_state_folder():
    settings = parse_settings("")
    assert resolve_url(settings, PATHS, {}) == "sqlite:////srv/state/jupyterhub.sqlite"
    c = build(settings, RUNTIME)
    assert c.JupyterHub.db_url == "sqlite:////srv/state/jupyterhub.sqlite"
    assert "db_kwargs" not in c.JupyterHub


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("database: {url: 'postgresql://hub:secret@db/coursehub'}", "contains a password"),
        ("database: {url: 'postgresql://hub@db/coursehub?password=secret'}", "contains a password"),
        ("database: {url: 'mysql://hub@db/coursehub'}", "'mysql' is not supported"),
        ("database: {url: 'not a url'}", "is not a database URL"),
        ("database: {password_env: PW}", "needs a postgresql:// database.url"),
        ("database: {url: 'postgresql://h/d', password_env: 'A B'}", "password_env"),
        ("database: {url: 'postgresql://h/d', password_file: relative}", "must be an absolute path"),
        ("database: {url: 'postgresql://h/d', password_env: A, password_file: /x}", "not both"),
    ],
)
def test_bad_database_settings_say_what_to_change(yaml_text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse_settings(yaml_text)
    assert "secret" not in str(info.value)  # an inline password is never echoed back


def test_password_from_the_named_variable_is_quoted_into_the_url():
    settings = parse_settings(PG)
    url = resolve_url(settings, PATHS, {"HUB_DB_PW": "p@ss:w/rd%"})
    parsed = make_url(url)
    assert (parsed.password, parsed.host, parsed.port, parsed.database) == (
        "p@ss:w/rd%",
        "db.example.org",
        5433,
        "coursehub",
    )
    assert "p@ss" not in redacted(url)
    c = build(settings, replace(RUNTIME, db_url=url))
    assert c.JupyterHub.db_url == url and url.startswith("postgresql+psycopg://")
    assert c.JupyterHub.db_kwargs["pool_pre_ping"] is True


def test_a_missing_password_variable_is_named():
    with pytest.raises(ConfigError, match=r"\$HUB_DB_PW, which is not set"):
        resolve_url(parse_settings(PG), PATHS, {})


def test_environment_url_wins_and_may_carry_its_password():
    settings = parse_settings(PG)
    env = {"COURSEHUB_DATABASE_URL": "postgresql://other:pw@h2/db2"}
    assert resolve_url(settings, PATHS, env) == "postgresql://other:pw@h2/db2"
    with pytest.raises(ConfigError, match="COURSEHUB_DATABASE_URL"):
        resolve_url(settings, PATHS, {"COURSEHUB_DATABASE_URL": "oracle://x/y"})


def test_password_file_must_be_private(tmp_path):
    path = tmp_path / "pw"
    path.write_text("from-a-file\n")
    settings = parse_settings(f"database: {{url: 'postgresql://hub@db/ch', password_file: {path}}}")
    os.chmod(path, 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        resolve_url(settings, PATHS, {})
    os.chmod(path, 0o600)
    assert make_url(resolve_url(settings, PATHS, {})).password == "from-a-file"
