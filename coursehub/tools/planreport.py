"""A plan as a terminal table and as YAML to merge into coursehub.yaml (pure)."""

from __future__ import annotations

import yaml

from coursehub.settings.base import format_size
from coursehub.tools.plan import GIB, MIB, Plan, plan_values, round_up


def money(value: float, plan: Plan) -> str:
    """'1,234 USD'."""
    return f"{value:,.0f} {plan.prices.currency}"


def _student_row(plan: Plan) -> str:
    i = plan.inputs
    work = format_size(round_up(i.memory, MIB))
    jupyter = f"{plan.overhead.server_memory / MIB:.0f}M"
    return (
        f"{work} of work + {jupyter} Jupyter = limit {format_size(plan.server_memory)}; "
        f"{i.cpu:g} cores (limit {plan.cpu_limit:g})"
    )


def _single_rows(plan: Plan) -> list[tuple[str, str]]:
    single = plan.single
    machine = single.machine.describe() if single.machine else "none in the price table is that big"
    rows = [
        ("one machine", f"{single.memory_needed / GIB:.0f} GiB, {single.cores_needed:g} vCPUs: {machine}")
    ]
    if single.machine:
        rows += [
            (
                "  start of class",
                f"all {plan.concurrent} servers started after ~{single.start_all_seconds:.0f} s",
            ),
            ("  monthly", money(single.monthly, plan)),
        ]
    return rows


def _cluster_rows(plan: Plan) -> list[tuple[str, str]]:
    cluster, i = plan.cluster, plan.inputs
    if cluster is None:
        return [("Kubernetes", "no machine in the price table holds one student's server")]
    core = cluster.core_node.describe() if cluster.core_node else "none"
    boot = f"a {i.node_boot_seconds:.0f} s node boot at {i.arrival_rate:g}/s"
    return [
        (
            "Kubernetes",
            f"{cluster.nodes_at_peak} × {cluster.node.describe()}, "
            f"{cluster.users_per_node} students each; core node {core}",
        ),
        (
            "  placeholders",
            f"{cluster.placeholders} (students arriving during {boot}: {cluster.arrivals_during_boot}; "
            f"waiting: {cluster.waiting_share:.0%})",
        ),
        (
            "  monthly",
            f"{money(cluster.monthly_idle, plan)} (scaled down to the placeholders between classes) "
            f"to {money(cluster.monthly_peak, plan)} (peak size all month)",
        ),
    ]


def table_lines(plan: Plan) -> list[str]:
    """The plan as a two-column table for the terminal."""
    i = plan.inputs
    low, high = i.concurrency
    at_once = f"{low:.0%}-{high:.0%} at once: {plan.concurrent_low}-{plan.concurrent}"
    rows = [
        ("class", f"{i.students} students, {at_once}"),
        ("per student", _student_row(plan)),
        ("overhead from", plan.overhead.source),
        *_single_rows(plan),
        *_cluster_rows(plan),
        ("recommendation", "one machine" if plan.recommendation == "single" else "Kubernetes"),
        ("prices", f"{plan.prices.note} ({plan.prices.as_of})"),
        *[("note", note) for note in plan.notes],
    ]
    width = max(len(label) for label, _ in rows)
    return [f"{label:<{width}}  {text}" for label, text in rows]


def plan_yaml(plan: Plan) -> str:
    """The settings as YAML to merge into coursehub.yaml (then `coursehub render kubernetes`)."""
    cluster = plan.cluster
    header = [
        f"# coursehub plan: {plan.inputs.students} students, up to {plan.concurrent} at once",
        f"# one machine: {plan.single.machine.describe() if plan.single.machine else 'none fits'}",
    ]
    if cluster:
        header.append(
            f"# Kubernetes: {cluster.nodes_at_peak} × {cluster.node.describe()} at peak "
            f"({cluster.nodes_idle} between classes), {cluster.placeholders} placeholders"
        )
    header.append("# merge into coursehub.yaml; `coursehub config check` validates it")
    return "\n".join(header) + "\n" + yaml.safe_dump(plan_values(plan), sort_keys=False)
