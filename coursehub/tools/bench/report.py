"""Benchmark results as Markdown, and the README section regenerated from them (pure)."""

from __future__ import annotations

from typing import Any

from coursehub.errors import CoursehubError
from coursehub.metrics import ISOLATION_STEPS

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
MAX_ERROR_KINDS = 3
VERSIONS = (
    "jupyterhub",
    "jupyterlab",
    "jupyter-server",
    "ipykernel",
    "configurable-http-proxy",
    "coursehub",
)


def seconds(value: float | None) -> str:
    """'0.43 s', '12.3 s', '164 s', or '—' when there is no value."""
    if value is None:
        return "—"
    if value < 10:
        return f"{value:.2f} s"
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


def mib(value: float | None) -> str:
    """'116 MiB' or '—'."""
    return "—" if value is None else f"{value:.0f} MiB"


def machine_line(machine: dict[str, Any]) -> str:
    """One sentence naming the hardware and every version that matters."""
    versions = ", ".join(f"{name} {machine.get(name, '?')}" for name in VERSIONS)
    return (
        f"Machine: {machine.get('cpu')}, {machine.get('cores')} cores, "
        f"{machine.get('ram_gib')} GiB RAM, Linux {machine.get('kernel')}, "
        f"Python {machine.get('python_hub')} (hub) / {machine.get('python_users')} (users); "
        f"{versions}."
    )


def _errors(errors: dict[str, int]) -> str:
    kinds = list(errors.items())
    text = "; ".join(f"{kind} ×{n}" for kind, n in kinds[:MAX_ERROR_KINDS])
    rest = sum(n for _, n in kinds[MAX_ERROR_KINDS:])
    text += f"; {rest} other" if rest else ""
    return text.replace("|", "\\|") or "—"


def single_table(systems: dict[str, Any]) -> list[str]:
    """Single-user TTFR per system."""
    rows = ["| system | ok | min | median | max | errors |", "|---|---|---|---|---|---|"]
    for entry in systems.values():
        if "single" not in entry:
            continue
        s = entry["single"]["summary"]
        t = s["ttfr"]
        rows.append(
            f"| {entry['label']} | {s['ok']}/{s['users']} | {seconds(t['min'])} | "
            f"{seconds(t['p50'])} | {seconds(t['max'])} | {_errors(s['errors'])} |"
        )
    return rows


def burst_table(systems: dict[str, Any]) -> list[str]:
    """One row per system and burst size."""
    rows = [
        "| system | users | ok | TTFR p50 | p95 | max | hub CPU-s per spawn | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in systems.values():
        for burst in entry.get("bursts", []):
            if burst.get("skipped"):
                rows.append(
                    f"| {entry['label']} | {burst['size']} | skipped | — | — | — | — | {burst['skipped']} |"
                )
                continue
            s, t = burst["summary"], burst["summary"]["ttfr"]
            rows.append(
                f"| {entry['label']} | {burst['size']} | {s['ok']}/{s['users']} | "
                f"{seconds(t['p50'])} | {seconds(t['p95'])} | {seconds(t['max'])} | "
                f"{_cpu(burst.get('hub_cpu_s_per_spawn'))} | {_errors(s['errors'])} |"
            )
    return rows


# The phases of a launch as the burst-phase table names them.
BURST_PHASES = (
    ("login", "login"),
    ("spawn", "spawn (until the server answered)"),
    ("page", "page (OAuth, JupyterLab's HTML)"),
    ("kernel", "kernel"),
    ("execute", "first cell"),
)


def _p50_p95(stats: dict[str, Any] | None) -> str:
    """'0.41 s / 1.20 s' (p50 / p95 of a phase's successes), or '—'."""
    if not stats or not stats["seconds"]["n"]:
        return "—"
    return f"{seconds(stats['seconds']['p50'])} / {seconds(stats['seconds']['p95'])}"


def burst_phase_table(systems: dict[str, Any]) -> list[str]:
    """Per system and burst size: p50 / p95 of each phase of a launch."""
    rows = [
        "| system | users | " + " | ".join(title for _, title in BURST_PHASES) + " |",
        "|---|---|" + "---|" * len(BURST_PHASES),
    ]
    for entry in systems.values():
        for burst in entry.get("bursts", []):
            if burst.get("skipped") or "phases" not in burst["summary"]:
                continue
            phases = burst["summary"]["phases"]
            cells = " | ".join(_p50_p95(phases.get(name)) for name, _ in BURST_PHASES)
            rows.append(f"| {entry['label']} | {burst['size']} | {cells} |")
    return rows if len(rows) > 2 else []


def burst_cpu_table(systems: dict[str, Any]) -> list[str]:
    """Per system and burst size: where the CPU went, per student, and how busy the cores were."""
    rows = [
        "| system | users | cores busy | hub | proxy | servers, kernels, helpers | "
        "of which students' processes | simulated browsers | CPU-s per student | 95 % had a result after | "
        "until then: cores busy | CPU-s per student |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in systems.values():
        for burst in entry.get("bursts", []):
            cpu = burst.get("cpu")
            if burst.get("skipped") or not cpu:
                continue
            until = cpu.get("busy_until_p95")
            per = cpu.get("per_student_until_p95_s")
            users = cpu.get("users_s")  # absent from results before it was read
            own = "—" if users is None else f"{users:.1f} s ({users / burst['size']:.2f} each)"
            rows.append(
                f"| {entry['label']} | {burst['size']} | {cpu['busy_fraction']:.0%} | {cpu['hub_s']:.1f} s | "
                f"{cpu['proxy_s']:.1f} s | {cpu['rest_s']:.1f} s | "
                f"{own} | "
                f"{cpu['client_s']:.1f} s | "
                f"{cpu['per_student_s']:.2f} | {seconds(cpu.get('p95_since_start_s'))} | "
                f"{'—' if until is None else f'{until:.0%}'} | "
                f"{'—' if per is None else f'{per:.2f}'} |"
            )
    return rows if len(rows) > 2 else []


def live_table(systems: dict[str, Any]) -> list[str]:
    """Per system: live users reached, how many still ran a cell, and what they cost."""
    rows = [
        "| system | live users | still ran a cell | PSS per user (median) | hub | proxy | hub + proxy "
        "| MemAvailable left (safety margin) | stopped by |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in systems.values():
        live = entry.get("live")
        if not live:
            continue
        stopped = live["stopped_by"] or f"the target ({live['target']})"
        left = "—"  # results from before the benchmark recorded it
        if live.get("mem_available_mib") is not None and live.get("margin_mib") is not None:
            left = f"{mib(live['mem_available_mib'])} ({mib(live['margin_mib'])})"
        rows.append(
            f"| {entry['label']} | {live['live']} | {live['cell_ok']}/{live['live']} | "
            f"{mib(live['pss_per_user_mib']['p50'])} | {mib(live['hub_pss_mib'])} | "
            f"{mib(live['proxy_pss_mib'])} | {mib(live['hub_plus_proxy_mib'])} | {left} | "
            f"{stopped.replace('|', '/')} |"
        )
    return rows if len(rows) > 2 else []


def step_cost(step: dict[str, Any] | None) -> str:
    """'41 ms (CPU 3 ms)': an isolation step's mean wall time and its hub thread's CPU, or '—'."""
    if not step:
        return "—"
    return f"{step['seconds'] * 1000:.0f} ms (CPU {step['cpu_s'] * 1000:.0f} ms)"


def cpu_table(systems: dict[str, Any]) -> list[str]:
    """Per system, from the steady-state run (one spawn at a time): CPU of a spawn by whom."""
    rows = [
        "| system | hub CPU-s | user's processes CPU-s (median) | " + " | ".join(ISOLATION_STEPS) + " |",
        "|---|---|---|" + "---|" * len(ISOLATION_STEPS),
    ]
    for entry in systems.values():
        m = entry.get("memory")
        if not m:
            continue
        steps = m.get("isolation", {})
        cells = " | ".join(step_cost(steps.get(name)) for name in ISOLATION_STEPS)
        rows.append(
            f"| {entry['label']} | {_cpu(m['hub_cpu_s_per_spawn'])} | "
            f"{_cpu(m['cpu_s_per_spawn']['p50'])} | {cells} |"
        )
    return rows if len(rows) > 2 else []


def memory_table(systems: dict[str, Any]) -> list[str]:
    """Steady-state memory and CPU per system."""
    rows = [
        "| system | users | PSS per user (median) | hub | proxy | hub + proxy "
        "| CPU-s per spawn (median) | hub CPU-s per spawn |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in systems.values():
        m = entry.get("memory")
        if not m:
            continue
        hub_cpu = m["hub_cpu_s_per_spawn"]
        rows.append(
            f"| {entry['label']} | {m['users']} | {mib(m['pss_per_user_mib']['p50'])} | "
            f"{mib(m['hub_pss_mib'])} | {mib(m['proxy_pss_mib'])} | "
            f"{mib(m['hub_plus_proxy_mib'])} | {_cpu(m['cpu_s_per_spawn']['p50'])} | "
            f"{_cpu(hub_cpu)} |"
        )
    return rows


def _cpu(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_markdown(results: dict[str, Any], level: int = 2) -> str:
    """The whole report; `level` is the heading level of its title."""
    h, options, systems = "#" * level, results.get("options", {}), results.get("systems", {})
    lines = [
        f"{h} Benchmark: stock JupyterHub and coursehub on one machine",
        "",
        machine_line(results.get("machine", {})),
        f"Run {results.get('started_at', '?')}, {seconds(results.get('duration'))} in all.",
        "TTFR (time to first result): spawn request → the server's page (JupyterLab's HTML, through the "
        "OAuth handshake with the hub) → `1+1` answered `2` in a new kernel.",
        "",
    ]
    lines += [f"- **{e['label']}**: did not run: {e['error']}" for e in systems.values() if e["error"]]
    lines += [
        f"{h}# Single user, {options.get('repeat', '?')} launches one after another",
        "",
        *single_table(systems),
        "",
        f"{h}# Bursts: every user launches in the same second",
        "",
        *burst_table(systems),
        "",
    ]
    phases = burst_phase_table(systems)
    if phases:
        lines += [
            f"{h}# Bursts, phase by phase (p50 / p95 of the users that got through each)",
            "",
            "Login through the form, spawn request → the progress stream says ready (the server "
            "answered), the server's page as the browser opens it then (redirected to the hub's OAuth "
            "authorize and back, JupyterLab's HTML), new kernel with its websocket, first `1+1`.",
            "",
            *phases,
            "",
        ]
    cpu_rows = burst_cpu_table(systems)
    if cpu_rows:
        lines += [
            f"{h}# Bursts: where the CPU went",
            "",
            "CPU-seconds over the whole burst (from its start until every student had a first result or "
            "had failed; students keep their servers until then, as a class does, and the stops after are "
            "not counted), "
            "read from /proc: the machine's busy time (share of all cores), the hub with its reaped "
            "children (for stock JupyterHub these include the servers, its children, once they exit), "
            "the proxy, the rest (servers, kernels, fork server, root helpers, the kernel's own work) and "
            "the benchmark's simulated browsers, which a class runs on its own machines; CPU-s per "
            "student leaves the browsers out. Then the time from the burst's start (logins included) until "
            "95 % of the students had their first result, and until then: how busy the cores were, and "
            "the machine's CPU (browsers out) per student with a result by "
            "then. With the cores busy all along, a p95 of T s for N students on C cores needs at most "
            "T × C ÷ (0.95 × N) CPU-s per student.",
            "",
            *cpu_rows,
            "",
        ]
    lines += [
        f"{h}# Steady state: each user with one idle kernel "
        f"({options.get('memory_users', '?')} users arriving at "
        f"{options.get('memory_rate', '?')}/s)",
        "",
        "PSS of every process a user costs: server and kernel (coursehub's fork mode, until "
        "2026-11-30, also a kernel zygote and a root-owned monitor in the server's cgroup, counted; "
        "since then a user has those two processes only); CPU-s of "
        "those processes since their start (spawn, kernel start and one cell).",
        "",
        *memory_table(systems),
    ]
    cpu = cpu_table(systems)
    if cpu:
        lines += [
            "",
            f"{h}# CPU per spawn (steady state, one spawn at a time)",
            "",
            "Hub: the JupyterHub process and its reaped children (useradd, ip…) over the run, per "
            "user; user's processes: those of the memory table since their start; isolation steps "
            "(coursehub only, from its `coursehub_isolation_step_*` metrics): mean wall time of "
            "each step, and the CPU of the hub thread that ran it.",
            "",
            *cpu,
        ]
    live = live_table(systems)
    if live:
        lines += [
            "",
            f"{h}# Live users: as many as fit, each with an idle kernel "
            f"(at most {options.get('live_users', '?')}, arriving at {options.get('live_rate', '?')}/s)",
            "",
            "Users are admitted until the target or until the next one, with the spawns still in "
            "flight, would take MemAvailable under the safety margin (`--live-margin`; by default a tenth "
            "of the machine's memory); then every live user runs `1+1` again in its kernel. PSS as in "
            "the steady-state table; MemAvailable as it was with every live user in.",
            "",
            *live,
        ]
    textbook = textbook_table(systems)
    if textbook:
        lines += [
            "",
            f'{h}# Runnable cells on a web page: "activate" to printed output',
            "",
            "What thebe does after its activate button, through coursehub's Binder API "
            "(`/hub/binder`), without a browser: build event stream → `ready` → new kernel → "
            "one cell → its output. Stock JupyterHub has no Binder API. The benchmark's readers "
            "all come from one address, so its hub allows 100 per repository and 200 per minute "
            "per address (defaults 50 and 60).",
            "",
            *textbook,
        ]
    return "\n".join(lines) + "\n"


def textbook_table(systems: dict[str, Any]) -> list[str]:
    """One reader at a time, and a crowd at once (systems that ran the scenario)."""
    rows = []
    for entry in systems.values():
        t = entry.get("textbook")
        if not t:
            continue
        one, crowd = t["one"], t["crowd"]
        rows.append(
            f"| {entry['label']} | 1 (×{one['readers']}) | {one['ok']}/{one['readers']} | "
            f"{seconds(one['seconds']['p50'])} | {seconds(one['seconds']['max'])} |"
        )
        rows.append(
            f"| {entry['label']} | {crowd['readers']} at once | {crowd['ok']}/{crowd['readers']} | "
            f"{seconds(crowd['seconds']['p50'])} | {seconds(crowd['seconds']['max'])} |"
        )
    if not rows:
        return []
    return ["| system | readers | ok | median | max |", "|---|---|---|---|---|", *rows]


def replace_section(readme: str, section: str) -> str:
    """`readme` with the text between the bench markers replaced by `section`."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < 0 or end < start:
        raise CoursehubError(
            f"the README has no benchmark section: add a line {START} and, below it, a line "
            f"{END} where the results should go"
        )
    return readme[: start + len(START)] + "\n" + section.strip() + "\n" + readme[end:]
