"""A burst's CPU split by part, and how busy the cores were until 95 % had a result, as data."""

from __future__ import annotations

import pytest

from coursehub.tools.bench.burstcpu import CpuSample, at, burst_cpu, results_in
from coursehub.tools.bench.procstats import parse_machine_busy_ticks
from coursehub.tools.bench.report import render_markdown

STAT = """cpu  1000 50 300 9000 200 10 20 5 0 0
cpu0 500 25 150 4500 100 5 10 2 0 0
intr 1 2 3
"""


def sample(wall: float, machine: float, hub: float = 0, proxy: float = 0, client: float = 0) -> CpuSample:
    return CpuSample(wall=wall, machine=machine, hub=hub, proxy=proxy, client=client)


def test_busy_ticks_are_everything_but_idle_and_iowait():
    assert parse_machine_busy_ticks(STAT) == 1000 + 50 + 300 + 10 + 20 + 5
    with pytest.raises(ValueError):
        parse_machine_busy_ticks("intr 1 2 3\n")


def test_95_percent_had_a_result_when_the_ceil_of_95_percent_of_all_students_had_one():
    assert results_in([3.0, 1.0, 2.0], 3) == 3.0
    assert results_in([float(i) for i in range(1, 101)], 100) == 95.0
    # Failures count against it: 94 results of 100 students never make 95 %.
    assert results_in([1.0] * 94, 100) is None
    assert results_in([], 0) is None


def test_the_sample_at_a_moment_is_the_last_one_taken_by_then():
    samples = [sample(0, 0), sample(1, 1), sample(2, 3)]
    assert at(samples, 1.5) == samples[1]
    assert at(samples, -1) == samples[0]
    assert at(samples, 9) == samples[2]


def test_the_browsers_cpu_is_not_the_students_cost():
    # 100 students over 20 s on 2 cores: 38 CPU-s busy, 8 of them the simulated browsers.
    samples = [
        sample(100, 500, hub=10, proxy=2, client=30),
        sample(110, 520, hub=16, proxy=3, client=34),  # 10 s in: both cores busy, 4 CPU-s browsers
        sample(120, 538, hub=22, proxy=5, client=38),
    ]
    cpu = burst_cpu(samples, students=100, cores=2, p95=10.0)
    assert cpu["busy_fraction"] == pytest.approx(38 / 40)
    assert (cpu["hub_s"], cpu["proxy_s"], cpu["client_s"]) == pytest.approx((12.0, 3.0, 8.0))
    assert cpu["rest_s"] == pytest.approx(30.0 - 12.0 - 3.0)
    assert cpu["per_student_s"] == pytest.approx(0.30)
    # Until 95 had a result (10 s): every core busy, 16 CPU-s without the browsers, for 95 students.
    assert cpu["busy_until_p95"] == pytest.approx(1.0)
    assert cpu["per_student_until_p95_s"] == pytest.approx(16 / 95)
    # Never 95 %: nothing said of that time.
    never = burst_cpu(samples, students=100, cores=2, p95=None)
    assert never["busy_until_p95"] is None and never["per_student_until_p95_s"] is None


def test_cores_always_busy_until_the_result_give_the_budget_the_report_states():
    # The report's rule: a p95 of T s for N students on C cores needs at most T × C ÷ (0.95 × N) CPU-s each.
    samples = [sample(0, 0), sample(8, 16)]
    cpu = burst_cpu(samples, 100, 2, 8.0)
    assert cpu["busy_until_p95"] == pytest.approx(1.0)
    assert cpu["per_student_until_p95_s"] == pytest.approx(8.0 * 2 / (0.95 * 100))


def test_the_report_shows_where_a_bursts_cpu_went():
    from test_loadtest_pure import burst_results

    results = burst_results()
    burst = results["systems"]["coursehub"]["bursts"][0]
    samples = [sample(0, 0), sample(150, 285, client=30), sample(300, 540, hub=80, proxy=20, client=60)]
    burst["cpu"] = burst_cpu(samples, 400, 2, 150.0, users=200.0)
    assert burst["cpu"]["users_s"] == 200.0
    text = render_markdown(results)
    assert "### Bursts: where the CPU went" in text
    row = "| coursehub, defaults | 400 | 90% | 80.0 s | 20.0 s | 380.0 s | 200.0 s (0.50 each) | 60.0 s | "
    row += "1.20 | 150 s | 95% | 0.67 |"
    assert row in text
    # Results from before the students' processes were read: a dash there.
    del burst["cpu"]["users_s"]
    assert "| 380.0 s | — | 60.0 s |" in render_markdown(results)
    # Results from before this table: no table, nothing broken.
    del burst["cpu"]
    assert "where the CPU went" not in render_markdown(results)
