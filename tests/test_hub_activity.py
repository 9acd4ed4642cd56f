"""Culling students understand: a busy kernel is activity, idle kernels are shut down in their server."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import requests
from conftest import wait_for

from coursehub.payloads.activity import any_busy
from coursehub.settings import CullerSettings
from coursehub.spawner.sandbox import kernel_cull_args


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
