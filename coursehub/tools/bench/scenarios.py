"""The benchmark's scenarios, each run against one started hub with the load-test engine."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from coursehub.errors import CoursehubError
from coursehub.tools.bench import burstcpu, hubmetrics, procstats
from coursehub.tools.bench.admission import admission, burst_fit, user_cost_mib
from coursehub.tools.bench.machine import (
    mem_available_mib,
    mem_total_mib,
    read_meminfo,
    safety_margin_mib,
)
from coursehub.tools.bench.systems import BenchHub
from coursehub.tools.loadtest import (
    ADMIT,
    STOP,
    WAIT,
    Credential,
    LoadConfig,
    LoadTest,
    RunResult,
    describe,
    run_load_test,
)
from coursehub.tools.loadtest.summary import admitted, merge, summarize

SETTLE = 5.0  # seconds of quiet before memory is read, so start-up garbage is collected
MIB = 1024.0  # KiB per MiB
Echo = Callable[[str], None]


@dataclass(frozen=True)
class ScenarioOptions:
    """Sizes and limits shared by every system's run."""

    repeat: int = 10
    sizes: tuple[int, ...] = (20, 50, 100, 200, 400)
    memory_users: int = 10
    memory_rate: float = 0.2  # arrivals per second, so that even stock hubs get there
    live_users: int = 400  # at most this many live users (0: skip the scenario)
    live_rate: float = 1.0  # their arrivals per second
    live_margin_mib: float = 0.0  # MemAvailable kept free by live users and bursts (0: a tenth, ≥ 2 GiB)
    time_limit: float = 900.0  # per load run
    readers: int = 50  # textbook readers activating at once (coursehub only)
    reader_repeat: int = 5  # single-reader activations, one after another
    http_timeout: float = 60.0


SINGLE = "single"


def burst_names(size: int) -> list[str]:
    """The users of a burst of `size` (pure)."""
    return [f"burst{size}-{i:03d}" for i in range(size)]


def memory_names(count: int) -> list[str]:
    """The users of the memory scenario (pure)."""
    return [f"idle-{i:02d}" for i in range(count)]


def live_names(count: int) -> list[str]:
    """The users of the live-users scenario (pure)."""
    return [f"live-{i:03d}" for i in range(count)]


def all_usernames(opts: ScenarioOptions) -> list[str]:
    """Every user some scenario logs in, for the hubs whose accounts must exist first (pure)."""
    names = [SINGLE, *memory_names(opts.memory_users), *live_names(opts.live_users)]
    return names + [name for size in opts.sizes for name in burst_names(size)]


def margin_mib(opts: ScenarioOptions) -> float:
    """The MemAvailable that live users and bursts must leave free, in MiB."""
    return opts.live_margin_mib or safety_margin_mib(mem_total_mib(read_meminfo()))


def _config(hub: BenchHub, opts: ScenarioOptions, **extra: Any) -> LoadConfig:
    base = {"hub_url": hub.url, "time_limit": opts.time_limit, "http_timeout": opts.http_timeout}
    return LoadConfig(**{**base, **extra})


def _isolation(hub: BenchHub) -> hubmetrics.Totals | None:
    """The hub's isolation-step totals now (None where it has none)."""
    text = hub.metrics_text()
    return None if text is None else hubmetrics.isolation_totals(text)


def single_user(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> dict[str, Any]:
    """One user, launched `repeat` times one after the other: TTFR min/median/max."""
    runs: list[RunResult] = []
    for i in range(opts.repeat):
        run = run_load_test(_config(hub, opts), [Credential(SINGLE, hub.password)])
        runs.append(run)
        emit(f"[{hub.system}] single user {i + 1}/{opts.repeat}: {outcome(run)}")
    return {"summary": summarize(merge(runs)), "runs": [run.to_dict() for run in runs]}


def bursts(hub: BenchHub, opts: ScenarioOptions, emit: Echo, user_mib: float) -> list[dict[str, Any]]:
    """Each size of class arriving in the same instant; a size is skipped after a total failure,
    and not run when its users (`user_mib` each) would not fit in MemAvailable above the margin."""
    results: list[dict[str, Any]] = []
    previous_ok: int | None = None
    margin = margin_mib(opts)
    for size in opts.sizes:
        if previous_ok == 0:
            results.append({"size": size, "skipped": "the previous size failed completely"})
            emit(f"[{hub.system}] burst {size}: skipped (the previous size failed completely)")
            continue
        # As if every user held its server and kernel at once: in a burst most do (the first
        # results come after the last spawns), and a burst cannot be paused once it has started.
        too_big = burst_fit(size, mem_available_mib(read_meminfo()), margin, user_mib)
        if too_big:
            results.append({"size": size, "skipped": too_big})
            emit(f"[{hub.system}] burst {size}: {too_big}")
            continue
        users = [Credential(name, hub.password) for name in burst_names(size)]
        progress = partial(_prefixed, emit, f"[{hub.system}] burst {size}: ")
        isolation_before = _isolation(hub)
        samples = [_cpu_sample(hub)]
        sampling = threading.Event()
        sampler = threading.Thread(target=_sample_until, args=(hub, samples, sampling), name="cpu-samples")
        sampler.start()
        # A class stays once it has its first result: each student holds its server and kernel until
        # the whole class has got through (or failed), and only then stops it. Stops are not part of a
        # launch, and in a real class they do not compete with the launches of those still waiting.
        config = _config(hub, opts, session_seconds=opts.time_limit)
        test = LoadTest(config, users, progress=progress)
        box: list[RunResult] = []
        runner = threading.Thread(target=_run_into, args=(test, box), name=f"burst-{size}")
        runner.start()
        try:
            _wait_until_settled(test, size, runner, opts.time_limit)
        finally:
            sampling.set()
            sampler.join()
            # Read before the stops: stopping servers costs the hub CPU too, but not per spawn.
            samples.append(_cpu_sample(hub))
            users_cpu = _users_cpu(hub, burst_names(size))
            test.end_sessions()
            runner.join()
        if not box:
            raise CoursehubError(f"the burst of {size} on {hub.system} ended without results")
        run = box[0]
        # When each student's first result came, counted from the burst's start (its login included).
        firsts = [p.end for s in run.students for p in s.phases if p.name == "execute" and p.ok]
        p95 = burstcpu.results_in(firsts, size)
        cpu = burstcpu.burst_cpu(samples, size, os.cpu_count() or 1, p95, users_cpu)
        isolation = hubmetrics.per_spawn(isolation_before, _isolation(hub))
        hub.stop_all_servers()  # what a failure left behind must not weigh on the next size
        summary = summarize(run)
        previous_ok = summary["ok"]
        emit(f"[{hub.system}] burst {size}: {outcome(run)}")
        results.append(
            {
                "size": size,
                "skipped": "",
                "summary": summary,
                "hub_cpu_s_per_spawn": cpu["hub_s"] / size,
                "cpu": cpu,
                "isolation": isolation,
                "run": run.to_dict(),
            }
        )
    return results


def _run_into(test: LoadTest, box: list[RunResult]) -> None:
    """Run the load test and keep its result (the body of a runner thread)."""
    box.append(test.run())


def _users_cpu(hub: BenchHub, users: list[str]) -> float:
    """CPU-seconds of the burst users' processes (servers, kernels) so far: all started in the burst."""
    return sum(procstats.cpu_seconds(pids) for pids in hub.pids_by_user(users).values())


def _cpu_sample(hub: BenchHub) -> burstcpu.CpuSample:
    """The machine's, the hub's, the proxy's and the benchmark's own CPU-seconds now."""
    proxy = hub.proxy_pid()
    return burstcpu.CpuSample(
        wall=time.monotonic(),
        machine=procstats.machine_busy_seconds(),
        hub=procstats.cpu_seconds([hub.hub_pid()]),
        proxy=procstats.cpu_seconds([proxy]) if proxy else 0.0,
        client=procstats.own_cpu_seconds(),
    )


def _sample_until(hub: BenchHub, samples: list[burstcpu.CpuSample], done: threading.Event) -> None:
    """Add a CPU sample every half second until `done` is set."""
    while not done.wait(0.5):
        samples.append(_cpu_sample(hub))


def _prefixed(emit: Echo, prefix: str, line: str) -> None:
    emit(prefix + line)


def steady_state(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> dict[str, Any]:
    """Users with an idle kernel each: PSS and CPU-seconds per user, hub and proxy PSS."""
    users = [Credential(name, hub.password) for name in memory_names(opts.memory_users)]
    config = _config(hub, opts, arrival_rate=opts.memory_rate, session_seconds=opts.time_limit)
    test = LoadTest(config, users, progress=partial(_prefixed, emit, f"[{hub.system}] memory: "))
    hub_cpu_before, isolation_before = procstats.cpu_seconds([hub.hub_pid()]), _isolation(hub)
    box: list[RunResult] = []
    runner = threading.Thread(target=lambda: box.append(test.run()), name="memory-scenario")
    runner.start()
    try:
        _wait_until_settled(test, len(users), runner, opts.time_limit)
        time.sleep(SETTLE)
        hub.settle_memory(partial(_prefixed, emit, f"[{hub.system}] memory: "))
        sample = measure(hub, test.users_in("session"), hub_cpu_before)
        sample["isolation"] = hubmetrics.per_spawn(isolation_before, _isolation(hub))
    finally:
        test.end_sessions()
        runner.join()
    if not box:
        raise CoursehubError(f"the memory scenario on {hub.system} ended without results")
    emit(f"[{hub.system}] memory: {outcome(box[0])}")
    return {**sample, "summary": summarize(box[0]), "run": box[0].to_dict()}


class MemoryGate:
    """The live-users scenario's door: asks admission() before each user, with MemAvailable now
    and the users live and in flight, and says when it pauses, admits again or stops."""

    def __init__(self, margin_mib: float, say: Echo) -> None:
        self.margin_mib = margin_mib
        self.say = say
        self.baseline_mib = mem_available_mib(read_meminfo())  # before any live user
        self.test: LoadTest | None = None
        self.verdict = ADMIT
        self.cost_mib = 0.0
        self.pauses = 0
        self.stopped_by = ""

    def __call__(self) -> str:
        assert self.test is not None
        available = mem_available_mib(read_meminfo())
        live = len(self.test.users_in("session"))
        self.cost_mib = user_cost_mib(self.baseline_mib, available, live)
        decision = admission(available, self.margin_mib, live, self.test.in_flight(), self.cost_mib)
        if decision.verdict != self.verdict:
            if decision.verdict == WAIT:
                self.pauses += 1
                self.say(f"pausing admission: {decision.reason}")
            elif decision.verdict == STOP:
                self.stopped_by = decision.reason
                self.say(decision.reason)
            else:
                self.say(f"admitting again: {live} live, MemAvailable {available:.0f} MiB")
        self.verdict = decision.verdict
        return decision.verdict


def live_seconds(opts: ScenarioOptions, users: int, settle: float) -> float:
    """How long live users stay (pure): their arrivals (users/rate), the wait for the hub's memory to
    settle (ksmd's scans, with merge_memory), then the time limit for what comes after.

    Without the settle time, sessions ended while the hub with merge_memory waited for ksmd, and the
    measurement found no live user."""
    return opts.time_limit + users / opts.live_rate + settle


def live_users(hub: BenchHub, opts: ScenarioOptions, emit: Echo) -> dict[str, Any]:
    """Users arriving at a steady rate, each keeping an idle kernel, until `live_users` or until
    the next one would not fit above the memory margin (counting the spawns still in flight);
    then every live user runs `1+1` in its kernel again."""
    say = partial(_prefixed, emit, f"[{hub.system}] live users: ")
    users = [Credential(name, hub.password) for name in live_names(opts.live_users)]
    limit = live_seconds(opts, len(users), hub.settle_seconds())
    config = _config(hub, opts, arrival_rate=opts.live_rate, session_seconds=limit, time_limit=limit)
    margin = margin_mib(opts)
    gate = MemoryGate(margin, say)
    test = gate.test = LoadTest(config, users, progress=say, gate=gate)
    hub_cpu_before, isolation_before = procstats.cpu_seconds([hub.hub_pid()]), _isolation(hub)
    box: list[RunResult] = []
    runner = threading.Thread(target=lambda: box.append(test.run()), name="live-scenario")
    runner.start()
    deadline = time.monotonic() + limit
    try:
        _wait_until_live(test, len(users), runner, deadline)
        time.sleep(SETTLE)
        hub.settle_memory(say)
        live = test.users_in("session")
        say(f"{len(live)} live users; measuring their memory…")
        sample = measure(hub, live, hub_cpu_before)
        sample["isolation"] = hubmetrics.per_spawn(isolation_before, _isolation(hub))
        sample["mem_available_mib"] = mem_available_mib(read_meminfo())
        say(f"every live user runs {config.code} in its kernel…")
        test.check_sessions()
        _wait_until_checked(test, live, runner, deadline)
    finally:
        test.stop_arrivals()
        test.end_sessions()
        runner.join()
    if not box:
        raise CoursehubError(f"the live-users scenario on {hub.system} ended without results")
    run = box[0]
    checks = summarize(run)["phases"].get("check", {"ok": 0, "failed": 0})
    say(f"{checks['ok']}/{len(live)} live users could still run a cell")
    return {
        **sample,
        "live": len(live),
        "cell_ok": checks["ok"],
        "cell_failed": checks["failed"],
        "target": len(users),
        "stopped_by": gate.stopped_by,
        "margin_mib": margin,
        "user_cost_mib": gate.cost_mib,
        "admission_pauses": gate.pauses,
        "summary": summarize(admitted(run)),
        "run": run.to_dict(),
    }


def _wait_until_live(test: LoadTest, total: int, runner: threading.Thread, deadline: float) -> None:
    """Until every admitted student idles in its session or has failed (or the run ended)."""
    while runner.is_alive() and time.monotonic() < deadline:
        arrived = len(test.admitted())
        doors_shut = test.arrivals_stopped() or arrived >= total
        if doors_shut and len(test.users_in("session")) + test.finished() >= arrived:
            return
        time.sleep(0.5)


def _wait_until_checked(test: LoadTest, live: list[str], runner: threading.Thread, deadline: float) -> None:
    """Until every live user has run its check (or left its session, or the run ended)."""
    while runner.is_alive() and time.monotonic() < deadline:
        still = set(test.users_in("session")) | set(test.users_in("check"))
        waiting = still.intersection(live) - set(test.checked(live))
        if not waiting:
            return
        time.sleep(0.5)


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
    for pids in hub.pids_by_user(users).values():
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
