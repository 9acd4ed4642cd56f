"""Pure parts of the load tester and the benchmark: summaries, error kinds, parsers, reports."""

from __future__ import annotations

import ipaddress
import resource
from collections import Counter
from pathlib import Path

import pytest
import requests

from coursehub.errors import CoursehubError
from coursehub.tools.bench.admission import (
    PRIOR_USER_MIB,
    admission,
    burst_fit,
    burst_user_mib,
    user_cost_mib,
)
from coursehub.tools.bench.chart import COLORS
from coursehub.tools.bench.configs import (
    BENCH_SUBNETS,
    LABELS,
    SYSTEMS,
    Ports,
    StockSpec,
    coursehub_settings,
    stock_config,
)
from coursehub.tools.bench.hubmetrics import isolation_totals, per_spawn
from coursehub.tools.bench.machine import mem_available_mib, mem_total_mib, safety_margin_mib
from coursehub.tools.bench.procstats import parse_environ, parse_pss_kib, parse_stat
from coursehub.tools.bench.report import END, START, render_markdown, replace_section, seconds
from coursehub.tools.bench.runner import open_files_limits
from coursehub.tools.loadtest import (
    ADMIT,
    STOP,
    WAIT,
    Credential,
    LoadConfig,
    LoadTest,
    Phase,
    RunResult,
    StudentResult,
    describe,
    errors_by_kind,
    percentile,
    phase_stats,
    summarize,
)
from coursehub.tools.loadtest.failures import (
    PhaseError,
    error_kind,
    normalize_message,
    spawn_failed_kind,
)
from coursehub.tools.loadtest.results import NOT_ADMITTED
from coursehub.tools.loadtest.students import RunContext, progress_line
from coursehub.tools.loadtest.summary import admitted, merge


def student(user: str, ttfr: float | None, *phases: Phase, error: str = "") -> StudentResult:
    return StudentResult(user=user, arrival=0.0, phases=list(phases), ttfr=ttfr, error=error)


def ok(name: str, start: float, end: float) -> Phase:
    return Phase(name, start, end, True)


def failed(name: str, kind: str) -> Phase:
    return Phase(name, 1.0, 2.0, False, kind)


def good(user: str, ttfr: float) -> StudentResult:
    return student(
        user,
        ttfr,
        ok("login", 0, 0.1),
        ok("spawn", 0.1, ttfr - 0.5),
        ok("page", ttfr - 0.5, ttfr - 0.45),
        ok("kernel", ttfr - 0.45, ttfr - 0.1),
        ok("execute", ttfr - 0.1, ttfr),
        ok("stop", ttfr, ttfr + 1),
    )


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1, 2, 3, 4], 50, 2.5),
        ([1, 2, 3, 4], 95, 3.85),
        ([1, 2, 3, 4], 0, 1),
        ([1, 2, 3, 4], 100, 4),
        ([4, 1, 3, 2], 50, 2.5),  # order does not matter
        ([7.0], 95, 7.0),
        (list(range(1, 101)), 95, 95.05),
    ],
)
def test_percentile_interpolates_like_numpy(values, q, expected):
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_nonsense():
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_describe():
    assert describe([]) == {"n": 0, "min": None, "p50": None, "p95": None, "max": None}
    stats = describe([3.0, 1.0, 2.0])
    assert stats["n"] == 3 and stats["min"] == 1.0 and stats["max"] == 3.0
    assert stats["p50"] == 2.0


def test_errors_are_grouped_by_phase_and_kind_most_frequent_first():
    students = [
        good("a", 3.0),
        student("b", None, ok("login", 0, 1), failed("spawn", "timeout"), ok("stop", 2, 3)),
        student("c", None, ok("login", 0, 1), failed("spawn", "timeout")),
        student("d", None, failed("login", "login-http-403")),
        student("e", None, error="time-limit: not started"),
    ]
    assert errors_by_kind(students) == {
        "spawn: timeout": 2,
        "login: login-http-403": 1,
        "time-limit: not started": 1,
    }
    assert list(errors_by_kind(students))[0] == "spawn: timeout"


def test_phase_stats_count_failures_and_time_only_successes():
    students = [
        good("a", 3.0),
        good("b", 5.0),
        student("c", None, ok("login", 0, 0.3), failed("spawn", "http-500")),
    ]
    stats = phase_stats(students)
    assert list(stats) == ["login", "spawn", "page", "kernel", "execute", "stop"]  # the flow's order
    assert stats["spawn"]["ok"] == 2 and stats["spawn"]["failed"] == 1
    assert stats["spawn"]["seconds"]["max"] == pytest.approx(4.4)
    assert stats["login"]["seconds"]["n"] == 3


def test_summarize_counts_only_complete_students():
    run = RunResult(
        hub_url="http://hub/",
        started_at="2025-01-01T00:00:00+00:00",
        settings={},
        students=[
            good("a", 2.0),
            good("b", 4.0),
            student("c", 9.0, ok("login", 0, 1), failed("stop", "stop-timeout")),
        ],
        duration=10.0,
    )
    summary = summarize(run)
    assert (summary["users"], summary["ok"], summary["failed"]) == (3, 2, 1)
    assert summary["ttfr"]["n"] == 2 and summary["ttfr"]["p50"] == 3.0
    assert summary["errors"] == {"stop: stop-timeout": 1}


def test_merge_and_json_round_trip():
    runs = [
        RunResult("http://hub/", "t0", {"users": 1}, [good("a", 2.0)], duration=3.0),
        RunResult("http://hub/", "t1", {"users": 1}, [good("a", 4.0)], duration=5.0),
    ]
    merged = merge(runs)
    assert [s.ttfr for s in merged.students] == [2.0, 4.0] and merged.duration == 8.0
    again = RunResult.from_dict(merged.to_dict())
    assert again == merged
    assert again.students[0].phases[1].duration == pytest.approx(1.4)


def test_messages_lose_what_differs_between_students():
    message = "Spawn failed: Server at http://127.0.0.1:41234/user/burst-007/ didn't respond in 30 seconds"
    kind = spawn_failed_kind(message, "burst-007")
    assert kind == spawn_failed_kind(message.replace("41234", "5").replace("007", "008"), "burst-008")
    assert kind.startswith("spawn-failed: Spawn failed: Server at <url> didn't")
    assert len(kind) <= len("spawn-failed: ") + 60
    assert "<id>" in normalize_message("kernel 0f8fad5b-d9cb-469f-a165-70867728950e died")


def test_error_kinds():
    assert error_kind(PhaseError("http-429")) == "http-429"
    assert error_kind(requests.ReadTimeout()) == "timeout"
    assert error_kind(TimeoutError()) == "timeout"
    assert error_kind(requests.ConnectionError("refused")) == "connection-error"
    assert error_kind(ValueError("bad value for ana"), "ana") == "ValueError: bad value for <user>"
    assert error_kind(KeyError()) == "KeyError"


def test_progress_line():
    counts = Counter({"spawn": 3, "kernel": 1, "ok": 2, "failed": 1})
    assert progress_line(12.2, 10, counts) == "  12 s: waiting 3, spawn 3, kernel 1 | ok 2, failed 1"
    assert progress_line(0, 0, Counter()) == "   0 s: idle | ok 0, failed 0"


def test_proc_parsers():
    # A command name with spaces and a parenthesis must not shift the fields.
    stat = "42 (node) x) S 7 42 42 0 -1 4194560 1 0 0 0 150 50 20 5 20 0 11 0 9876 1 1"
    fields = parse_stat(stat)
    assert (fields.ppid, fields.ticks, fields.child_ticks, fields.start) == (7, 200, 25, 9876)
    assert parse_pss_kib("Rss: 200 kB\nPss:  1234 kB\nPss_Anon: 3 kB\n") == 1234
    with pytest.raises(ValueError):
        parse_pss_kib("Rss: 1 kB\n")
    assert parse_environ(b"A=1\0JUPYTERHUB_USER=ana\0broken\0") == {
        "A": "1",
        "JUPYTERHUB_USER": "ana",
    }


def test_stock_config_is_valid_python_with_raised_timeouts_only_when_asked():
    spec = StockSpec(
        ports=Ports(8000, 8081, 8001),
        workdir=Path("/tmp/x"),
        singleuser=Path("/env/bin/jupyterhub-singleuser"),
        proxy="/bin/chp",
        password="pw'\"",
        admin_token="t0k",
        raised_timeouts=False,
    )
    compile(stock_config(spec), "jupyterhub_config.py", "exec")
    assert "start_timeout" not in stock_config(spec)
    raised = stock_config(StockSpec(**{**spec.__dict__, "raised_timeouts": True}))
    assert "c.Spawner.start_timeout = 600" in raised and "c.Spawner.http_timeout = 600" in raised


def test_the_bench_runs_coursehub_with_and_without_network_namespaces_as_valid_settings():
    from coursehub.settings import Settings

    assert {"coursehub", "coursehub-noisolate"} <= set(SYSTEMS) and set(LABELS) == set(SYSTEMS)
    ports = Ports(8000, 8081, 8001)
    on, off = (coursehub_settings(ports, Path("/tmp/x"), "b1-", isolate) for isolate in (True, False))
    assert Settings.model_validate(on).network.isolate and not Settings.model_validate(off).network.isolate
    # Its own range: a real hub on the default subnet must not stop the benchmark.
    assert on["network"]["subnet"] != Settings().network.subnet
    # Sixteen ranges of their own, so that two benchmarks on one machine do not share a gateway.
    nets = [ipaddress.IPv4Network(subnet) for subnet in BENCH_SUBNETS]
    assert len(nets) == 16 and all(net.num_addresses - 3 >= 4000 for net in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    default = ipaddress.IPv4Network(Settings().network.subnet)
    assert not any(net.overlaps(default) for net in nets)
    chosen = coursehub_settings(ports, Path("/tmp/x"), "b1-", True, BENCH_SUBNETS[5])
    assert Settings.model_validate(chosen).network.subnet == BENCH_SUBNETS[5]
    # Memory merging only in the system that says so; coursehub's defaults leave it off.
    assert set(COLORS) == set(SYSTEMS)
    merged = coursehub_settings(ports, Path("/tmp/x"), "b1-", True, BENCH_SUBNETS[5], merge_memory=True)
    assert Settings.model_validate(merged).sandbox.merge_memory
    assert not Settings.model_validate(on).sandbox.merge_memory


def test_readme_section_is_replaced_between_markers_only():
    readme = f"# x\n\nintro\n{START}\nold numbers\n{END}\nafter\n"
    updated = replace_section(readme, "new table\n")
    assert updated == f"# x\n\nintro\n{START}\nnew table\n{END}\nafter\n"
    assert replace_section(updated, "new table") == updated  # idempotent
    with pytest.raises(CoursehubError, match="bench:start"):
        replace_section("# no markers here\n", "table")


def test_markdown_report_of_a_small_result():
    summary = summarize(RunResult("h", "t", {}, [good("a", 2.0), good("b", 3.0)]))
    results = {
        "machine": {"cpu": "Test CPU", "cores": 2, "jupyterhub": "6.1.1"},
        "options": {"repeat": 1, "memory_users": 1, "memory_rate": 0},
        "started_at": "t",
        "duration": 12.0,
        "systems": {
            "stock": {
                "label": "stock JupyterHub, default timeouts",
                "error": "",
                "single": {"summary": summary, "runs": []},
                "bursts": [
                    {"size": 2, "skipped": "", "summary": summary, "run": {}},
                    {"size": 5, "skipped": "the previous size failed completely"},
                ],
            },
            "coursehub": {"label": "coursehub, defaults", "error": "CoursehubError: boom"},
        },
    }
    text = render_markdown(results)
    assert "Test CPU, 2 cores" in text and "jupyterhub 6.1.1" in text
    assert "| stock JupyterHub, default timeouts | 2/2 | 2.00 s | 2.50 s | 3.00 s | — |" in text
    assert "| stock JupyterHub, default timeouts | 5 | skipped |" in text
    assert "coursehub, defaults**: did not run: CoursehubError: boom" in text
    assert seconds(None) == "—" and seconds(164.4) == "164 s" and seconds(12.34) == "12.3 s"


def burst_results() -> dict:
    """A small results.json with bursts, steady state (with isolation steps) and live users."""
    summary = summarize(RunResult("h", "t", {}, [good("a", 2.0), good("b", 3.0)]))
    steps = {
        "account": {"steps": 2, "seconds": 0.0412, "cpu_s": 0.0031},
        "namespace": {"steps": 2, "seconds": 0.12, "cpu_s": 0.002},
    }
    memory = {
        "users": 2,
        "pss_per_user_mib": describe([60.0, 62.0]),
        "cpu_s_per_spawn": describe([1.5, 1.7]),
        "hub_pss_mib": 120.0,
        "proxy_pss_mib": 50.0,
        "hub_plus_proxy_mib": 170.0,
        "hub_cpu_s_per_spawn": 0.07,
        "isolation": steps,
    }
    live = {
        **memory,
        "live": 312,
        "cell_ok": 311,
        "cell_failed": 1,
        "target": 400,
        "stopped_by": "stopped admitting users after 315: MemAvailable 2000 MiB fell under the safety margin",
        "mem_available_mib": 2000.0,
        "margin_mib": 2400.0,
    }
    entry = {
        "label": "coursehub, defaults",
        "error": "",
        "memory": memory,
        "live": live,
        "bursts": [
            {"size": 400, "skipped": "", "summary": summary, "hub_cpu_s_per_spawn": 0.081, "run": {}},
        ],
    }
    stock = {
        "label": "stock JupyterHub, default timeouts",
        "error": "",
        "memory": {**memory, "isolation": {}},
    }
    options = {"repeat": 1, "memory_users": 2, "memory_rate": 0.2, "live_users": 400, "live_rate": 1.0}
    return {"options": options, "systems": {"stock": stock, "coursehub": entry}}


def test_markdown_report_shows_burst_phases_cpu_per_spawn_and_live_users():
    text = render_markdown(burst_results())
    # Bursts: hub CPU per spawn, and each phase's p50 / p95
    # (good(): login 0.1 s, page 0.05 s, kernel 0.35 s, cell 0.1 s).
    assert "| coursehub, defaults | 400 | 2/2 | 2.50 s | 2.95 s | 3.00 s | 0.08 | — |" in text
    header = "| login | spawn (until the server answered) | page (OAuth, JupyterLab's HTML) | kernel |"
    assert header in text
    phases = "| 0.10 s / 0.10 s | 1.90 s / 2.35 s | 0.05 s / 0.05 s | 0.35 s / 0.35 s |"
    assert f"| coursehub, defaults | 400 {phases}" in text
    # CPU per spawn: hub, user's processes, each isolation step (a step not measured: —).
    assert "| system | hub CPU-s | user's processes CPU-s (median) | account | cgroup | namespace |" in text
    assert "| coursehub, defaults | 0.07 | 1.60 | 41 ms (CPU 3 ms) | — | 120 ms (CPU 2 ms) |" in text
    assert "| stock JupyterHub, default timeouts | 0.07 | 1.60 | — | — | — |" in text
    # Live users: reached, still ran a cell, PSS, hub + proxy, and why admission stopped.
    assert "(at most 400, arriving at 1.0/s)" in text
    assert (
        "| coursehub, defaults | 312 | 311/312 | 61 MiB | 120 MiB | 50 MiB | 170 MiB | 2000 MiB (2400 MiB) | "
        "stopped admitting users after 315: MemAvailable 2000 MiB fell under the safety margin |"
    ) in text


def test_markdown_report_of_results_without_the_new_measurements():
    results = burst_results()
    for entry in results["systems"].values():
        entry.pop("live", None)
        entry["memory"].pop("isolation")
        for burst in entry.get("bursts", []):
            burst.pop("hub_cpu_s_per_spawn")
            burst["summary"] = {k: v for k, v in burst["summary"].items() if k != "phases"}
    text = render_markdown(results)
    assert "Live users" not in text and "phase by phase" not in text
    assert "| coursehub, defaults | 400 | 2/2 | 2.50 s | 2.95 s | 3.00 s | — | — |" in text
    assert "| coursehub, defaults | 0.07 | 1.60 | — | — | — |" in text


def test_live_users_reaching_their_target_say_so():
    results = burst_results()
    results["systems"]["coursehub"]["live"]["stopped_by"] = ""
    assert "| 170 MiB | 2000 MiB (2400 MiB) | the target (400) |" in render_markdown(results)
    for key in ("mem_available_mib", "margin_mib"):  # results written before these were reported
        del results["systems"]["coursehub"]["live"][key]
    assert "| 170 MiB | — | the target (400) |" in render_markdown(results)


ISOLATION_METRICS = """\
# HELP coursehub_isolation_step_seconds Wall time
# TYPE coursehub_isolation_step_seconds histogram
coursehub_isolation_step_seconds_bucket{le="0.005",step="account"} 0.0
coursehub_isolation_step_seconds_bucket{le="+Inf",step="account"} %(n)s
coursehub_isolation_step_seconds_count{step="account"} %(n)s
coursehub_isolation_step_seconds_sum{step="account"} %(wall)s
coursehub_isolation_step_seconds_bucket{le="+Inf",step="cgroup"} 3.0
coursehub_isolation_step_seconds_count{step="cgroup"} 3.0
coursehub_isolation_step_seconds_sum{step="cgroup"} 0.03
# HELP coursehub_isolation_step_cpu_seconds CPU
# TYPE coursehub_isolation_step_cpu_seconds counter
coursehub_isolation_step_cpu_seconds_total{step="account"} %(cpu)s
coursehub_isolation_step_cpu_seconds_total{step="cgroup"} 0.003
# HELP jupyterhub_running_servers servers
# TYPE jupyterhub_running_servers gauge
jupyterhub_running_servers 4.0
"""


def test_isolation_steps_per_spawn_come_from_two_metric_readings():
    before = isolation_totals(ISOLATION_METRICS % {"n": 2.0, "wall": 0.1, "cpu": 0.01})
    after = isolation_totals(ISOLATION_METRICS % {"n": 6.0, "wall": 0.5, "cpu": 0.03})
    assert after["account"] == {"count": 6.0, "seconds": 0.5, "cpu": 0.03}
    steps = per_spawn(before, after)
    assert list(steps) == ["account"]  # the cgroup step did not run in between
    assert steps["account"]["steps"] == 4
    assert steps["account"]["seconds"] == pytest.approx(0.1)
    assert steps["account"]["cpu_s"] == pytest.approx(0.005)
    assert per_spawn({}, after)["cgroup"]["seconds"] == pytest.approx(0.01)  # a fresh hub
    assert per_spawn(None, after) == {} and per_spawn(before, None) == {}  # stock JupyterHub


def test_the_live_scenario_reads_the_memory_budget():
    meminfo = "MemTotal:       24576000 kB\nMemFree:  100 kB\nMemAvailable:   2097152 kB\n"
    assert mem_available_mib(meminfo) == 2048.0 and mem_total_mib(meminfo) == 24000.0
    with pytest.raises(ValueError):
        mem_available_mib("MemTotal: 1 kB\n")
    assert safety_margin_mib(24 * 1024) == pytest.approx(2457.6)  # a tenth of 24 GiB
    assert safety_margin_mib(8 * 1024) == 2048.0  # at least 2 GiB


def old_rule(available_mib: float, margin_mib: float) -> str:
    """The admission before issue 17's fix: MemAvailable alone against the margin."""
    return ADMIT if available_mib >= margin_mib else STOP


@pytest.mark.parametrize(
    ("available", "margin", "live", "in_flight", "cost", "verdict"),
    [
        (10000, 2400, 100, 3, 60, ADMIT),  # plenty left after the 3 in flight and the new one
        (2400 + 60, 2400, 300, 0, 60, ADMIT),  # exactly fits: MemAvailable lands on the margin
        (2400 + 59, 2400, 300, 0, 60, STOP),  # one MiB short, nothing in flight: done for good
        # Last run: 375 admitted at ~2.4 GiB with ~25 in flight took the machine to ~100 MiB.
        (2410, 2400, 350, 25, 60, STOP),  # even without the 25 one more would not fit
        (4000, 2400, 300, 30, 60, WAIT),  # only the 30 in flight stand in the way: wait, look again
        (4000, 2400, 300, 25, 60, ADMIT),  # 4000 - 26 × 60 = 2440: the next one fits
    ],
)
def test_admission_counts_the_spawns_in_flight(available, margin, live, in_flight, cost, verdict):
    assert admission(available, margin, live, in_flight, cost).verdict == verdict


def test_the_old_rule_admitted_into_an_out_of_memory_machine_and_the_new_one_does_not():
    margin, available, in_flight, cost = 2406.0, 2410.0, 25, 60.0  # MemAvailable just above it
    assert old_rule(available, margin) == ADMIT
    decision = admission(available, margin, 350, in_flight, cost)
    assert decision.verdict == STOP
    # The report says why, with the numbers: 2410 - 26 × 60 = 850 MiB.
    assert decision.reason == (
        "stopped admitting users at 350 live and 25 starting: MemAvailable 2410 MiB − (25 starting + 1) "
        "× 60 MiB per user = 850 MiB, under the safety margin of 2406 MiB"
    )
    paused = admission(5000.0, margin, 300, 50, cost)
    assert paused.verdict == WAIT
    assert paused.reason.startswith("waiting for 50 spawns in flight with 300 users live: MemAvailable 5000")
    assert admission(9000.0, margin, 300, 50, cost).reason == ""


def test_a_users_cost_is_the_prior_until_enough_are_live_then_measured_never_below_the_floor():
    assert user_cost_mib(20000, 19000, 0) == PRIOR_USER_MIB
    assert user_cost_mib(20000, 19000, 4) == PRIOR_USER_MIB  # 250 MiB each from 4 is noise
    assert user_cost_mib(20000, 19300, 10) == pytest.approx(70.0)  # 700 MiB over 10
    assert user_cost_mib(20000, 19900, 10) == 60.0  # 10 MiB each: memory freed elsewhere; the floor
    assert user_cost_mib(20000, 20500, 10) == 60.0  # MemAvailable rose
    assert user_cost_mib(20000, 19000, 2, prior_mib=90.0) == 90.0


def test_a_burst_that_would_not_fit_says_so_with_the_numbers():
    available, margin = 22000.0, 2457.6
    assert burst_fit(200, available, margin, 87.0) == ""  # 17.0 GiB + 2.4 GiB < 21.5 GiB
    assert burst_fit(400, available, margin, 87.0) == (
        "not run: needs ~34.0 GiB (400 × 87 MiB) and a 2.4 GiB margin, MemAvailable 21.5 GiB"
    )
    assert burst_fit(5, 2500.0, margin, 87.0).startswith("not run: needs ~0.4 GiB")


def test_a_bursts_user_cost_comes_from_the_systems_own_measurements():
    memory = {"pss_per_user_mib": describe([80.0, 90.0])}
    assert burst_user_mib({}) == PRIOR_USER_MIB
    assert burst_user_mib({"memory": memory}) == pytest.approx(85.0)  # the median
    assert burst_user_mib({"memory": memory, "live": {"live": 300, "user_cost_mib": 68.0}}) == 68.0
    # Too few live users: their cost is still the prior, which is not a measurement.
    few = {"live": 2, "user_cost_mib": 150.0}
    assert burst_user_mib({"memory": memory, "live": few}) == pytest.approx(85.0)
    assert burst_user_mib({"memory": {"pss_per_user_mib": describe([])}, "live": None}) == PRIOR_USER_MIB


def test_students_in_flight_are_those_not_yet_at_their_first_result():
    ctx = RunContext(60.0)
    for user, phase in [("a", "login"), ("b", "spawn"), ("c", "execute"), ("d", "session"), ("e", "failed")]:
        ctx.enter(user, phase)
    ctx.enter("f", "stop")  # a failed spawn cleaning up: giving memory back
    assert ctx.in_flight(["a", "b", "c", "d", "e", "f", "g"]) == 4  # g: admitted, not yet in a phase


def test_the_gate_is_asked_before_each_student_and_can_hold_and_stop_arrivals():
    verdicts = iter([ADMIT, WAIT, WAIT, ADMIT, STOP])
    asked: list[int] = []

    def gate() -> str:
        asked.append(len(test.admitted()))
        return next(verdicts)

    # Nothing listens here: the two admitted fail at login; the others are never admitted.
    test = LoadTest(
        LoadConfig("http://127.0.0.1:9/", arrival_rate=50.0, http_timeout=5.0),
        [Credential(f"s{i}", "pw") for i in range(5)],
        gate=gate,
    )
    run = test.run()
    assert asked == [0, 1, 1, 1, 2]  # each answer saw the students admitted before it
    assert test.arrivals_stopped() and len(test.admitted()) == 2
    assert sorted(s.error for s in run.students).count(NOT_ADMITTED) == 3


def test_open_files_limit_is_raised_past_a_low_hard_limit_when_it_can():
    infinite = resource.RLIM_INFINITY
    assert open_files_limits(1024, 524288) == [(16384, 524288)]
    assert open_files_limits(1024, 4096) == [(16384, 16384), (4096, 4096)]  # root first, else the hard one
    assert open_files_limits(1024, infinite) == [(16384, infinite)]
    assert open_files_limits(20000, 20000) == [] and open_files_limits(infinite, infinite) == []


def test_students_not_admitted_are_left_out_of_the_summary_and_check_is_a_phase():
    live = good("a", 2.0)
    live.phases.insert(5, ok("check", 30.0, 30.2))
    run = RunResult("h", "t", {}, [live, student("b", None, error=NOT_ADMITTED)])
    assert summarize(run)["failed"] == 1
    kept = summarize(admitted(run))
    assert (kept["users"], kept["ok"], kept["failed"]) == (1, 1, 0)
    assert list(kept["phases"]) == ["login", "spawn", "page", "kernel", "execute", "check", "stop"]


def test_a_run_that_stopped_arrivals_admits_nobody_and_contacts_no_hub():
    # Nothing listens at this address: any student admitted would fail at login, not be NOT_ADMITTED.
    test = LoadTest(
        LoadConfig("http://127.0.0.1:9/", arrival_rate=50.0), [Credential(f"s{i}", "pw") for i in range(3)]
    )
    test.stop_arrivals()
    run = test.run()
    assert test.arrivals_stopped() and test.admitted() == []
    assert [s.error for s in run.students] == [NOT_ADMITTED] * 3
    assert all(not s.phases for s in run.students)


def test_the_benchmark_creates_an_account_for_every_user_its_scenarios_log_in():
    from coursehub.auth.accounts import USERNAME_RE
    from coursehub.tools.bench.scenarios import (
        SINGLE,
        ScenarioOptions,
        all_usernames,
        burst_names,
        live_names,
        memory_names,
    )

    opts = ScenarioOptions(sizes=(5, 400), memory_users=3, live_users=12)
    names = all_usernames(opts)
    wanted = {SINGLE, *memory_names(3), *live_names(12), *burst_names(5), *burst_names(400)}
    assert set(names) == wanted and len(names) == len(wanted) == 1 + 3 + 12 + 5 + 400
    # coursehub's own authenticator must accept every one of them as a username.
    assert all(USERNAME_RE.match(name) for name in names)


def test_live_users_stay_through_their_arrivals_the_memory_wait_and_the_time_limit():
    from coursehub.tools.bench.scenarios import ScenarioOptions, live_seconds

    opts = ScenarioOptions(live_users=400, live_rate=1.0, time_limit=600)
    assert live_seconds(opts, 400, 0.0) == 1000
    # With merge_memory the hub waits up to 600 s for ksmd before measuring: the sessions must outlast it.
    assert live_seconds(opts, 400, 600.0) == 1600
