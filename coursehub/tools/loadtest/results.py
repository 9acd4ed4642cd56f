"""What a load test records: phases per student and the run around them, as JSON-ready data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# The order in which a student goes through the phases; `stop` also runs after a failure.
# `page`: the server's default page (JupyterLab's HTML) through the OAuth handshake with the hub, as a
# browser opens it when the spawn page says ready. `check`: the code run once more in the same kernel
# during the session, when the run asks.
PHASES = ("login", "spawn", "page", "kernel", "execute", "check", "session", "delete_kernel", "stop")
NOT_ADMITTED = "not-admitted: arrivals stopped"  # the error of a student the run stopped admitting


@dataclass
class Phase:
    """One phase of one student: seconds since the run started, and how it ended."""

    name: str
    start: float
    end: float
    ok: bool
    error: str = ""  # the error kind when not ok, e.g. 'timeout', 'http-500'

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class StudentResult:
    """Everything one simulated student went through."""

    user: str
    arrival: float  # seconds since the run started
    phases: list[Phase] = field(default_factory=list)
    ttfr: float | None = None  # launch request -> first correct result, seconds
    executions: int = 0  # cells run with the expected result (first one included)
    retries_429: int = 0  # spawn requests the hub turned away with 429 and we repeated
    error: str = ""  # set when the student never got to run (e.g. the time limit came first)

    @property
    def ok(self) -> bool:
        """True when the student got a result and every phase it reached succeeded."""
        return self.ttfr is not None and not self.error and all(p.ok for p in self.phases)

    def failures(self) -> list[Phase]:
        """The phases that failed."""
        return [p for p in self.phases if not p.ok]


@dataclass
class RunResult:
    """A whole load test: its settings, its students and whether the time limit cut it short."""

    hub_url: str
    started_at: str  # ISO 8601, UTC
    settings: dict[str, Any]
    students: list[StudentResult] = field(default_factory=list)
    duration: float = 0.0
    hit_time_limit: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain data for json.dumps."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunResult:
        """The inverse of to_dict."""
        students = [
            StudentResult(
                **{**s, "phases": [Phase(**p) for p in s["phases"]]},
            )
            for s in data.get("students", [])
        ]
        return cls(**{**data, "students": students})
