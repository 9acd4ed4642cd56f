"""The hub's recent past, kept in memory for the status page: events and periodic samples (pure)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from coursehub.stats import describe

HOUR = 3600.0
KEEP_SECONDS = 6 * HOUR  # events older than this are forgotten
MAX_EVENTS = 20_000
MAX_SAMPLES = 6 * 360  # six hours of samples taken every 10 s

# Event kinds
SPAWN = "spawn"  # a spawn succeeded; seconds = its duration
FAILURE = "failure"  # a spawn failed; reason says why
OOM = "oom"  # processes of a server were OOM-killed; count says how many
FIRST_KERNEL = "first-kernel"  # a server's first kernel appeared; seconds since the spawn request


@dataclass(frozen=True)
class Event:
    """Something that happened to one server at `time` (Unix seconds)."""

    time: float
    kind: str
    user: str
    server: str
    course: str
    seconds: float = 0.0
    reason: str = ""
    count: int = 1


@dataclass(frozen=True)
class Sample:
    """The hub's state at `time`: per course, servers ready and spawns pending; totals."""

    time: float
    running: dict[str, int] = field(default_factory=dict)
    pending: dict[str, int] = field(default_factory=dict)
    memory_bytes: int = 0  # used by all servers together
    temporary_users: int = 0

    @property
    def total_running(self) -> int:
        return sum(self.running.values())

    @property
    def total_pending(self) -> int:
        return sum(self.pending.values())


class History:
    """Bounded deques of events and samples; old entries fall off as new ones arrive."""

    def __init__(self, keep: float = KEEP_SECONDS) -> None:
        self.keep = keep
        self.events: deque[Event] = deque(maxlen=MAX_EVENTS)
        self.samples: deque[Sample] = deque(maxlen=MAX_SAMPLES)

    def add_event(self, event: Event) -> None:
        """Remember `event`, and forget what is older than `keep`."""
        self.events.append(event)
        _prune(self.events, event.time - self.keep)

    def add_sample(self, sample: Sample) -> None:
        """Remember `sample`, and forget what is older than `keep`."""
        self.samples.append(sample)
        _prune(self.samples, sample.time - self.keep)

    def events_since(self, since: float, *kinds: str) -> list[Event]:
        """Events of these kinds (all kinds when none is given) at or after `since`, oldest first."""
        return [e for e in self.events if e.time >= since and (not kinds or e.kind in kinds)]

    def samples_since(self, since: float) -> list[Sample]:
        """Samples at or after `since`, oldest first."""
        return [s for s in self.samples if s.time >= since]

    def latest(self) -> Sample | None:
        """The newest sample, if any."""
        return self.samples[-1] if self.samples else None


def _prune(entries: deque, before: float) -> None:
    while entries and entries[0].time < before:
        entries.popleft()


def seconds_stats(events: Iterable[Event]) -> dict[str, float | int | None]:
    """n, min, p50, p95, max of the events' `seconds`."""
    return describe(e.seconds for e in events)


def by_course(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Events grouped by course, courses in name order."""
    groups: dict[str, list[Event]] = {}
    for event in events:
        groups.setdefault(event.course, []).append(event)
    return dict(sorted(groups.items()))
