"""Simulated students, hubtraf-style: log in, start a server, run code, clean up; many at once.

Each student is a synchronous flow (requests and websockets have timeouts on every call) run
in its own thread of a pool sized to the class; asyncio paces arrivals, reports progress and
enforces the run's time limit, after which flows stop at their next step and stop their servers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from coursehub.auth.accounts import Credential
from coursehub.clients.kernel import KernelSession
from coursehub.tools.loadtest.client import StudentClient
from coursehub.tools.loadtest.failures import PhaseError, error_kind
from coursehub.tools.loadtest.results import NOT_ADMITTED, Phase, RunResult, StudentResult

log = logging.getLogger(__name__)
T = TypeVar("T")
CLEANUP_GRACE = 180  # seconds flows get after the time limit to stop their servers
IDLE_TICK = 1.0  # seconds an idle session sleeps between looks at the run's signals
GATE_TICK = 0.25  # seconds a student held at the door waits before asking the gate again
ADMIT, WAIT, STOP = "admit", "wait", "stop"  # what an admission gate answers
Gate = Callable[[], str]  # asked before each student starts: ADMIT, WAIT (ask again soon) or STOP
# The phases before a student's server and kernel stand.
IN_FLIGHT = ("login", "spawn", "page", "kernel", "execute")


@dataclass(frozen=True)
class LoadConfig:
    """How the simulated class behaves."""

    hub_url: str
    arrival_rate: float = 0.0  # students per second; 0: all in the same instant
    session_seconds: float = 0.0  # keep the kernel this long after the first result
    code_interval: float = 0.0  # during the session, run code this often (0: stay idle)
    code: str = "1+1"
    expected: str = "2"
    time_limit: float = 600.0  # the whole run, cleanup excluded
    http_timeout: float = 30.0  # every single HTTP call
    progress_every: float = 5.0  # seconds between progress lines
    server: str = ""  # start this named server (on coursehub: a course) instead of the default one
    guest_course: str = ""  # log in as a temporary user of this coursehub course (/hub/tmplogin)


class RunContext:
    """What all flows of one run share: the clock, the deadline, the stop signals, live phases."""

    def __init__(self, time_limit: float) -> None:
        self.time_limit = time_limit
        self.t0 = time.monotonic()
        self.deadline = self.t0 + time_limit
        self.stop = threading.Event()  # the time limit came: stop at the next step
        self.end_sessions = threading.Event()  # sessions may end now (e.g. memory measured)
        self.stop_arrivals = threading.Event()  # students not yet arrived stay away
        self.check_sessions = threading.Event()  # students in their session run the code once more
        self._lock = threading.Lock()
        self.current: dict[str, str] = {}  # user -> phase it is in, or 'ok' / 'failed'

    def start(self) -> None:
        """Start the clock and the time limit now."""
        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.time_limit

    def now(self) -> float:
        """Seconds since the run started (to the tenth of a millisecond: enough, and short)."""
        return round(time.monotonic() - self.t0, 4)

    def enter(self, user: str, phase: str) -> None:
        """Note that `user` is now in `phase`."""
        with self._lock:
            self.current[user] = phase

    def users_in(self, phase: str) -> list[str]:
        """The users in `phase` now."""
        with self._lock:
            return [user for user, current in self.current.items() if current == phase]

    def in_flight(self, users: Iterable[str]) -> int:
        """How many of `users` have not yet reached their first result nor failed (not yet in a
        phase counts: the flow is about to log in)."""
        with self._lock:
            return sum(1 for user in users if self.current.get(user, IN_FLIGHT[0]) in IN_FLIGHT)

    def counts(self) -> Counter[str]:
        """How many students are in each phase now."""
        with self._lock:
            return Counter(self.current.values())


class StudentFlow:
    """One student's way through the phases; every phase is timed and its failure classified."""

    def __init__(self, cred: Credential, config: LoadConfig, ctx: RunContext) -> None:
        self.cred, self.config, self.ctx = cred, config, ctx
        server = config.guest_course or config.server
        self.client = StudentClient(config.hub_url, cred.username, config.http_timeout, server)
        self.result = StudentResult(user=cred.username, arrival=ctx.now())
        self.spawn_requested = False
        self.server_url = ""
        self.kernel: KernelSession | None = None
        self.launched_at = 0.0
        self.checked = False  # ran the check asked for by check_sessions (successfully or not)

    def run(self) -> StudentResult:
        """All phases in order until one fails or the time limit comes; then always clean up."""
        steps: list[tuple[str, Callable[[], None]]] = [
            ("login", self.login),
            ("spawn", self.spawn),
            ("page", self.open_page),
            ("kernel", self.open_kernel),
            ("execute", self.first_result),
        ]
        if self.config.session_seconds:
            steps.append(("session", self.session))
        steps.append(("delete_kernel", self.delete_kernel))
        try:
            for name, step in steps:
                if self.ctx.stop.is_set() or not self.timed(name, step):
                    break
        finally:
            self.clean_up()
        self.ctx.enter(self.cred.username, "ok" if self.result.ok else "failed")
        return self.result

    def timed(self, name: str, step: Callable[[], None]) -> bool:
        """Run one phase and record it; True when it succeeded."""
        self.ctx.enter(self.cred.username, name)
        start = self.ctx.now()
        try:
            step()
        except Exception as exc:  # any failure is data here, classified by kind
            kind = error_kind(exc, self.cred.username)
            log.debug("%s: %s failed: %s (%r)", self.cred.username, name, kind, exc)
            self.result.phases.append(Phase(name, start, self.ctx.now(), False, kind))
            return False
        self.result.phases.append(Phase(name, start, self.ctx.now(), True))
        return True

    def login(self) -> None:
        """Log in through the form (or a temporary-user link) and get an API token."""
        if self.config.guest_course:
            self.client.guest_login(self.config.guest_course)
            self.result.user = self.client.name
        else:
            self.client.login(self.cred.password)
        self.client.create_token()

    def spawn(self) -> None:
        """Ask for the server (the launch: TTFR starts here) and wait until it is ready."""
        self.launched_at = time.monotonic()
        self.spawn_requested = True
        self.result.retries_429 = self.client.request_server(self.ctx.deadline)
        self.server_url = self.client.wait_ready(self.ctx.deadline, self.ctx.stop)

    def open_page(self) -> None:
        """Open the server's page as the browser does when the spawn page says ready."""
        self.client.open_page(self.server_url)

    def open_kernel(self) -> None:
        """Create a kernel and open its websocket."""
        self.kernel = self.client.open_kernel(self.server_url)

    def first_result(self) -> None:
        """Run the code once; TTFR ends when its correct result arrives."""
        self.run_code()
        self.result.ttfr = time.monotonic() - self.launched_at

    def run_code(self) -> None:
        """Execute the configured code once and check its result."""
        assert self.kernel is not None
        outcome = self.kernel.execute(self.config.code, timeout=self.config.http_timeout)
        if outcome.status != "ok":
            raise PhaseError(f"execute-{outcome.status}: {outcome.error[:40]}")
        if outcome.results != [self.config.expected]:
            raise PhaseError(f"wrong-result: {outcome.results!r:.40}")
        self.result.executions += 1

    def session(self) -> None:
        """Stay (idle, or running code at intervals) until the session ends or we are stopped;
        run the code once more in the same kernel when the run asks every session to check."""
        end = time.monotonic() + self.config.session_seconds
        interval = self.config.code_interval
        next_run = time.monotonic() + interval
        # An idle student looks up rarely: hundreds of them must not cost the hub's machine CPU.
        tick = 0.2 if interval else IDLE_TICK
        while time.monotonic() < end and not self.ctx.end_sessions.is_set():
            if self.ctx.stop.is_set():
                raise PhaseError("time-limit")
            if self.ctx.check_sessions.is_set() and not self.checked:
                self.timed("check", self.run_code)  # a failure is recorded; the student stays
                self.checked = True
                self.ctx.enter(self.cred.username, "session")
            if interval and time.monotonic() >= next_run:
                self.run_code()
                next_run += interval
            time.sleep(min(tick, max(0.0, end - time.monotonic())))

    def delete_kernel(self) -> None:
        """Close the websocket and delete the kernel."""
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.close()

    def clean_up(self) -> None:
        """Close a kernel left open by a failure, and stop the server if one was asked for."""
        if self.kernel is not None:
            try:
                self.kernel.close()
            except Exception as exc:  # the server is stopped next anyway
                log.debug("%s: closing the kernel failed: %s", self.cred.username, exc)
        if self.spawn_requested:
            self.timed("stop", self.client.stop_server)


async def _report(ctx: RunContext, total: int, every: float, emit: Callable[[str], None]) -> None:
    """A progress line every few seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        emit(progress_line(ctx.now(), total, ctx.counts()))


def progress_line(elapsed: float, total: int, counts: Counter[str]) -> str:
    """'12 s: waiting 3, spawn 15, kernel 2 | ok 0, failed 0' (pure)."""
    waiting = total - sum(counts.values())
    active = [f"{name} {n}" for name, n in counts.items() if name not in ("ok", "failed") and n]
    busy = ", ".join(([f"waiting {waiting}"] if waiting else []) + active) or "idle"
    return f"{elapsed:4.0f} s: {busy} | ok {counts['ok']}, failed {counts['failed']}"


def run_in_own_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """asyncio.run(make()), in a thread of its own when this thread already runs an event loop
    (Jupyter, or Playwright's sync API in the same process)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="loadtest-loop") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


class LoadTest:
    """A class of simulated students against one hub; `run()` once."""

    def __init__(
        self,
        config: LoadConfig,
        students: Sequence[Credential],
        progress: Callable[[str], None] | None = None,
        gate: Gate | None = None,
    ) -> None:
        self.config = config
        self.students = list(students)
        self.progress = progress
        self.gate = gate
        self.ctx = RunContext(config.time_limit)
        self.flows: dict[str, StudentFlow] = {}
        self.last_admission = -math.inf  # when the gate last let a student in (run clock)

    def end_sessions(self) -> None:
        """Let students in their session phase go on to clean up now."""
        self.ctx.end_sessions.set()

    def users_in(self, phase: str) -> list[str]:
        """The students in `phase` right now ('session', 'spawn', 'ok', 'failed', ...)."""
        return self.ctx.users_in(phase)

    def stop_arrivals(self) -> None:
        """Admit no more students: those not yet arrived end as NOT_ADMITTED."""
        self.ctx.stop_arrivals.set()

    def arrivals_stopped(self) -> bool:
        """True once stop_arrivals was called."""
        return self.ctx.stop_arrivals.is_set()

    def check_sessions(self) -> None:
        """Every student in its session runs the code once more in its kernel (phase 'check')."""
        self.ctx.check_sessions.set()

    def admitted(self) -> list[str]:
        """The students that arrived and started their flow."""
        return list(self.flows)

    def in_flight(self) -> int:
        """Admitted students still on their way to their first result: their server and kernel
        have not taken all their memory yet."""
        return self.ctx.in_flight(list(self.flows))

    def checked(self, users: Iterable[str]) -> list[str]:
        """Which of `users` have run their check."""
        return [user for user in users if (flow := self.flows.get(user)) is not None and flow.checked]

    def finished(self) -> int:
        """How many students are done, with or without success."""
        counts = self.ctx.counts()
        return counts["ok"] + counts["failed"]

    def run(self) -> RunResult:
        """Run the whole class (blocking) and return its results."""
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self.ctx.start()
        students, hit_limit = run_in_own_loop(self._run_all)
        return RunResult(
            hub_url=self.config.hub_url,
            started_at=started,
            settings={**asdict(self.config), "users": len(self.students)},
            students=students,
            duration=self.ctx.now(),
            hit_time_limit=hit_limit,
        )

    async def _run_all(self) -> tuple[list[StudentResult], bool]:
        """Every student's flow, bounded by the time limit and then by the cleanup grace."""
        pool = ThreadPoolExecutor(max_workers=max(1, len(self.students)), thread_name_prefix="st")
        tasks = {
            asyncio.create_task(self._arrive(i, cred, pool)): cred for i, cred in enumerate(self.students)
        }
        reporter = self._start_reporter()
        try:
            _, pending = await asyncio.wait(tasks, timeout=self.config.time_limit)
            if pending:
                self.ctx.stop.set()
                log.warning("time limit reached: stopping %d students", len(pending))
                _, stuck = await asyncio.wait(pending, timeout=CLEANUP_GRACE)
                await self._sweep(tasks[task].username for task in stuck)
        finally:
            self.ctx.stop.set()
            if reporter is not None:
                reporter.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
        return [self._outcome(task, cred) for task, cred in tasks.items()], bool(pending)

    def _start_reporter(self) -> asyncio.Task | None:
        if self.progress is None:
            return None
        return asyncio.create_task(
            _report(self.ctx, len(self.students), self.config.progress_every, self.progress)
        )

    async def _arrive(self, index: int, cred: Credential, pool: ThreadPoolExecutor) -> StudentResult:
        """Wait for this student's arrival time, then run its flow in the pool."""
        if self.config.arrival_rate > 0:
            arrive_at = index / self.config.arrival_rate
            # In short sleeps: once arrivals stop (or the time limit comes), the students still to
            # come end now, not at their arrival time.
            while (wait := arrive_at - self.ctx.now()) > 0 and not self._doors_shut():
                await asyncio.sleep(min(wait, IDLE_TICK))
        if self.gate is not None:
            await self._pass_gate()
        if self.ctx.stop.is_set():
            return StudentResult(cred.username, self.ctx.now(), error="time-limit: not started")
        if self.ctx.stop_arrivals.is_set():
            self.ctx.enter(cred.username, "not admitted")  # not 'waiting' in the progress lines
            return StudentResult(cred.username, self.ctx.now(), error=NOT_ADMITTED)
        flow = self.flows[cred.username] = StudentFlow(cred, self.config, self.ctx)
        return await asyncio.get_running_loop().run_in_executor(pool, flow.run)

    def _doors_shut(self) -> bool:
        return self.ctx.stop_arrivals.is_set() or self.ctx.stop.is_set()

    async def _pass_gate(self) -> None:
        """Until the gate admits this student (or says stop, or the doors shut otherwise).

        Students held while the gate said WAIT pass one arrival interval apart afterwards, not
        all at once: the run keeps its rate. The gate is asked in the event loop and the flow is
        registered before the next await, so each answer counts the students admitted before."""
        gap = 1 / self.config.arrival_rate if self.config.arrival_rate > 0 else 0.0
        while not self._doors_shut():
            if (wait := self.last_admission + gap - self.ctx.now()) > 0:
                await asyncio.sleep(min(wait, GATE_TICK))
                continue
            assert self.gate is not None
            verdict = self.gate()
            if verdict == ADMIT:
                self.last_admission = self.ctx.now()
                return
            if verdict == STOP:
                self.stop_arrivals()
                return
            await asyncio.sleep(GATE_TICK)

    async def _sweep(self, users: Iterable[str]) -> None:
        """Stop the servers of flows still stuck after the grace period, from here."""
        for user in users:
            flow = self.flows.get(user)
            if flow is None or not flow.spawn_requested:
                continue
            try:
                await asyncio.to_thread(flow.client.stop_server)
            except Exception as exc:  # keep sweeping the others
                log.warning("could not stop the server of %s: %s", user, exc)

    def _outcome(self, task: asyncio.Task, cred: Credential) -> StudentResult:
        """The task's result, or a record of why there is none."""
        now = self.ctx.now()
        if not task.done():
            task.cancel()
            return StudentResult(cred.username, now, error="time-limit: cleanup unfinished")
        exc = task.exception()
        if exc is not None:
            return StudentResult(cred.username, now, error=f"flow-crashed: {error_kind(exc, cred.username)}")
        return task.result()


def run_load_test(
    config: LoadConfig,
    students: Sequence[Credential],
    progress: Callable[[str], None] | None = None,
) -> RunResult:
    """Run one load test to the end (or to its time limit) and return the results."""
    return LoadTest(config, students, progress).run()
