"""The isolation steps' cost per spawn, from the hub's /hub/metrics before and after a scenario (pure)."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from coursehub.metrics import ISOLATION_STEPS

# Sample name -> the key of its total in isolation_totals.
_SAMPLES = {
    "coursehub_isolation_step_seconds_count": "count",
    "coursehub_isolation_step_seconds_sum": "seconds",
    "coursehub_isolation_step_cpu_seconds_total": "cpu",
}
Totals = dict[str, dict[str, float]]


def isolation_totals(text: str) -> Totals:
    """{step: {count, seconds, cpu}} summed since the hub started, from Prometheus text."""
    totals: Totals = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key, step = _SAMPLES.get(sample.name), sample.labels.get("step")
            if key and step:
                totals.setdefault(step, {"count": 0.0, "seconds": 0.0, "cpu": 0.0})[key] = sample.value
    return totals


def per_spawn(before: Totals | None, after: Totals | None) -> dict[str, Any]:
    """Per step measured between the two readings: steps run, mean wall and thread-CPU seconds.
    Empty when the hub has no such metrics (stock JupyterHub)."""
    if before is None or after is None:
        return {}
    steps: dict[str, Any] = {}
    for step in ISOLATION_STEPS:
        now, then = after.get(step), before.get(step, {"count": 0.0, "seconds": 0.0, "cpu": 0.0})
        if now is None or now["count"] <= then["count"]:
            continue
        count = now["count"] - then["count"]
        steps[step] = {
            "steps": int(count),
            "seconds": (now["seconds"] - then["seconds"]) / count,
            "cpu_s": (now["cpu"] - then["cpu"]) / count,
        }
    return steps
