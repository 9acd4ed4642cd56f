"""Pure summaries of load-test results: percentiles, phase statistics, errors by kind."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from coursehub.stats import describe, percentile  # noqa: F401 (part of this module's surface)
from coursehub.tools.loadtest.results import NOT_ADMITTED, PHASES, RunResult, StudentResult


def errors_by_kind(students: Iterable[StudentResult]) -> dict[str, int]:
    """How often each 'phase: kind' failure happened, most frequent first."""
    counts: Counter[str] = Counter()
    for student in students:
        if student.error:
            counts[student.error] += 1
        for phase in student.failures():
            counts[f"{phase.name}: {phase.error}"] += 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def phase_stats(students: Iterable[StudentResult]) -> dict[str, dict[str, Any]]:
    """Per phase reached: successes, failures and duration percentiles of the successes."""
    durations: dict[str, list[float]] = {}
    failed: Counter[str] = Counter()
    for student in students:
        for phase in student.phases:
            durations.setdefault(phase.name, [])
            if phase.ok:
                durations[phase.name].append(phase.duration)
            else:
                failed[phase.name] += 1
    order = [name for name in PHASES if name in durations]
    return {
        name: {
            "ok": len(durations[name]),
            "failed": failed[name],
            "seconds": describe(durations[name]),
        }
        for name in order
    }


def summarize(run: RunResult) -> dict[str, Any]:
    """The numbers a report shows for one run."""
    students = run.students
    return {
        "users": len(students),
        "ok": sum(s.ok for s in students),
        "failed": sum(not s.ok for s in students),
        "ttfr": describe(s.ttfr for s in students if s.ok and s.ttfr is not None),
        "errors": errors_by_kind(students),
        "phases": phase_stats(students),
        "retries_429": sum(s.retries_429 for s in students),
        "duration": run.duration,
        "hit_time_limit": run.hit_time_limit,
    }


def merge(runs: Sequence[RunResult]) -> RunResult:
    """Several runs (e.g. repetitions of one user) as one, for a single summary."""
    if not runs:
        raise ValueError("nothing to merge")
    return RunResult(
        hub_url=runs[0].hub_url,
        started_at=runs[0].started_at,
        settings=runs[0].settings,
        students=[s for run in runs for s in run.students],
        duration=sum(run.duration for run in runs),
        hit_time_limit=any(run.hit_time_limit for run in runs),
    )


def admitted(run: RunResult) -> RunResult:
    """The run without the students it stopped admitting (they never tried, so never failed)."""
    students = [s for s in run.students if s.error != NOT_ADMITTED]
    return RunResult(run.hub_url, run.started_at, run.settings, students, run.duration, run.hit_time_limit)
