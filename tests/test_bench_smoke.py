"""The benchmark end to end at tiny sizes: stock JupyterHub and coursehub, every phase, outputs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import needs_root_sandbox

from coursehub.cli.bench import bench

pytestmark = pytest.mark.hub

FLOW = ["login", "spawn", "page", "kernel", "execute", "delete_kernel", "stop"]
LIVE_FLOW = ["login", "spawn", "page", "kernel", "execute", "check", "delete_kernel", "stop"]  # + the check
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PHASE_HEADER = (
    "| system | users | login | spawn (until the server answered) | page (OAuth, JupyterLab's HTML) "
    "| kernel | first cell |"
)


def all_runs(entry: dict) -> list[tuple[dict, list[str]]]:
    """Every load run of one system with the phases its students go through."""
    return [
        *((run, FLOW) for run in entry["single"]["runs"]),
        (entry["memory"]["run"], FLOW),
        (entry["live"]["run"], LIVE_FLOW),
        *((burst["run"], FLOW) for burst in entry["bursts"]),
    ]


def test_bench_runs_stock_and_coursehub_and_writes_its_outputs(tmp_path):
    needs_root_sandbox()
    out = tmp_path / "bench"
    args = ["--systems", "stock,coursehub", "--sizes", "2", "--repeat", "1"]
    args += ["--memory-users", "1", "--memory-rate", "0", "--readers", "2", "--time-limit", "300"]
    args += ["--live-users", "2", "--live-rate", "2"]
    result = CliRunner().invoke(bench, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output

    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"machine", "options", "started_at", "duration", "systems"}
    assert results["machine"]["cores"] and results["machine"]["jupyterhub"]
    assert list(results["systems"]) == ["stock", "coursehub"]
    for name, entry in results["systems"].items():
        assert entry["error"] == "", f"{name}: {entry['error']}"
        assert entry["single"]["summary"]["ok"] == 1, (name, entry["single"]["summary"])
        assert [(b["size"], b["summary"]["ok"]) for b in entry["bursts"]] == [(2, 2)], name
        memory = entry["memory"]
        assert memory["users"] == 1, (name, memory["summary"])
        assert memory["pss_per_user_mib"]["p50"] > 10, (name, memory)
        assert memory["hub_pss_mib"] > 10 and memory["proxy_pss_mib"] > 5, (name, memory)
        assert memory["cpu_s_per_spawn"]["p50"] > 0, (name, memory)
        live = entry["live"]
        assert (live["live"], live["cell_ok"], live["stopped_by"]) == (2, 2, ""), (name, live["summary"])
        assert live["pss_per_user_mib"]["p50"] > 10 and live["hub_plus_proxy_mib"] > 15, (name, live)
        burst = entry["bursts"][0]
        assert burst["hub_cpu_s_per_spawn"] > 0, (name, burst)
        assert burst["cpu"]["users_s"] > 0, (name, burst["cpu"])  # the students' servers and kernels, read
        phases = burst["summary"]["phases"]
        launch = ("login", "spawn", "page", "kernel", "execute")
        assert all(phases[p]["ok"] == 2 for p in launch), (name, phases)
        for run, flow in all_runs(entry):
            for student in run["students"]:
                names = [phase["name"] for phase in student["phases"]]
                assert [n for n in names if n != "session"] == flow, (name, student)
                failed = [p for p in student["phases"] if not p["ok"]]
                assert not failed and not student["error"], (name, student)
                assert student["ttfr"] > 0

    textbook = results["systems"]["coursehub"]["textbook"]
    assert textbook["one"]["ok"] == 1 and textbook["crowd"]["ok"] == 2, textbook
    assert textbook["crowd"]["seconds"]["max"] > 0
    assert "textbook" not in results["systems"]["stock"]  # no Binder API there
    # The spawner timed its isolation steps (namespace: network.isolate is on by default); stock has none.
    steps = results["systems"]["coursehub"]["memory"]["isolation"]
    assert set(steps) == {"account", "cgroup", "namespace"}, steps
    assert all(step["steps"] == 1 and step["seconds"] > 0 for step in steps.values()), steps
    assert results["systems"]["stock"]["memory"]["isolation"] == {}

    markdown = (out / "results.md").read_text()
    assert "stock JupyterHub, default timeouts" in markdown and "coursehub, defaults" in markdown
    assert "| coursehub, defaults | 2 at once | 2/2 |" in markdown
    live_rows = [line for line in markdown.splitlines() if line.endswith("| the target (2) |")]
    assert len(live_rows) == 2 and all("| 2 | 2/2 |" in row for row in live_rows), live_rows
    assert PHASE_HEADER in markdown
    png = (out / "ttfr.png").read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 1000

    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:start -->\nold\n<!-- bench:end -->\n")
    done = CliRunner().invoke(bench, ["readme", str(readme), "--from", str(out / "results.json")])
    assert done.exit_code == 0, done.output
    assert "coursehub, defaults" in readme.read_text() and "old" not in readme.read_text()
    readme.write_text("# no markers\n")
    refused = CliRunner().invoke(bench, ["readme", str(readme), "--from", str(out / "results.json")])
    assert refused.exit_code == 1 and "bench:start" in refused.output
