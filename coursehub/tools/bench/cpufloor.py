"""Where a burst's CPU went, and the p95 no launch can beat on this machine's cores (pure)."""

from __future__ import annotations

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


def burst_cpu(before: CpuSample, after: CpuSample, students: int, cores: int) -> dict[str, Any]:
    """The CPU a burst of `students` cost, split by part, with the floor it puts under the p95.

    The students' browsers run on the benchmark's own cores here, not on the server's as in a class: their
    CPU (`client`) is left out of the per-student cost. Finishing 95 % of the students' work takes at
    least 0.95 × students × per-student CPU ÷ cores seconds, even with every core busy all the time and the
    work perfectly spread: no p95 can be below that floor.
    """
    delta = {k: v - asdict(before)[k] for k, v in asdict(after).items()}
    served = max(delta["machine"] - delta["client"], 0.0)
    rest = max(served - delta["hub"] - delta["proxy"], 0.0)
    per_student = served / students if students else 0.0
    return {
        "wall_s": delta["wall"],
        "cores": cores,
        "busy_fraction": delta["machine"] / (delta["wall"] * cores) if delta["wall"] > 0 and cores else 0.0,
        "hub_s": delta["hub"],
        "proxy_s": delta["proxy"],
        "client_s": delta["client"],
        # Users' servers and kernels, the fork server, root helpers (useradd, ip), the kernel's own work.
        "rest_s": rest,
        "per_student_s": per_student,
        "floor_p95_s": 0.95 * students * per_student / cores if cores else 0.0,
    }


def per_student_budget(students: int, p95_target: float, cores: int) -> float:
    """The most CPU-seconds a student may cost for `students` at once to meet `p95_target` on `cores`."""
    return p95_target * cores / (0.95 * students)
