"""Percentiles and five-number summaries of measurements (pure), shared by the hub and the tools."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) with linear interpolation between ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0 and 100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def describe(values: Iterable[float]) -> dict[str, float | int | None]:
    """Count, min, p50 (median), p95 and max of `values`; None where there are none."""
    data = list(values)
    if not data:
        return {"n": 0, "min": None, "p50": None, "p95": None, "max": None}
    return {
        "n": len(data),
        "min": min(data),
        "p50": percentile(data, 50),
        "p95": percentile(data, 95),
        "max": max(data),
    }
