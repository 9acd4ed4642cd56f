"""Whether the machine's memory holds one more user: live-users admission and burst sizes (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coursehub.tools.loadtest import ADMIT, STOP, WAIT

# What one user is assumed to take from MemAvailable until enough of them are live to measure it:
# well above what was measured here (PSS 87 MiB per user; each spawn took ~60 MiB of MemAvailable).
PRIOR_USER_MIB = 150.0
# Live users before their measured cost replaces the prior: with one or two, MemAvailable's own
# movements (page cache, other processes) are as large as what they took.
MIN_MEASURED = 5
# A measured cost is never taken below this: memory freed elsewhere (another hub's test ending)
# must not make users look free. 60 MiB is what each spawn took from MemAvailable in the run that
# ran this machine out of memory; a floor above the true cost only slows the last admissions.
FLOOR_USER_MIB = 60.0
MIB_PER_GIB = 1024.0


@dataclass(frozen=True)
class Admission:
    """One decision: ADMIT, WAIT (only spawns still in flight stand in the way) or STOP, and why."""

    verdict: str
    reason: str = ""


def user_cost_mib(
    baseline_mib: float, available_mib: float, live: int, prior_mib: float = PRIOR_USER_MIB
) -> float:
    """MiB of MemAvailable one live user takes: the drop since `baseline_mib` over the live users,
    never under FLOOR_USER_MIB; `prior_mib` until MIN_MEASURED users are live (pure).

    The drop also holds what spawns in flight have taken so far: dividing it by the live users
    alone errs on the high side, which is the side to err on."""
    if live < MIN_MEASURED:
        return prior_mib
    return max(FLOOR_USER_MIB, (baseline_mib - available_mib) / live)


def admission(
    available_mib: float, margin_mib: float, live: int, in_flight: int, cost_mib: float
) -> Admission:
    """Admit one more user only if MemAvailable stays above the margin once every spawn in flight
    and the new one have taken their cost (pure).

    MemAvailable alone is not enough: a spawn in flight has not taken its memory yet, so the old
    rule (admit while MemAvailable ≥ margin) let ~25 spawns through at 2.35 GiB, and they took the
    machine down to ~100 MiB. When only the spawns in flight stand in the way, wait for them and
    look again instead of stopping: they may take less than `cost_mib` (the estimate errs high,
    and some fail), and stopping there would report fewer users than fit. When even without them
    one more would not fit, stop for good: the spawns in flight only take more."""
    projected = available_mib - (in_flight + 1) * cost_mib
    if projected >= margin_mib:
        return Admission(ADMIT)
    numbers = (
        f"MemAvailable {available_mib:.0f} MiB − ({in_flight} starting + 1) × {cost_mib:.0f} MiB "
        f"per user = {projected:.0f} MiB, under the safety margin of {margin_mib:.0f} MiB"
    )
    if in_flight and available_mib - cost_mib >= margin_mib:
        return Admission(WAIT, f"waiting for {in_flight} spawns in flight with {live} users live: {numbers}")
    return Admission(STOP, f"stopped admitting users at {live} live and {in_flight} starting: {numbers}")


def burst_fit(size: int, available_mib: float, margin_mib: float, cost_mib: float) -> str:
    """'' when `size` users, each taking `cost_mib` at once, leave MemAvailable above the margin;
    else why the burst is not run (pure)."""
    needed = size * cost_mib
    if available_mib - needed >= margin_mib:
        return ""
    return (
        f"not run: needs ~{needed / MIB_PER_GIB:.1f} GiB ({size} × {cost_mib:.0f} MiB) and a "
        f"{margin_mib / MIB_PER_GIB:.1f} GiB margin, MemAvailable {available_mib / MIB_PER_GIB:.1f} GiB"
    )


def burst_user_mib(entry: dict[str, Any]) -> float:
    """What one user of a burst is assumed to take, from one system's measurements so far: the
    live users' share of MemAvailable once MIN_MEASURED were live (measured at scale: what a
    user adds), else the steady state's median PSS per user, else the prior (pure).

    The steady state's few users split the shared pages among few, so their PSS is above what
    one more user adds; the live users' cost is the better measure when there is one."""
    live = entry.get("live") or {}
    if live.get("live", 0) >= MIN_MEASURED and live.get("user_cost_mib"):
        return float(live["user_cost_mib"])
    pss = (entry.get("memory") or {}).get("pss_per_user_mib", {}).get("p50")
    return float(pss) if pss else PRIOR_USER_MIB
