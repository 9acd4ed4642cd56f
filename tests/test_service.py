"""The systemd units' commands, run in the foreground: ExecStart starts a hub that answers, ExecReload
applies a changed config while a student's kernel keeps its state, ExecStop stops everything.

No systemd runs here, so the commands are taken from the unit `coursehub install` wrote and run as
systemd would run them (its Environment= lines included); tests/test_service_pure.py checks the units.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import COURSEHUB, REPO, Hub, hub_root, needs_root_sandbox, wait_for

from coursehub.clients.kernel import KernelSession
from coursehub.host.units import HUB_UNIT, exec_argv

pytestmark = pytest.mark.hub


def unit_commands(unit: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Exec* argv and Environment= of a unit file written by `coursehub install`."""
    commands, env = {}, {}
    for line in unit.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.startswith("Exec"):
            commands[key] = exec_argv(value)
        elif key == "Environment":
            name, _, val = value.strip('"').partition("=")
            env[name] = val
    return commands, env


def run(argv: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{argv}:\n{result.stdout}\n{result.stderr}"
    return result


def test_the_units_commands_start_reload_and_stop_a_hub_and_kernels_survive_the_reload():
    needs_root_sandbox()
    hub = Hub(hub_root())
    elsewhere = hub.root / "some-folder"  # an admin's shell, far from the config
    elsewhere.mkdir()
    shell = {**os.environ, "COURSEHUB_CONFIG": str(hub.config)}
    try:
        run([*COURSEHUB, "install", "--root", str(hub.root / "sysroot")], shell, elsewhere)
        commands, unit_env = unit_commands(hub.root / "sysroot/etc/systemd/system" / HUB_UNIT)
        env = {**os.environ, **unit_env}
        with hub.log_path.open("ab") as log:
            hub.proc = subprocess.Popen(
                commands["ExecStart"], env=env, cwd="/", stdout=log, stderr=subprocess.STDOUT
            )
        wait_for(hub._answers, timeout=300, what=f"the hub of ExecStart (log: {hub.log_path})")

        (name,) = hub.create_accounts("svc", 1)
        token = hub.token_for(name)
        url = hub.spawn(name, token)
        kernel = KernelSession(url, token)
        assert kernel.execute("state = 6 * 7").status == "ok"
        kernel.disconnect()  # the proxy restarts with the hub: the kernel must not care
        server_before = hub.api().json("GET", f"users/{name}")["servers"][""]["started"]
        hub_pid_before = hub.hub_pid
        assert hub.api().json("GET", f"users/{name}")["admin"] is False

        # A course added from another folder goes to the hub's config, never to ./coursehub.yaml.
        demo = REPO / "coursehub" / "demo"
        run([*COURSEHUB, "course", "add", str(demo), "--name", "svcdemo"], shell, elsewhere)
        run([*COURSEHUB, "config", "set", "hub.admin_users", f"[admin, {name}]"], shell, elsewhere)
        assert sorted(p.name for p in elsewhere.iterdir()) == []
        config = yaml.safe_load(hub.config.read_text())
        assert [c["name"] for c in config["courses"]] == ["svcdemo"]

        out = run(commands["ExecReload"], env, Path("/")).stdout
        assert "Reloaded" in out
        assert hub.hub_pid != hub_pid_before  # a new hub process…
        user = hub.api().json("GET", f"users/{name}")
        assert user["admin"] is True  # …with the new setting
        assert user["servers"][""]["started"] == server_before  # …and the same server
        with KernelSession(url, token, kernel_id=kernel.kernel_id) as again:
            result = again.execute("print(state)")
        assert result.status == "ok" and result.stdout.strip() == "42"

        # A config that does not validate is refused before anything stops.
        hub.config.write_text(hub.config.read_text() + "limits: {memory: lots}\n")
        refused = run(commands["ExecReload"], env, Path("/"), check=False)
        assert refused.returncode == 1 and "limits" in refused.stderr
        assert hub.api().json("GET", f"users/{name}")["servers"][""]["ready"]

        hub.config.write_text(hub.config.read_text().replace("limits: {memory: lots}\n", ""))
        assert "coursehub is down" in run(commands["ExecStop"], env, Path("/")).stdout
        assert hub.proc.wait(60) is not None
        assert subprocess.run(["pgrep", "-u", hub.prefix + name], capture_output=True).returncode == 1
    finally:
        hub.teardown()
