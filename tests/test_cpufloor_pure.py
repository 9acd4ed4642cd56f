"""A burst's CPU split by part and the floor it puts under the p95, as data."""

from __future__ import annotations

import pytest

from coursehub.tools.bench.cpufloor import CpuSample, burst_cpu, per_student_budget
from coursehub.tools.bench.procstats import parse_machine_busy_ticks
from coursehub.tools.bench.report import render_markdown

STAT = """cpu  1000 50 300 9000 200 10 20 5 0 0
cpu0 500 25 150 4500 100 5 10 2 0 0
intr 1 2 3
"""


def test_busy_ticks_are_everything_but_idle_and_iowait():
    assert parse_machine_busy_ticks(STAT) == 1000 + 50 + 300 + 10 + 20 + 5
    with pytest.raises(ValueError):
        parse_machine_busy_ticks("intr 1 2 3\n")


def test_the_browsers_cpu_is_not_the_students_cost_and_the_floor_follows_from_it():
    before = CpuSample(wall=100.0, machine=500.0, hub=10.0, proxy=2.0, client=30.0)
    # 100 students in 20 s: 38 CPU-s busy on 2 cores, of which 8 s were the simulated browsers.
    after = CpuSample(wall=120.0, machine=538.0, hub=22.0, proxy=5.0, client=38.0)
    cpu = burst_cpu(before, after, students=100, cores=2)
    assert cpu["busy_fraction"] == pytest.approx(38 / 40)
    assert (cpu["hub_s"], cpu["proxy_s"], cpu["client_s"]) == pytest.approx((12.0, 3.0, 8.0))
    assert cpu["rest_s"] == pytest.approx(30.0 - 12.0 - 3.0)
    assert cpu["per_student_s"] == pytest.approx(0.30)
    assert cpu["floor_p95_s"] == pytest.approx(0.95 * 100 * 0.30 / 2)


def test_a_budget_and_its_floor_agree():
    budget = per_student_budget(100, 8.0, 2)
    assert budget == pytest.approx(8.0 * 2 / 95)
    sample = CpuSample(wall=0.0, machine=0.0, hub=0.0, proxy=0.0, client=0.0)
    spent = CpuSample(wall=10.0, machine=budget * 100, hub=0.0, proxy=0.0, client=0.0)
    assert burst_cpu(sample, spent, 100, 2)["floor_p95_s"] == pytest.approx(8.0)


def test_the_report_shows_where_a_bursts_cpu_went():
    from test_loadtest_pure import burst_results

    results = burst_results()
    burst = results["systems"]["coursehub"]["bursts"][0]
    before = CpuSample(wall=0.0, machine=0.0, hub=0.0, proxy=0.0, client=0.0)
    after = CpuSample(wall=300.0, machine=540.0, hub=80.0, proxy=20.0, client=60.0)
    burst["cpu"] = burst_cpu(before, after, 400, 2)
    text = render_markdown(results)
    assert "### Bursts: where the CPU went" in text
    row = "| coursehub, defaults | 400 | 90% | 80.0 s | 20.0 s | 380.0 s | 60.0 s | 1.20 | 228 s | 2.95 s |"
    assert row in text
    # Results from before this table: no table, nothing broken.
    del burst["cpu"]
    assert "where the CPU went" not in render_markdown(results)
