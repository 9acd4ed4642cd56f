"""The operations pieces without a hub: monitor, history, status report, charts, loadtest helpers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyterhub.spawner import SpawnException
from prometheus_client import REGISTRY
from tornado import web

from coursehub import metrics
from coursehub.courses.catalog import CourseRecord
from coursehub.errors import ConfigError
from coursehub.hub import charts, kernelwatch
from coursehub.hub.history import FAILURE, OOM, SPAWN, Event, History, Sample
from coursehub.hub.kernelwatch import KernelWatch
from coursehub.hub.monitor import Monitor, reason_of
from coursehub.hub.servers import ServerInfo, count_by_course, course_of
from coursehub.hub.status import HubTotals, build_report, render_charts
from coursehub.tools.loadtest import Phase, RunResult, StudentResult, summarize
from coursehub.tools.loadtest.report import summary_lines
from coursehub.tools.loadtest.sources import choose_students, dummy_users, from_csv, guests
from coursehub.tools.loadtest.students import run_in_own_loop
from coursehub.tools.loadtest.timeline import occupancy, write_timeline

GIB = 1024**3


class FakeCgroup:
    def __init__(self, memory: int = 0, oom: int = 0, kernel: bool = False) -> None:
        self.memory, self.oom, self.kernel = memory, oom, kernel

    def memory_bytes(self) -> int:
        return self.memory

    def oom_kills(self) -> int:
        return self.oom

    def pids(self) -> set[int]:
        return set()


class FakeSpawner:
    """Just what the monitor reads of a SandboxSpawner."""

    course = ""  # a class attribute, as SandboxSpawner's property: this spawner knows courses

    def __init__(self, user, name, course, ready=True, pending=None, cgroup=None, limit=GIB):
        self.user, self.name, self.course = user, name, course
        self.ready, self.pending, self.cgroup, self.mem_limit = ready, pending, cgroup, limit
        self._spawn_future = None
        self.server, self.api_token = SimpleNamespace(url=f"http://127.0.0.1:1/user/x/{name}/"), "t0k"

    @property
    def active(self) -> bool:
        return self.ready or bool(self.pending)

    def limits(self) -> dict:
        return {"memory": self.mem_limit}


def make_user(name: str, **servers: FakeSpawner) -> SimpleNamespace:
    user = SimpleNamespace(name=name, spawners={})
    for server, spawner in servers.items():
        spawner.user = user
        user.spawners[server.replace("default", "")] = spawner
    return user


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_spawns_are_timed_and_failures_counted_by_reason():
    monitor = Monitor()
    user = make_user("ana")

    async def spawn(outcome) -> None:
        spawner = FakeSpawner(user, "unit-bio", "unit-bio", cgroup=FakeCgroup())
        spawner._spawn_future = asyncio.get_running_loop().create_future()
        monitor.spawn_started(spawner)
        await asyncio.sleep(0.01)
        if outcome is None:
            spawner._spawn_future.set_result(None)
        else:
            spawner._spawn_future.set_exception(outcome)
        await asyncio.sleep(0)

    before = sample("coursehub_spawn_duration_seconds_count", course="unit-bio") or 0
    asyncio.run(spawn(None))
    asyncio.run(spawn(SpawnException("You are not enrolled", reason="not-enrolled")))
    assert sample("coursehub_spawn_duration_seconds_count", course="unit-bio") == before + 1
    assert sample("coursehub_spawn_duration_seconds_bucket", course="unit-bio", le="2.0") == before + 1
    assert sample("coursehub_spawn_failures_total", course="unit-bio", reason="not-enrolled") >= 1
    kinds = [(e.kind, e.reason) for e in monitor.history.events]
    assert kinds == [(SPAWN, ""), (FAILURE, "not-enrolled")]
    assert ("ana", "unit-bio") in monitor.kernel_watch  # the successful one waits for its kernel


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (SpawnException("x", reason="not-enrolled"), "not-enrolled"),
        (TimeoutError(), "timeout"),
        (web.HTTPError(500, "boom", reason="Internal Server Error"), "http-500"),
        (ValueError("x"), "valueerror"),
        (None, "cancelled"),
    ],
)
def test_failure_reasons_are_short_labels(exc, reason):
    if type(exc) is web.HTTPError:
        exc.reason = "error"  # what JupyterHub sets on HTTPErrors raised during a spawn
    assert reason_of(exc) == reason


def test_a_sample_publishes_gauges_oom_kills_and_first_kernels(monkeypatch):
    group = FakeCgroup(memory=300 * 1024**2)
    busy = FakeSpawner(None, "unit-chem", "unit-chem", cgroup=group, limit=GIB)
    starting = FakeSpawner(None, "unit-chem", "unit-chem", ready=False, pending="spawn")
    guest = FakeSpawner(None, "unit-open", "unit-open", cgroup=FakeCgroup(memory=10))
    users = [
        make_user("bo", unit_chem=busy),
        make_user("cy", unit_chem=starting),
        make_user("tmp-1", unit_open=guest),
    ]
    for user in users:
        user.spawners = {k.replace("_", "-"): v for k, v in user.spawners.items()}
    app = SimpleNamespace(users={u.name: u for u in users}, concurrent_spawn_limit=64)
    monitor = Monitor()
    monitor.app = app
    monkeypatch.setattr(monitor, "_temporary_names", lambda: {"tmp-1"})
    monkeypatch.setattr(monitor, "_count_users", lambda: 3)
    monitor.fresh.add(("bo", "unit-chem"))  # spawned while watched: its cgroup counts from 0

    asyncio.run(monitor.sample())
    assert sample("coursehub_running_servers", course="unit-chem") == 1
    assert sample("coursehub_pending_spawns", course="unit-chem") == 1
    assert sample("coursehub_course_users", course="unit-chem") == 2
    assert sample("coursehub_temporary_users") == 1 and sample("coursehub_temporary_servers") == 1
    assert sample("coursehub_concurrent_spawn_limit") == 64
    labels = {"user": "bo", "server": "unit-chem", "course": "unit-chem"}
    assert sample("coursehub_server_memory_bytes", **labels) == 300 * 1024**2
    assert sample("coursehub_server_memory_limit_bytes", **labels) == GIB

    group.oom = 2
    asyncio.run(monitor.sample())
    (oom,) = monitor.history.events_since(0, OOM)
    assert (oom.user, oom.course, oom.count) == ("bo", "unit-chem", 2)

    watch = KernelWatch("unit-chem", time.monotonic(), "http://127.0.0.1:1/user/bo/unit-chem/", "t0k")
    monitor.kernel_watch[("bo", "unit-chem")] = watch

    async def fake_has_kernel(w: KernelWatch) -> bool:
        return group.kernel

    monkeypatch.setattr(kernelwatch, "has_kernel", fake_has_kernel)
    asyncio.run(monitor.watch_kernels())
    assert monitor.kernel_watch and watch.next_check > time.monotonic()  # no kernel yet: asked later
    watch.next_check = 0
    group.kernel = True
    before = sample("coursehub_spawn_to_first_kernel_seconds_count", course="unit-chem") or 0
    asyncio.run(monitor.watch_kernels())
    assert not monitor.kernel_watch
    assert sample("coursehub_spawn_to_first_kernel_seconds_count", course="unit-chem") == before + 1

    # A stopped server disappears from the gauges.
    app.users = {}
    asyncio.run(monitor.sample())
    assert sample("coursehub_running_servers", course="unit-chem") is None
    assert sample("coursehub_server_memory_bytes", **labels) is None
    assert len(monitor.history.samples) == 3


def test_builds_come_from_the_catalog(tmp_path):
    from coursehub.courses.catalog import save_catalog

    save_catalog(
        tmp_path,
        {
            "unit-ok": CourseRecord(
                "unit-ok", content="c", environment="e", built_at=1.7e9, build_seconds=42
            ),
            "unit-bad": CourseRecord("unit-bad", last_error="uv failed"),
        },
    )
    monitor = Monitor()
    monitor.courses_root = tmp_path
    monitor.builds = monitor._read_catalog()
    monitor.publish()
    assert sample("coursehub_course_build_seconds", course="unit-ok") == 42
    assert sample("coursehub_course_built_timestamp_seconds", course="unit-ok") == 1.7e9
    assert sample("coursehub_course_build_failed", course="unit-ok") == 0
    assert sample("coursehub_course_build_failed", course="unit-bad") == 1


def test_course_labels_never_come_from_made_up_server_names():
    assert course_of(FakeSpawner(None, "whatever", "")) == "-"
    assert course_of(FakeSpawner(None, "whatever", "bio")) == "bio"
    assert course_of(SimpleNamespace(name="chem")) == "chem"  # another spawner: the server name
    assert course_of(SimpleNamespace(name="")) == "-"


def test_count_by_course():
    servers = [
        ServerInfo("a", "", "bio", True, ""),
        ServerInfo("a", "x", "bio", False, "spawn"),
        ServerInfo("b", "", "bio", True, ""),
        ServerInfo("c", "", "chem", False, "spawn"),
    ]
    running, users, pending = count_by_course(servers)
    assert dict(running) == {"bio": 2, "chem": 0}
    assert dict(users) == {"bio": 2, "chem": 1}
    assert dict(pending) == {"bio": 1, "chem": 1}


def test_history_forgets_old_entries():
    history = History(keep=100)
    for t in (0, 50, 120, 150):
        history.add_event(Event(t, SPAWN, "a", "", "bio", 1.0))
        history.add_sample(Sample(t))
    assert [e.time for e in history.events] == [50, 120, 150]
    assert [s.time for s in history.samples_since(100)] == [120, 150]
    assert history.latest().time == 150


def test_the_status_report_and_its_charts():
    history = History()
    now = 10_000.0
    for i, seconds in enumerate((2.0, 4.0, 6.0)):
        history.add_event(Event(now - 600 + i, SPAWN, f"u{i}", "", "bio", seconds))
    history.add_event(Event(now - 2 * 3600, SPAWN, "old", "", "bio", 99.0))  # outside the hour
    history.add_event(Event(now - 100, FAILURE, "u9", "", "bio", 0.5, "not-enrolled"))
    history.add_event(Event(now - 50, OOM, "<b>evil</b>", "", "bio", count=3))
    history.add_sample(Sample(now - 60, running={"bio": 2}, pending={"bio": 1}, temporary_users=1))
    servers = [
        ServerInfo("u0", "", "bio", True, "", memory_limit=GIB, cgroup=object(), memory=GIB // 2),
        ServerInfo("<b>evil</b>", "", "bio", True, "", memory_limit=GIB, cgroup=object(), memory=GIB),
    ]
    builds = {
        "bio": CourseRecord("bio", built_at=now, build_seconds=12.5),
        "chem": CourseRecord("chem", last_error="x"),
    }
    report = build_report(
        servers, history, builds, HubTotals(users=5, temporary_users=1, spawn_limit=64), now, now
    )
    assert report.totals["spawns_last_hour"] == 3 and report.totals["failures_last_hour"] == 1
    assert report.totals["oom_kills_last_hour"] == 3 and report.totals["servers_running"] == 2
    assert report.spawn_seconds["p50"] == 4.0 and report.spawn_seconds["max"] == 6.0
    bio, chem = report.courses
    assert (bio.course, bio.spawns, bio.failures, bio.oom_kills, bio.build_seconds) == ("bio", 3, 1, 3, 12.5)
    assert chem.build_error == "x" and chem.running == 0
    assert [m.user for m in report.memory] == ["<b>evil</b>", "u0"]  # fullest first
    assert [e.kind for e in report.recent] == [OOM, FAILURE]  # newest first
    assert report.to_dict()["courses"][0]["course"] == "bio"

    svgs = render_charts(report, history)
    assert set(svgs) == {"servers", "spawns", "memory"}
    assert all(svg.startswith("<svg") and svg.endswith("</svg>") for svg in svgs.values())
    assert "&lt;b&gt;evil" in svgs["memory"] and "<b>evil" not in svgs["memory"]
    assert svgs["spawns"].count("<circle") == 3 and svgs["spawns"].count("<path") == 1


def test_chart_axes_are_round():
    assert charts.axis(0) == (1.0, 5) and charts.axis(3.2) == (5.0, 5) and charts.axis(12) == (20.0, 4)
    assert charts.axis(1, counts=True) == (5.0, 5)  # counts get whole-number ticks
    assert "no data yet" in charts.line_chart({"a": []}, 0, 60, "t", "n")


def test_first_kernels_are_asked_of_the_server_with_its_own_token():
    from tornado.httpserver import HTTPServer
    from tornado.netutil import bind_sockets

    kernels: list[dict] = []

    class Kernels(web.RequestHandler):
        def get(self) -> None:
            if self.request.headers.get("Authorization") != "token s3cret":
                raise web.HTTPError(403)
            self.write(json.dumps(kernels))

    async def ask() -> list[bool]:
        sockets = bind_sockets(0, "127.0.0.1")
        server = HTTPServer(web.Application([(r"/user/ana/api/kernels", Kernels)]))
        server.add_sockets(sockets)
        url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}/user/ana"
        spawner = SimpleNamespace(server=SimpleNamespace(url=url), api_token="s3cret")
        watch = kernelwatch.watch_for(spawner, "bio", 0.0)
        assert watch is not None and watch.url.endswith("/user/ana/")
        wrong = KernelWatch("bio", 0.0, watch.url, "wrong")
        answers = [await kernelwatch.has_kernel(watch), await kernelwatch.has_kernel(wrong)]
        kernels.append({"id": "k1", "execution_state": "idle"})
        answers.append(await kernelwatch.has_kernel(watch))
        server.stop()
        return answers

    assert asyncio.run(ask()) == [False, False, True]
    assert kernelwatch.watch_for(SimpleNamespace(server=None, api_token="x"), "bio", 0.0) is None


def test_kernel_questions_are_paced_and_bounded():
    assert [kernelwatch.next_delay(age) for age in (0, 59, 60, 299, 300)] == [2, 2, 5, 5, 15]
    watches = {i: KernelWatch("c", requested=float(i), url="u", token="t") for i in range(30)}
    watches[3].next_check = 100.0
    due = kernelwatch.due(watches, now=50.0)
    assert len(due) == kernelwatch.MAX_PER_ROUND and 3 not in due and due[0] == 0
    assert watches[0].expired(kernelwatch.WATCH_SECONDS + 1) and not watches[0].expired(10)


def test_students_from_a_csv_dummy_users_and_guests(tmp_path):
    path = tmp_path / "ws.csv"
    path.write_text("username,password\nws-01,aa\nws-02,bb\nws-03,cc\n")
    assert [c.username for c in from_csv(path)] == ["ws-01", "ws-02", "ws-03"]
    assert [c.password for c in from_csv(path, 2)] == ["aa", "bb"]
    (tmp_path / "bad.csv").write_text("user,pw\na,b\n")
    with pytest.raises(ConfigError, match="username,password"):
        from_csv(tmp_path / "bad.csv")
    with pytest.raises(ConfigError, match="cannot read"):
        from_csv(tmp_path / "missing.csv")
    assert [c.username for c in dummy_users(3, "pw")] == ["loadtest-01", "loadtest-02", "loadtest-03"]
    assert dummy_users(120)[-1].username == "loadtest-120"
    assert len(guests(2)) == 2
    with pytest.raises(ConfigError, match="within 1 and"):
        dummy_users(0)


def run_of_two() -> RunResult:
    good = StudentResult(
        "a",
        0.0,
        [Phase("login", 0, 1, True), Phase("spawn", 1, 4, True), Phase("kernel", 4, 5, True)]
        + [Phase("execute", 5, 6, True), Phase("delete_kernel", 6, 7, True), Phase("stop", 7, 8, True)],
        ttfr=5.0,
        executions=1,
    )
    bad = StudentResult("b", 1.0, [Phase("login", 1, 2, True), Phase("spawn", 2, 9, False, "timeout")])
    bad.phases.append(Phase("stop", 9, 10, True))
    return RunResult("http://hub/", "2026-01-01T00:00:00+00:00", {}, [good, bad], duration=10.0)


def test_the_summary_lines_show_every_phase_ttfr_and_errors():
    text = "\n".join(summary_lines(summarize(run_of_two())))
    assert text.startswith("1/2 students got a result in 10 s")
    for name in ("login", "spawn", "kernel", "execute", "delete_kernel", "stop"):
        assert f"\n{name} " in text
    assert "\nspawn             1       1" in text
    assert "time to first result: p50 5.00 s" in text
    assert "1 × spawn: timeout" in text


def test_the_timeline_counts_students_per_phase(tmp_path):
    times, counts = occupancy(run_of_two(), steps=10)
    assert times[0] == 0 and times[1] == pytest.approx(1.0)
    assert counts["spawn"][3] == 2 and counts["spawn"][6] == 1  # both spawning at 3 s, one at 6 s
    assert "session" not in counts
    png = write_timeline(run_of_two(), tmp_path / "t.png")
    assert Path(png).read_bytes().startswith(b"\x89PNG")


def test_metric_helpers_and_buckets():
    assert metrics.failure_reason("Server Exited!") == "server-exited"
    assert metrics.failure_reason("") == "unknown"
    before = sample("coursehub_oom_kills_total", course="unit-x") or 0
    metrics.record_oom_kills("unit-x", 2)
    metrics.record_oom_kills("unit-x", 0)
    assert sample("coursehub_oom_kills_total", course="unit-x") == before + 2
    metrics.observe_spawn("unit-b", 250.0, ok=True)
    metrics.observe_spawn(None, 1.0, ok=False, reason="Timeout")
    buckets = {
        le: sample("coursehub_spawn_duration_seconds_bucket", course="unit-b", le=le)
        for le in ("120.0", "300.0", "600.0", "+Inf")
    }
    assert buckets == {"120.0": 0, "300.0": 1, "600.0": 1, "+Inf": 1}
    assert metrics.SPAWN_BUCKETS == (2, 5, 10, 20, 30, 60, 120, 300, 600)
    assert sample("coursehub_spawn_failures_total", course="-", reason="timeout") >= 1


def test_exactly_one_source_of_students(tmp_path):
    with pytest.raises(ConfigError, match="exactly one"):
        choose_students(None, None, None, None)
    with pytest.raises(ConfigError, match="exactly one"):
        choose_students(tmp_path / "ws.csv", 2, None, None)
    with pytest.raises(ConfigError, match="--users"):
        choose_students(None, None, "open1", None)
    assert [c.username for c in choose_students(None, None, "open1", 2)] == ["guest-01", "guest-02"]
    assert [c.password for c in choose_students(None, 2, None, None, "pw")] == ["pw", "pw"]


def test_load_tests_run_where_an_event_loop_already_runs():
    """Playwright's sync API (or Jupyter) runs a loop in this thread: the load test gets its own."""

    async def inside() -> int:
        return run_in_own_loop(lambda: asyncio.sleep(0, result=7))

    assert asyncio.run(inside()) == 7
    assert run_in_own_loop(lambda: asyncio.sleep(0, result=8)) == 8
