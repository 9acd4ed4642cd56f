"""The benchmark's scenarios, each run against one started hub with the load-test engine."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from coursehub.errors import CoursehubError
from coursehub.tools.bench import procstats
from coursehub.tools.bench.systems import BenchHub
from coursehub.tools.loadtest import (
    Credential,
    LoadConfig,
    LoadTest,
    RunResult,
    describe,
    run_load_test,
)
from coursehub.tools.loadtest.summary import merge, summarize

SETTLE = 5.0  # seconds of quiet before memory is read, so start-up garbage is collected
MIB = 1024.0  # KiB per MiB
Echo = Callable[[str], None]


@dataclass(frozen=True)
class ScenarioOptions:
    """Sizes and limits shared by every system's run."""

    repeat: int = 10
    sizes: tuple[int, ...] = (20, 50, 100, 200)
    memory_users: int = 10
    memory_rate: float = 0.2  # arrivals per second, so that even stock hubs get there
    time_limit: float = 900.0  # per load run
    readers: int = 50  # textbook readers activating at once (coursehub only)
    reader_repeat: int = 5  # single-reader activations, one after another
    http_timeout: float = 60.0


def _config(hub: BenchHub, opts: ScenarioOptions, **extra: Any) -> LoadConfig:
    return LoadConfig(hub_url=hub.url, time_limit=opts.time_limit, http_timeout=opts.http_timeout, **extra)


def single_user(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> dict[str, Any]:
    """One user, launched `repeat` times one after the other: TTFR min/median/max."""
    runs: list[RunResult] = []
    for i in range(opts.repeat):
        run = run_load_test(_config(hub, opts), [Credential("single", hub.password)])
        runs.append(run)
        emit(f"[{hub.system}] single user {i + 1}/{opts.repeat}: {outcome(run)}")
    return {"summary": summarize(merge(runs)), "runs": [run.to_dict() for run in runs]}


def bursts(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> list[dict[str, Any]]:
    """Each size of class arriving in the same instant; a size is skipped after a total failure."""
    results: list[dict[str, Any]] = []
    previous_ok: int | None = None
    for size in opts.sizes:
        if previous_ok == 0:
            results.append({"size": size, "skipped": "the previous size failed completely"})
            emit(f"[{hub.system}] burst {size}: skipped (the previous size failed completely)")
            continue
        users = [Credential(f"burst{size}-{i:03d}", hub.password) for i in range(size)]
        progress = partial(_prefixed, emit, f"[{hub.system}] burst {size}: ")
        run = run_load_test(_config(hub, opts), users, progress=progress)
        hub.stop_all_servers()  # what a failure left behind must not weigh on the next size
        summary = summarize(run)
        previous_ok = summary["ok"]
        emit(f"[{hub.system}] burst {size}: {outcome(run)}")
        results.append({"size": size, "skipped": "", "summary": summary, "run": run.to_dict()})
    return results


def _prefixed(emit: Echo, prefix: str, line: str) -> None:
    emit(prefix + line)


def steady_state(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> dict[str, Any]:
    """Users with an idle kernel each: PSS and CPU-seconds per user, hub and proxy PSS."""
    users = [Credential(f"idle-{i:02d}", hub.password) for i in range(opts.memory_users)]
    config = _config(hub, opts, arrival_rate=opts.memory_rate, session_seconds=opts.time_limit)
    test = LoadTest(config, users, progress=partial(_prefixed, emit, f"[{hub.system}] memory: "))
    hub_cpu_before = procstats.cpu_seconds([hub.hub_pid()])
    box: list[RunResult] = []
    runner = threading.Thread(target=lambda: box.append(test.run()), name="memory-scenario")
    runner.start()
    try:
        _wait_until_settled(test, len(users), runner, opts.time_limit)
        time.sleep(SETTLE)
        sample = measure(hub, test.users_in("session"), hub_cpu_before)
    finally:
        test.end_sessions()
        runner.join()
    if not box:
        raise CoursehubError(f"the memory scenario on {hub.system} ended without results")
    emit(f"[{hub.system}] memory: {outcome(box[0])}")
    return {**sample, "summary": summarize(box[0]), "run": box[0].to_dict()}


def _wait_until_settled(test: LoadTest, total: int, runner: threading.Thread, limit: float) -> None:
    """Until every student is idling in its session or has failed (or the run ended)."""
    deadline = time.monotonic() + limit
    while runner.is_alive() and time.monotonic() < deadline:
        if len(test.users_in("session")) + test.finished() >= total:
            return
        time.sleep(0.5)


def measure(hub: BenchHub, users: list[str], hub_cpu_before: float) -> dict[str, Any]:
    """PSS and CPU of each user's processes, and of the hub and the proxy, now."""
    pss, cpu, procs = [], [], []
    for user in users:
        pids = hub.user_pids(user)
        pss.append(sum(procstats.pss_kib(pid) for pid in pids) / MIB)
        cpu.append(procstats.cpu_seconds(pids))
        procs.append(len(pids))
    hub_pid, proxy_pid = hub.hub_pid(), hub.proxy_pid()
    hub_pss = procstats.pss_kib(hub_pid) / MIB
    proxy_pss = procstats.pss_kib(proxy_pid) / MIB if proxy_pid else 0.0
    hub_cpu = procstats.cpu_seconds([hub_pid]) - hub_cpu_before
    return {
        "users": len(users),
        "pss_per_user_mib": describe(pss),
        "cpu_s_per_spawn": describe(cpu),
        "processes_per_user": describe(procs),
        "hub_pss_mib": hub_pss,
        "proxy_pss_mib": proxy_pss,
        "hub_plus_proxy_mib": hub_pss + proxy_pss,
        "hub_cpu_s_per_spawn": hub_cpu / len(users) if users else None,
    }


def outcome(run: RunResult) -> str:
    """'18/20 ok, TTFR p50 3.1 s p95 5.0 s; errors: spawn: timeout ×2' (pure)."""
    summary = summarize(run)
    text = f"{summary['ok']}/{summary['users']} ok"
    ttfr = summary["ttfr"]
    if ttfr["n"]:
        text += f", TTFR p50 {ttfr['p50']:.2f} s p95 {ttfr['p95']:.2f} s max {ttfr['max']:.2f} s"
    if summary["errors"]:
        text += "; errors: " + ", ".join(f"{k} ×{n}" for k, n in summary["errors"].items())
    return text
