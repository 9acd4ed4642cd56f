"""`coursehub loadtest` and `coursehub plan`: parse, call, print."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from coursehub.cli.bench import _emit, _interrupt  # timestamped progress lines; SIGTERM stops like Ctrl-C
from coursehub.errors import CoursehubError

if TYPE_CHECKING:
    from coursehub.tools.loadtest import RunResult


def _size(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from coursehub.settings.base import parse_size

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(f"{exc} (e.g. 2G or 512M)") from None


def _share_range(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    """'0.4-0.6', '40-60' (percent) or a single share."""
    try:
        parts = [float(p.strip().rstrip("%")) for p in value.split("-")]
    except ValueError:
        raise click.BadParameter(
            f"expected a share or a range, e.g. 0.4-0.6 or 40-60, not {value!r}"
        ) from None
    if len(parts) not in (1, 2):
        raise click.BadParameter(f"expected a share or a range, e.g. 0.4-0.6, not {value!r}")
    shares = [p / 100 if p > 1 else p for p in parts]
    return (shares[0], shares[-1])


@click.command()
@click.argument("hub_url")
@click.option(
    "--accounts",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="CSV of workshop accounts (username,password), as `coursehub accounts create` writes.",
)
@click.option("--dummy", type=click.IntRange(1, 5000), help="N users for a hub with the dummy authenticator.")
@click.option(
    "--tmplogin",
    "guest_course",
    metavar="COURSE",
    help="Temporary users through /hub/tmplogin links to this open coursehub course.",
)
@click.option(
    "--users",
    type=click.IntRange(1, 5000),
    help="How many students (with --tmplogin; with --accounts: the first N).",
)
@click.option(
    "--password", default="", help="Password of the --dummy users (the hub's DummyAuthenticator.password)."
)
@click.option("--prefix", default="loadtest", show_default=True, help="Username prefix of --dummy users.")
@click.option(
    "--server", default="", help="Start this named server (on coursehub: a course) instead of the default."
)
@click.option(
    "--ramp",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds over which students arrive, evenly (0: all at once).",
)
@click.option(
    "--session",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds each student keeps the kernel after the first result.",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="During the session, run code this often (0: stay idle).",
)
@click.option("--code", default="1+1", show_default=True, help="Code each student runs.")
@click.option("--expected", default="2", show_default=True, help="Its expected result (execute_result text).")
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=600,
    show_default=True,
    help="Seconds the whole run may take; then students stop and their servers are stopped.",
)
@click.option(
    "--http-timeout",
    type=click.FloatRange(min=1),
    default=30,
    show_default=True,
    help="Seconds any single HTTP call may take.",
)
@click.option(
    "--progress-every",
    type=click.FloatRange(min=0.5),
    default=5,
    show_default=True,
    help="Seconds between progress lines.",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write every student's phases and the summary here.",
)
@click.option(
    "--png",
    "png_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write a timeline of students in each phase here (needs matplotlib).",
)
def loadtest(
    hub_url: str,
    accounts: Path | None,
    dummy: int | None,
    guest_course: str | None,
    users: int | None,
    password: str,
    prefix: str,
    server: str,
    ramp: float,
    session: float,
    interval: float,
    code: str,
    expected: str,
    time_limit: float,
    http_timeout: float,
    progress_every: float,
    json_out: Path | None,
    png_out: Path | None,
) -> None:
    """Simulated students against the hub at HUB_URL (any JupyterHub; coursehub or stock).

    \b
    Each student logs in, starts a server, opens a kernel, runs code, optionally keeps a
    session running code at intervals, then deletes the kernel and stops the server.
    Choose the students with exactly one of --accounts, --dummy or --tmplogin.
    Exits 1 when any student did not get its result.
    """
    from coursehub.tools.loadtest import LoadConfig, run_load_test, summarize
    from coursehub.tools.loadtest.report import summary_lines
    from coursehub.tools.loadtest.sources import choose_students

    try:
        students = choose_students(accounts, dummy, guest_course, users, password, prefix)
    except CoursehubError as exc:
        raise click.UsageError(str(exc)) from exc
    config = LoadConfig(
        hub_url=hub_url,
        arrival_rate=(len(students) - 1) / ramp if ramp and len(students) > 1 else 0.0,
        session_seconds=session,
        code_interval=interval,
        code=code,
        expected=expected,
        time_limit=time_limit,
        http_timeout=http_timeout,
        progress_every=progress_every,
        server=server,
        guest_course=guest_course or "",
    )
    _emit(f"{len(students)} students against {hub_url} (time limit {time_limit:.0f} s)")
    signal.signal(signal.SIGTERM, _interrupt)
    run = run_load_test(config, students, progress=_emit)
    summary = summarize(run)
    click.echo("\n".join(summary_lines(summary)))
    if json_out is not None:
        json_out.write_text(json.dumps({"summary": summary, "run": run.to_dict()}, indent=1) + "\n")
        click.echo(f"wrote {json_out}")
    if png_out is not None:
        _write_png(run, png_out)
    if summary["failed"]:
        sys.exit(1)


def _write_png(run: RunResult, path: Path) -> None:
    from coursehub.tools.loadtest.timeline import write_timeline

    try:
        write_timeline(run, path)
    except ImportError:  # matplotlib is optional (the `ops` extra)
        click.secho("matplotlib is not installed: no PNG (pip install matplotlib)", fg="yellow", err=True)
        return
    click.echo(f"wrote {path}")


@click.command()
@click.option("--students", type=int, required=True, help="Class size.")
@click.option("--memory", required=True, callback=_size, help="Memory one student's work needs, e.g. 2G.")
@click.option("--cpu", type=float, default=0.5, show_default=True, help="Cores one active student uses.")
@click.option(
    "--concurrency",
    default="0.4-0.6",
    show_default=True,
    callback=_share_range,
    help="Share of the class at once (a range; sizes use its top).",
)
@click.option(
    "--arrival-rate",
    type=float,
    default=1.0,
    show_default=True,
    help="Students arriving per second at the start of class.",
)
@click.option(
    "--node-boot",
    type=float,
    default=300,
    show_default=True,
    help="Seconds a new Kubernetes node takes to accept pods.",
)
@click.option(
    "--max-waiting",
    type=float,
    default=0.3,
    show_default=True,
    help="Share of the class that may wait for a new node.",
)
@click.option(
    "--prices",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Price table (default: the example one shipped with coursehub).",
)
@click.option(
    "--bench",
    "bench_results",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("bench-results/results.json"),
    show_default=True,
    help="Benchmark results with the measured per-user overhead (used when present).",
)
@click.option(
    "--yaml",
    "yaml_out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Also write the settings to merge into coursehub.yaml here ('-': standard output).",
)
def plan(
    students: int,
    memory: int,
    cpu: float,
    concurrency: tuple[float, float],
    arrival_rate: float,
    node_boot: float,
    max_waiting: float,
    prices: Path | None,
    bench_results: Path,
    yaml_out: Path | None,
) -> None:
    """How big a machine, or how many Kubernetes nodes, a class needs, and what it costs."""
    from coursehub.tools.plan import PlanInputs, make_plan
    from coursehub.tools.planfiles import PRICES, load_prices, overhead_from_bench
    from coursehub.tools.planreport import plan_yaml, table_lines

    inputs = PlanInputs(
        students=students,
        memory=memory,
        cpu=cpu,
        concurrency=concurrency,
        arrival_rate=arrival_rate,
        node_boot_seconds=node_boot,
        max_waiting=max_waiting,
    )
    try:
        result = make_plan(inputs, load_prices(prices or PRICES), overhead_from_bench(bench_results))
    except CoursehubError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo("\n".join(table_lines(result)))
    if yaml_out is None:
        return
    text = plan_yaml(result)
    if str(yaml_out) == "-":
        click.echo("\n" + text, nl=False)
    else:
        yaml_out.write_text(text, encoding="utf-8")
        click.echo(f"wrote {yaml_out}: merge it into coursehub.yaml, then `coursehub render kubernetes`")
