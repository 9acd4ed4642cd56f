"""The TTFR chart: one box (with every launch as a dot) per system and scenario."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

COLORS = {
    "stock": "#d62728",
    "stock-600": "#ff7f0e",
    "coursehub": "#1f77b4",
    "coursehub-noisolate": "#17becf",
    "coursehub-merge": "#2ca02c",
}


def ttfr_series(results: dict[str, Any]) -> list[tuple[str, str, list[float], int]]:
    """(scenario, system, TTFRs of successful launches, launches) in plotting order (pure)."""
    series: list[tuple[str, str, list[float], int]] = []
    systems = results.get("systems", {})
    for name, entry in systems.items():
        for run in entry.get("single", {}).get("runs", []):
            _add(series, "1 user", name, run["students"])
    sizes = sorted({b["size"] for e in systems.values() for b in e.get("bursts", [])})
    for size in sizes:
        for name, entry in systems.items():
            for burst in entry.get("bursts", []):
                if burst["size"] == size and not burst.get("skipped"):
                    _add(series, f"{size} at once", name, burst["run"]["students"])
    return series


def _add(series: list, scenario: str, system: str, students: list[dict[str, Any]]) -> None:
    """Append students to the (scenario, system) entry, creating it if needed."""
    values = [s["ttfr"] for s in students if s["ttfr"] is not None and _ok(s)]
    for i, (sc, sy, vals, total) in enumerate(series):
        if (sc, sy) == (scenario, system):
            series[i] = (sc, sy, vals + values, total + len(students))
            return
    series.append((scenario, system, values, len(students)))


def _ok(student: dict[str, Any]) -> bool:
    return not student.get("error") and all(p["ok"] for p in student["phases"])


def write_ttfr_chart(results: dict[str, Any], path: Path) -> None:
    """Draw the chart to `path` (PNG) with matplotlib's Agg backend."""
    import matplotlib

    matplotlib.use("Agg")  # no display here, and none needed
    import matplotlib.pyplot as plt

    series = ttfr_series(results)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(series) + 2), 5), dpi=110)
    _draw_series(ax, series)
    _label_axes(ax, series)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


def _draw_series(ax: Any, series: list[tuple[str, str, list[float], int]]) -> None:
    """A box and the dots of every launch per entry; n/N above; lines between scenarios."""
    jitter = random.Random(0)  # the same picture for the same results
    for x, (scenario, system, values, total) in enumerate(series, start=1):
        if values:
            ax.boxplot([values], positions=[x], widths=0.6, showfliers=False)
            xs = [x + jitter.uniform(-0.2, 0.2) for _ in values]
            ax.scatter(xs, values, s=9, alpha=0.6, color=COLORS.get(system, "#555"), zorder=3)
        ax.annotate(
            f"{len(values)}/{total}",
            (x, 1.0),
            xycoords=("data", "axes fraction"),
            ha="center",
            va="bottom",
            fontsize=8,
        )
        if x > 1 and series[x - 2][0] != scenario:
            ax.axvline(x - 0.5, color="#bbbbbb", linewidth=0.8)


def _label_axes(ax: Any, series: list[tuple[str, str, list[float], int]]) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_xticks(range(1, len(series) + 1))
    ax.set_xticklabels([f"{scenario}\n{system}" for scenario, system, _, _ in series], fontsize=8)
    if any(values for _, _, values, _ in series):
        ax.set_yscale("log")  # one user takes seconds, a burst minutes: both must be readable
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
    else:
        ax.text(0.5, 0.5, "no successful launch", transform=ax.transAxes, ha="center")
    ax.set_ylabel("time to first result (s, log scale)")
    ax.set_title("Launch → first cell result; n/N = successful launches", pad=18)
    ax.grid(axis="y", alpha=0.3)
