"""`coursehub plan`: the arithmetic on worked examples, its YAML, and bad inputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from coursehub.cli.ops import plan as plan_command
from coursehub.errors import ConfigError
from coursehub.kubernetes import values as k8s
from coursehub.settings import Settings
from coursehub.tools.plan import (
    GIB,
    MIB,
    Machine,
    Overhead,
    PlanInputs,
    PriceTable,
    make_plan,
    placeholders_for,
    plan_values,
    users_per_node,
)
from coursehub.tools.planfiles import (
    PRICES,
    load_prices,
    overhead_from_bench,
    overhead_from_results,
)
from coursehub.tools.planreport import plan_yaml, table_lines

# A small table with round numbers, so that the worked examples can be followed by hand.
TABLE = PriceTable(
    machines=(
        Machine("small", 2, 8 * GIB, 0.10),
        Machine("mid", 16, 128 * GIB, 1.00),
        Machine("big", 48, 384 * GIB, 3.00),
        Machine("huge", 128, 1024 * GIB, 8.00),
    ),
    as_of="2024-06-01",
    note="test prices",
    cluster_hourly=0.10,
)
# Round overheads, so that the arithmetic does not move when the measured defaults do.
OVERHEAD = Overhead(server_memory=156 * MIB, hub_memory=167 * MIB, cpu_seconds_per_start=4.9, source="test")


def test_esip_workshop_60_users_8_gb_each():
    plan = make_plan(PlanInputs(students=60, memory=8 * GIB), TABLE, OVERHEAD)
    # 60 % of 60 at once; each server gets 8 GiB + 156 MiB of Jupyter, rounded up to 64 MiB.
    assert (plan.concurrent_low, plan.concurrent) == (24, 36)
    assert plan.server_memory == 8 * GIB + 192 * MIB
    # One machine: 36 servers + hub and proxy + 1 GiB for the OS; 36 × 0.5 cores + 1 for the hub.
    single = plan.single
    assert single.memory_needed == 36 * (8 * GIB + 192 * MIB) + 167 * MIB + GIB
    assert single.cores_needed == 19
    assert single.machine is not None and single.machine.name == "big"
    assert single.monthly == pytest.approx(3.00 * 730)
    # 36 arrive at 1/s; 47 cores start 47/4.9 ≈ 9.6 servers a second: arrivals are the bottleneck.
    assert single.start_all_seconds == pytest.approx(36)
    assert plan.recommendation == "single"
    # Kubernetes: 30 % may wait while a node boots (300 s at 1/s: all 36 arrive) -> 36 - 10 placeholders.
    cluster = plan.cluster
    assert cluster is not None
    assert (cluster.arrivals_during_boot, cluster.placeholders) == (36, 26)
    assert cluster.waiting_share == pytest.approx(10 / 36)
    assert cluster.node.name == "mid"  # (128 GiB × 0.94 - 1) / 8.19 GiB = 14 students per node
    assert cluster.users_per_node == 14
    assert cluster.nodes_at_peak == math.ceil((36 + 26) / 14) == 5
    assert cluster.nodes_idle == 2
    assert cluster.monthly_peak == pytest.approx((5 * 1.00 + 0.10 + 0.10) * 730)
    assert cluster.monthly_idle == pytest.approx((2 * 1.00 + 0.10 + 0.10) * 730)


def test_a_400_student_class_goes_to_kubernetes():
    plan = make_plan(PlanInputs(students=400, memory=2 * GIB, cpu=0.25), TABLE, OVERHEAD)
    assert plan.concurrent == 240
    assert plan.server_memory == 2 * GIB + 192 * MIB
    assert plan.recommendation == "kubernetes"  # more than 100 students
    cluster = plan.cluster
    assert cluster is not None
    assert cluster.placeholders == 240 - 72  # all arrive within a node boot; 30 % may wait
    per_node = {m.name: users_per_node(m, plan.server_memory, 0.25) for m in TABLE.machines}
    assert per_node == {"small": 2, "mid": 54, "big": 100, "huge": 100}  # 100: the pods-per-node cap
    assert (cluster.node.name, cluster.nodes_at_peak) == ("mid", 8)  # 408 pods: 8 × 1.00 beats 5 × 3.00
    assert plan.single.machine is not None and plan.single.machine.name == "huge"


def test_slow_arrivals_need_no_placeholders():
    inputs = PlanInputs(students=100, memory=GIB, arrival_rate=0.05, node_boot_seconds=120)
    assert placeholders_for(60, inputs) == (0, 6)  # 6 arrive during a boot; 18 may wait


def test_no_machine_big_enough_says_so():
    tiny = PriceTable(machines=(Machine("small", 2, 8 * GIB, 0.1),))
    plan = make_plan(PlanInputs(students=60, memory=2 * GIB), tiny)
    assert plan.single.machine is None and plan.recommendation == "kubernetes"
    assert any("one machine cannot hold this class" in note for note in plan.notes)
    with pytest.raises(ConfigError, match="no machine in the price table is big enough"):
        make_plan(PlanInputs(students=10, memory=16 * GIB), tiny)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (PlanInputs(students=0, memory=GIB), "at least 1 student"),
        (PlanInputs(students=30, memory=-GIB), "memory per student must be positive"),
        (PlanInputs(students=30, memory=GIB, cpu=0), "CPU per student must be positive"),
        (PlanInputs(students=30, memory=GIB, concurrency=(0.6, 0.4)), "concurrency"),
        (PlanInputs(students=30, memory=GIB, concurrency=(0.4, 1.5)), "concurrency"),
        (PlanInputs(students=30, memory=GIB, arrival_rate=0), "arrival rate"),
        (PlanInputs(students=30, memory=GIB, node_boot_seconds=-1), "node boot"),
    ],
)
def test_bad_inputs_are_rejected_with_clear_messages(inputs, message):
    with pytest.raises(ConfigError, match=message):
        make_plan(inputs, TABLE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--students", "0", "--memory", "2G"], "at least 1 student"),
        (["--students", "60", "--memory=-8G"], "must be positive"),
        (["--students", "60", "--memory", "lots"], "is not a size"),
        (["--students", "60", "--memory", "2G", "--concurrency", "60-40"], "concurrency"),
    ],
)
def test_the_command_rejects_bad_inputs(args, message):
    result = CliRunner().invoke(plan_command, args)
    assert result.exit_code == 2 and message in result.output, result.output


def test_the_yaml_is_coursehub_settings_that_render_kubernetes_takes(tmp_path):
    plan = make_plan(PlanInputs(students=400, memory=2 * GIB), load_prices())
    text = plan_yaml(plan)
    assert text.startswith("# coursehub plan: 400 students")
    fragment = yaml.safe_load(text)
    assert fragment == plan_values(plan)
    course = {"name": "bio", "repo": "https://example.org/bio.git", "kubernetes": {"image": "r/bio:1"}}
    settings = Settings.model_validate({**fragment, "courses": [course]})
    assert settings.limits.memory == plan.server_memory
    assert settings.kubernetes.scheduling.user_placeholders == plan.cluster.placeholders
    values = k8s.build_values(settings)
    assert values["scheduling"]["userPlaceholder"]["replicas"] == plan.cluster.placeholders
    limit = values["singleuser"]["memory"]["limit"]
    assert limit == values["singleuser"]["memory"]["guarantee"]  # requests = limits: sized for it


def test_the_table_names_the_machine_the_nodes_and_the_prices():
    lines = table_lines(make_plan(PlanInputs(students=60, memory=8 * GIB), load_prices()))
    text = "\n".join(lines)
    assert "r6i.12xlarge" in text and "recommendation    one machine" in text
    assert "placeholders" in text and "example prices" in text and "2024" in text


def test_the_shipped_price_table_is_labelled_and_dated():
    prices = load_prices(PRICES)
    assert "example" in prices.note and prices.as_of[:2] == "20" and len(prices.machines) >= 8
    assert "EXAMPLE PRICES" in PRICES.read_text()


def test_overhead_comes_from_the_latest_benchmark(tmp_path):
    results = {
        "started_at": "2026-01-01T00:00:00+00:00",
        "systems": {
            "stock": {"memory": {"pss_per_user_mib": {"p50": 150}, "hub_plus_proxy_mib": 170}},
            "coursehub": {
                "label": "coursehub, defaults",
                "memory": {
                    "pss_per_user_mib": {"p50": 60.5},
                    "hub_plus_proxy_mib": 200,
                    "cpu_s_per_spawn": {"p50": 0.4},
                },
            },
        },
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    overhead = overhead_from_bench(path)
    assert overhead == overhead_from_results(results, str(path))
    assert overhead is not None and overhead.server_memory == int(60.5 * MIB)
    assert overhead.hub_memory == 200 * MIB and overhead.cpu_seconds_per_start == 0.4
    assert str(path) in overhead.source
    assert overhead_from_bench(tmp_path / "missing.json") is None
    plan = make_plan(PlanInputs(students=10, memory=GIB), TABLE, overhead)
    assert plan.server_memory == GIB + 64 * MIB and plan.overhead.source == overhead.source
    assert make_plan(PlanInputs(students=10, memory=GIB), TABLE).overhead == Overhead()


def test_the_command_reads_the_benchmark_and_writes_yaml(tmp_path):
    out = tmp_path / "plan.yaml"
    result = CliRunner().invoke(
        plan_command,
        ["--students", "60", "--memory", "8G", "--bench", str(tmp_path / "none.json"), "--yaml", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert Overhead().source in result.output
    assert yaml.safe_load(out.read_text())["limits"]["memory"] == "8384M"


def test_the_worked_examples_in_the_docs_match_the_code():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    prices = load_prices()
    esip = make_plan(PlanInputs(students=60, memory=8 * GIB), prices)
    big = make_plan(PlanInputs(students=400, memory=2 * GIB), prices)
    assert esip.single.machine is not None and big.single.machine is not None and big.cluster is not None
    assert f"{esip.single.machine.name}, ≈ {esip.single.monthly:,.0f} USD/month" in docs
    assert (
        f"{esip.cluster.nodes_at_peak} × {esip.cluster.node.name}, {esip.cluster.placeholders} placeholders"
        in docs
    )
    assert f"{big.single.machine.name}, ≈ {big.single.monthly:,.0f} USD/month" in docs
    assert (
        f"{big.cluster.nodes_at_peak} × {big.cluster.node.name}, {big.cluster.placeholders} placeholders, "
        f"{big.cluster.monthly_idle:,.0f}–{big.cluster.monthly_peak:,.0f} USD/month"
    ) in docs
