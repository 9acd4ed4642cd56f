"""A load test's summary as terminal text: per phase, time to first result, errors (pure)."""

from __future__ import annotations

from typing import Any

from coursehub.tools.bench.report import seconds
from coursehub.tools.loadtest.results import PHASES

MAX_ERROR_LINES = 10


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The end-of-run report: one line per phase, then TTFR, then errors grouped by kind."""
    lines = [
        f"{summary['ok']}/{summary['users']} students got a result in {summary['duration']:.0f} s"
        + (" (stopped at the time limit)" if summary["hit_time_limit"] else ""),
        "",
        f"{'phase':<14}{'ok':>5}{'failed':>8}{'min':>10}{'p50':>10}{'p95':>10}{'max':>10}",
    ]
    for name in PHASES:
        stats = summary["phases"].get(name)
        if stats is None:
            continue
        s = stats["seconds"]
        lines.append(
            f"{name:<14}{stats['ok']:>5}{stats['failed']:>8}"
            + "".join(f"{seconds(s[key]):>10}" for key in ("min", "p50", "p95", "max"))
        )
    ttfr = summary["ttfr"]
    lines += [
        "",
        f"time to first result: p50 {seconds(ttfr['p50'])}, p95 {seconds(ttfr['p95'])}, "
        f"max {seconds(ttfr['max'])} ({ttfr['n']} students)",
    ]
    if summary["retries_429"]:
        lines.append(f"spawn requests turned away with 429 and repeated: {summary['retries_429']}")
    errors = list(summary["errors"].items())
    if errors:
        lines += ["", "errors by kind:"]
        lines += [f"  {count:>4} × {kind}" for kind, count in errors[:MAX_ERROR_LINES]]
        rest = sum(count for _, count in errors[MAX_ERROR_LINES:])
        if rest:
            lines.append(f"  {rest:>4} × (other kinds)")
    return lines
