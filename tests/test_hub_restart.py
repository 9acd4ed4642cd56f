"""A hub crash loses nothing: servers re-attach after kill -9; `down` leaves nothing behind."""

from __future__ import annotations

import pwd
import subprocess
from urllib.parse import urlsplit

import pytest
import requests
from conftest import wait_for

from coursehub.spawner import cgroups

pytestmark = pytest.mark.hub


def server_pid(hub, name: str) -> str:
    """Host pid of the user's oldest process: the sandbox of their server."""
    out = subprocess.run(["pgrep", "-o", "-u", hub.prefix + name], capture_output=True, text=True)
    assert out.stdout.strip(), f"no server process for {name}"
    return out.stdout.strip()


@pytest.mark.parametrize("mode", ["fork", "exec"])
def test_kill9_hub_reattaches_running_server_and_down_cleans_up(make_hub, mode):
    hub = make_hub(sandbox={"spawn_mode": mode})
    (name,) = hub.create_accounts("crash", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    hub.run(name, token, "open('notes.txt', 'w').write('keep me ' * 1000)")
    pid_before = server_pid(hub, name)

    hub.kill9()
    hub.start()

    # Same server process, reachable through the (new) proxy, files intact.
    wait_for(
        lambda: hub.api().json("GET", f"users/{name}")["servers"].get("", {}).get("ready"),
        timeout=120,
        what="the re-attached server",
    )
    assert server_pid(hub, name) == pid_before
    assert hub.run(name, token, "print(len(open('notes.txt').read()))").strip() == "8000"

    unix = hub.prefix + name
    out = hub.cli("down").stdout
    assert "coursehub is down" in out
    # Killed processes may linger a moment as zombies until init reaps them.
    wait_for(
        lambda: subprocess.run(["pgrep", "-u", unix], capture_output=True).returncode == 1,
        timeout=30,
        what=f"processes of {unix} to be gone after `down`",
    )
    assert not [g for g in cgroups.all_groups() if g.dirs[0].name.startswith(unix)]
    assert "hub:   stopped" in hub.cli("status").stdout
    forkservers = subprocess.run(["pgrep", "-f", f"forkserver.py {hub.state_dir}"], capture_output=True)
    assert forkservers.returncode == 1, "a fork server outlived `coursehub down`"
    # The account and home stay (the student's files are theirs), so a restart finds them.
    assert pwd.getpwnam(unix).pw_dir == str(hub.home_root / unix)


def test_stop_server_removes_its_processes_and_cgroup(make_hub):
    hub = make_hub()
    (name,) = hub.create_accounts("stop", 1)
    token = hub.token_for(name)
    hub.spawn(name, token)
    unix = hub.prefix + name
    assert subprocess.run(["pgrep", "-u", unix], capture_output=True).returncode == 0
    status = hub.cli("status").stdout
    assert name in status and "ready" in status
    hub.api().stop_server(name)
    wait_for(lambda: not hub.api().json("GET", f"users/{name}")["servers"], what="the stop")
    wait_for(
        lambda: subprocess.run(["pgrep", "-u", unix], capture_output=True).returncode == 1,
        timeout=30,
        what=f"processes of {unix} to be gone",
    )
    assert not [g for g in cgroups.all_groups() if g.dirs[0].name.startswith(unix)]


def test_up_options_override_the_config_file():
    from conftest import Hub, free_port, hub_root, needs_root_sandbox

    needs_root_sandbox()
    hub = Hub(hub_root())
    port = free_port()
    try:
        hub.url = f"http://{urlsplit(hub.url).hostname}:{port}/"  # localhost with subdomains
        hub.start("--port", str(port))
        assert requests.get(hub.url + "hub/api/", timeout=10).status_code == 200
        # status and down find the hub where it really runs, not where the file says.
        assert f"at {hub.url}" in hub.cli("status").stdout
        assert "Stopped 0 server(s)" in hub.cli("down").stdout
    finally:
        hub.teardown()
