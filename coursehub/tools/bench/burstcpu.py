"""Where a burst's CPU went, and how busy the cores were until the p95 student's first result (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class CpuSample:
    """CPU-seconds read at one instant: the whole machine, and the parts the benchmark can name."""

    wall: float  # a monotonic clock, seconds
    machine: float  # every core's busy time
    hub: float  # the JupyterHub process and its reaped children
    proxy: float  # configurable-http-proxy
    client: float  # the benchmark's own process: its simulated browsers


def at(samples: Sequence[CpuSample], wall: float) -> CpuSample:
    """The last sample taken at or before `wall` (the first one if none was)."""
    found = samples[0]
    for sample in samples:
        if sample.wall > wall:
            break
        found = sample
    return found


def results_in(first_results: Sequence[float], students: int, share: float = 0.95) -> float | None:
    """Seconds from the burst's start until `share` of all `students` had their first result (None: never)."""
    needed = max(math.ceil(share * students), 1)
    ordered = sorted(first_results)
    return ordered[needed - 1] if len(ordered) >= needed else None


def burst_cpu(
    samples: Sequence[CpuSample], students: int, cores: int, p95: float | None, users: float | None = None
) -> dict[str, Any]:
    """The CPU a burst of `students` cost, split by part, from samples taken through it (first: its start).

    The students' browsers run on the benchmark's own cores here, not on the server's as in a class: their
    CPU (`client`) is left out of the per-student cost. `p95`: seconds from the start (login included) until
    95 % of the students had their first result. Until then: how busy the cores were, and the CPU spent
    per student with a result (an upper bound on what a result costs: students done early have started to
    stop their servers). `users`: the CPU-seconds of the students' own processes (None: not read).
    """
    first, last = samples[0], samples[-1]
    delta = {k: v - asdict(first)[k] for k, v in asdict(last).items()}
    served = max(delta["machine"] - delta["client"], 0.0)
    result: dict[str, Any] = {
        "wall_s": delta["wall"],
        "cores": cores,
        "busy_fraction": _busy(first, last, cores),
        "hub_s": delta["hub"],
        "proxy_s": delta["proxy"],
        "client_s": delta["client"],
        # Users' servers and kernels, the fork server, root helpers (useradd, ip), the kernel's own work.
        "rest_s": max(served - delta["hub"] - delta["proxy"], 0.0),
        # Of that, the students' own processes (servers, kernels), read once before their servers stop.
        "users_s": users,
        "per_student_s": served / students if students else 0.0,
        "p95_since_start_s": p95,
        "busy_until_p95": None,
        "per_student_until_p95_s": None,
    }
    if p95 is not None and students:
        until = at(samples, first.wall + p95)
        if until.wall > first.wall:
            spent = (until.machine - first.machine) - (until.client - first.client)
            result["busy_until_p95"] = _busy(first, until, cores)
            result["per_student_until_p95_s"] = max(spent, 0.0) / (0.95 * students)
    return result


def _busy(first: CpuSample, last: CpuSample, cores: int) -> float:
    """Share of all cores busy between two samples."""
    wall = last.wall - first.wall
    return (last.machine - first.machine) / (wall * cores) if wall > 0 and cores else 0.0
