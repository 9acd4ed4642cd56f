"""Culling students understand: a busy kernel is activity, idle kernels are shut down in their server."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from conftest import wait_for

from coursehub.courses.environments import INSTALLED_PAYLOADS, PAYLOADS, install_cull_warning
from coursehub.hub.proxy import without_server_activity
from coursehub.payloads.activity import any_busy, cull_warning, warn_seconds
from coursehub.settings import CullerSettings
from coursehub.spawner.sandbox import cull_env, cull_terms, kernel_cull_args


@pytest.mark.hub
def test_a_quietly_computing_kernel_keeps_its_server_active(fork_hub):
    hub = fork_hub
    (name,) = hub.create_accounts("busy", 1)
    token = hub.token_for(name)
    url = hub.spawn(name, token)
    auth = {"Authorization": f"token {token}"}

    def last_activity() -> datetime:
        status = requests.get(url + "api/status", headers=auth, timeout=30).json()
        return datetime.fromisoformat(status["last_activity"].replace("Z", "+00:00"))

    computing = threading.Thread(target=hub.run, args=(name, token, "import time; time.sleep(45)"))
    computing.start()
    try:
        started = datetime.now(UTC)
        # No output for 45 s: without coursehub_activity the server's last activity stays at the start.
        wait_for(
            lambda: last_activity() > started + timedelta(seconds=15),
            timeout=40,
            what="the busy kernel to count as activity",
        )
    finally:
        computing.join(120)


@pytest.mark.parametrize(
    ("states", "busy"), [([], False), (["idle", "starting"], False), (["idle", "busy"], True)]
)
def test_any_busy_kernel_counts(states, busy):
    assert any_busy(states) is busy


def test_idle_kernels_are_culled_in_their_server_and_busy_ones_never():
    args = kernel_cull_args(1800)
    assert "--MappingKernelManager.cull_idle_timeout=1800" in args
    assert "--MappingKernelManager.cull_busy=False" in args
    assert kernel_cull_args(0) == []


@pytest.mark.parametrize(
    ("culler", "seconds"),
    [
        ({}, 3600),
        ({"timeout": 900}, 900),
        ({"enabled": False}, 0),
        ({"kernel_timeout": 600}, 600),
        ({"enabled": False, "kernel_timeout": 600}, 600),
        ({"kernel_timeout": 0}, 0),
    ],
)
def test_kernels_are_culled_after_the_servers_timeout_unless_said_otherwise(culler, seconds):
    assert CullerSettings.model_validate(culler).kernel_seconds() == seconds


# The warning before a cull: the time left is the hub's last activity of the server plus the timeout.
NOON = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("idle", "timeout", "warn", "expected"),
    [
        (0, 3600, 300, {"warn": False, "seconds_left": 3600, "poll_seconds": 300}),
        (3200, 3600, 300, {"warn": False, "seconds_left": 400, "poll_seconds": 100}),
        (3300, 3600, 300, {"warn": True, "seconds_left": 300, "poll_seconds": 30}),
        (3590, 3600, 300, {"warn": True, "seconds_left": 10, "poll_seconds": 30}),
        (4000, 3600, 300, {"warn": True, "seconds_left": 0, "poll_seconds": 30}),
        (20, 60, 45, {"warn": True, "seconds_left": 40, "poll_seconds": 5}),
        (10, 60, 45, {"warn": False, "seconds_left": 50, "poll_seconds": 5}),
    ],
)
def test_the_warning_shows_only_in_the_last_minutes_before_the_cull(idle, timeout, warn, expected):
    answer = cull_warning(NOON - timedelta(seconds=idle), NOON, timeout, warn)
    assert answer["enabled"] is True
    assert {key: answer[key] for key in expected} == expected
    assert answer["stop_at"] == (NOON - timedelta(seconds=idle - timeout)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(("timeout", "warn", "last"), [(0, 300, NOON), (3600, 0, NOON), (3600, 300, None)])
def test_no_warning_without_a_culler_a_warning_or_a_last_activity(timeout, warn, last):
    assert cull_warning(last, NOON, timeout, warn)["warn"] is False


@pytest.mark.parametrize(
    ("timeout", "setting", "seconds"),
    [
        (3600, None, 300),
        (600, None, 150),
        (60, None, 15),
        (60, 45, 45),
        (60, 600, 60),
        (3600, 0, 0),
        (0, None, 0),
    ],
)
def test_the_warning_comes_min_5_minutes_or_a_quarter_of_the_timeout_before(timeout, setting, seconds):
    assert warn_seconds(timeout, setting) == seconds


def test_guests_are_warned_of_the_culler_that_deletes_them_and_their_files():
    deleting = {"coursehub-binder": 600, "coursehub-temporary": 3600}
    assert cull_terms({"students"}, 3600, deleting) == (3600, False)
    assert cull_terms({"coursehub-binder"}, 3600, deleting) == (600, True)
    assert cull_terms({"coursehub-temporary"}, 1800, deleting) == (1800, True)
    assert cull_terms(set(), 0, deleting) == (0, False)
    env = cull_env(3600, None, deletes=False)
    assert env["COURSEHUB_CULL_TIMEOUT"] == "3600" and env["COURSEHUB_CULL_WARNING"] == "300"
    assert env["COURSEHUB_CULL_DELETES"] == "0" and env["JUPYTERHUB_ACTIVITY_INTERVAL"] == "300"
    assert cull_env(60, 45, deletes=True)["JUPYTERHUB_ACTIVITY_INTERVAL"] == "10"
    assert cull_env(0, None, deletes=False) == {}


def test_the_hub_reads_no_activity_from_the_proxy_on_servers_routes():
    routes = {
        "/user/ann/": {"data": {"user": "ann", "server_name": "", "last_activity": "2026-01-01T12:00:00Z"}},
        "/": {"data": {"hub": True, "last_activity": "2026-01-01T12:00:00Z"}},
    }
    without_server_activity(routes)
    assert "last_activity" not in routes["/user/ann/"]["data"]
    assert routes["/"]["data"]["last_activity"]


def test_the_warning_extension_is_installed_where_jupyterlab_finds_prebuilt_ones(tmp_path):
    install_cull_warning(tmp_path)
    folder = tmp_path / "share" / "jupyter" / "labextensions" / "coursehub-cullwarn"
    build = json.loads((folder / "package.json").read_text())["jupyterlab"]["_build"]
    assert build["extension"] == "./extension"
    assert (folder / build["load"]).read_text() == (PAYLOADS / "cullwarn.js").read_text()
    # A change to the script is a new environment, as for the other payloads.
    assert "cullwarn.js" in INSTALLED_PAYLOADS
