"""`coursehub loadtest` against a stock JupyterHub and against coursehub, with two students each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import needs_root_sandbox

from coursehub.cli.ops import loadtest
from coursehub.tools.bench.systems import make_hub as make_bench_hub
from coursehub.tools.loadtest.results import PHASES

pytestmark = pytest.mark.hub
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
OWN_CGROUPS = {"SandboxSpawner": {"cgroup_parent": "coursehub-test-loadtest"}}  # see test_ops_status
# `check` runs only when a run asks its sessions to check (the benchmark's live users), not here.
FLOW = [name for name in PHASES if name != "check"]


@pytest.fixture(scope="module", autouse=True)
def remove_own_cgroup_parent():
    """The spawner creates the parent group; leave no empty one behind."""
    yield
    for parent in Path("/sys/fs/cgroup").glob("*/coursehub-test-loadtest"):
        parent.rmdir()


def run_loadtest(url: str, out: Path, *args: str) -> tuple[object, dict]:
    """Invoke the command with a short session; its result and its JSON."""
    json_path, png_path = out.with_suffix(".json"), out.with_suffix(".png")
    common = ["--session", "3", "--interval", "1", "--ramp", "1", "--progress-every", "1"]
    result = CliRunner().invoke(
        loadtest, [url, *args, *common, "--json", str(json_path), "--png", str(png_path)]
    )
    assert png_path.read_bytes().startswith(PNG_MAGIC)
    return result, json.loads(json_path.read_text())


def assert_every_phase_succeeded(result, data: dict, users: int) -> None:
    assert result.exit_code == 0, result.output
    summary = data["summary"]
    assert summary["ok"] == users and summary["failed"] == 0 and not summary["errors"], summary
    assert list(summary["phases"]) == FLOW
    for name in FLOW:
        assert summary["phases"][name]["ok"] == users, (name, summary["phases"][name])
        assert f"\n{name} " in result.output, f"no {name} line in:\n{result.output}"
    for student in data["run"]["students"]:
        assert [p["name"] for p in student["phases"]] == FLOW
        assert student["executions"] >= 2 and student["ttfr"] > 0
    assert "time to first result: p50" in result.output
    assert "waiting" in result.output or "spawn" in result.output  # live progress lines


def no_servers_left(api) -> bool:
    return not [user["name"] for user in api.users() if user.get("servers")]


def test_loadtest_against_stock_jupyterhub(tmp_path, output_dir):
    needs_root_sandbox()
    hub = make_bench_hub("stock", tmp_path / "logs")
    try:
        hub.start()
        result, data = run_loadtest(
            hub.url, output_dir / "loadtest-stock", "--dummy", "2", "--password", hub.password
        )
        assert_every_phase_succeeded(result, data, 2)
        assert no_servers_left(hub.admin())
    finally:
        hub.close()


def test_loadtest_against_coursehub_accounts_guests_and_time_limit(make_hub, output_dir):
    hub = make_hub(jupyterhub=OWN_CGROUPS)
    hub.create_accounts("lt", 2)
    (accounts,) = (hub.root / "cards-lt").glob("*.csv")
    result, data = run_loadtest(hub.url, output_dir / "loadtest-coursehub", "--accounts", str(accounts))
    assert_every_phase_succeeded(result, data, 2)
    assert no_servers_left(hub.api())

    folder = hub.root / "open-course"
    folder.mkdir()
    (folder / "README.md").write_text("open to anyone\n")
    hub.cli("course", "add", str(folder), "--name", "open1", "--access", "open")
    result, data = run_loadtest(
        hub.url, output_dir / "loadtest-guests", "--tmplogin", "open1", "--users", "2"
    )
    assert_every_phase_succeeded(result, data, 2)
    guests = [s["user"] for s in data["run"]["students"]]
    assert all(name.startswith("tmp-") for name in guests), guests
    assert no_servers_left(hub.api())

    # Bounded: sessions longer than the time limit are cut, and their servers stopped anyway.
    cut = CliRunner().invoke(
        loadtest,
        [hub.url, "--accounts", str(accounts), "--session", "300", "--time-limit", "20"],
    )
    assert cut.exit_code == 1, cut.output
    assert "stopped at the time limit" in cut.output and "session: time-limit" in cut.output
    assert no_servers_left(hub.api())
