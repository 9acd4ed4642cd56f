"""Benchmark results as Markdown, and the README section regenerated from them (pure)."""

from __future__ import annotations

from typing import Any

from coursehub.errors import CoursehubError

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
        "| system | users | ok | TTFR p50 | p95 | max | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in systems.values():
        for burst in entry.get("bursts", []):
            if burst.get("skipped"):
                rows.append(
                    f"| {entry['label']} | {burst['size']} | skipped | — | — | — | {burst['skipped']} |"
                )
                continue
            s, t = burst["summary"], burst["summary"]["ttfr"]
            rows.append(
                f"| {entry['label']} | {burst['size']} | {s['ok']}/{s['users']} | "
                f"{seconds(t['p50'])} | {seconds(t['p95'])} | {seconds(t['max'])} | "
                f"{_errors(s['errors'])} |"
            )
    return rows


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
        "TTFR (time to first result): spawn request → `1+1` answered `2` in a new kernel.",
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
        f"{h}# Steady state: each user with one idle kernel "
        f"({options.get('memory_users', '?')} users arriving at "
        f"{options.get('memory_rate', '?')}/s)",
        "",
        "PSS of every process a user costs: server and kernel (coursehub's fork mode adds a "
        "kernel zygote and a root-owned monitor in the server's cgroup, both counted); CPU-s of "
        "those processes since their start (spawn, kernel start and one cell).",
        "",
        *memory_table(systems),
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
