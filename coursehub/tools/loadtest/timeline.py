"""How many students were in each phase over time, and that as a PNG (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path

from coursehub.tools.loadtest.results import PHASES, RunResult

STEPS = 400  # points along the time axis


def occupancy(run: RunResult, steps: int = STEPS) -> tuple[list[float], dict[str, list[int]]]:
    """(times, {phase: students in that phase at each time}), phases in flow order (pure)."""
    end = max([run.duration, *(p.end for s in run.students for p in s.phases)], default=0.0)
    step = max(end / steps, 0.05)
    times = [i * step for i in range(math.floor(end / step) + 2)]
    counts = {name: [0] * len(times) for name in PHASES}
    for student in run.students:
        for phase in student.phases:
            first = math.ceil(phase.start / step)
            last = max(first, math.ceil(phase.end / step))
            for i in range(first, min(last, len(times))):
                counts[phase.name][i] += 1
    return times, {name: series for name, series in counts.items() if any(series)}


def write_timeline(run: RunResult, path: Path, title: str = "") -> Path:
    """A stacked area chart of students per phase over the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    times, counts = occupancy(run)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=100)
    if counts:
        ax.stackplot(times, *counts.values(), labels=list(counts), step="post", alpha=0.85)
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xlabel("seconds since the start of the run")
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ok = sum(s.ok for s in run.students)
    ax.set_title(title or f"{run.hub_url}: {ok}/{len(run.students)} students got a result")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
