"""`coursehub bench`: stock JupyterHub and coursehub side by side; parse, call, print."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import click

from coursehub.errors import CoursehubError
from coursehub.tools.bench.configs import SYSTEMS


def _ints(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected numbers separated by commas, not {value!r}") from None
    if any(size < 1 for size in sizes):
        raise click.BadParameter("every size must be at least 1")
    return sizes


def _systems(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in SYSTEMS]
    if unknown or not names:
        raise click.BadParameter(f"choose among {', '.join(SYSTEMS)} (got {value!r})")
    return names


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM cleans up like Ctrl-C: every hub, proxy, server and account is removed."""
    raise KeyboardInterrupt


def _emit(line: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {line}", err=True)


@click.group(invoke_without_command=True)
@click.option(
    "--systems",
    default=",".join(SYSTEMS),
    callback=_systems,
    show_default=True,
    help="Systems to run, in this order.",
)
@click.option(
    "--sizes",
    default="20,50,100,200,400",
    callback=_ints,
    show_default=True,
    help="Burst sizes: users launching in the same second.",
)
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Single-user launches, one after another.",
)
@click.option(
    "--memory-users",
    type=click.IntRange(1),
    default=10,
    show_default=True,
    help="Users holding an idle kernel while memory is measured.",
)
@click.option(
    "--memory-rate",
    type=click.FloatRange(min=0),
    default=0.2,
    show_default=True,
    help="Their arrivals per second (0: all at once).",
)
@click.option(
    "--live-users",
    type=click.IntRange(0),
    default=400,
    show_default=True,
    help="Live users at most, each with an idle kernel (0: skip); fewer when memory runs short.",
)
@click.option(
    "--live-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Live users' arrivals per second.",
)
@click.option(
    "--live-margin",
    type=click.FloatRange(min=0),
    default=0,
    help="MiB of MemAvailable to keep free: a live user is admitted only if it and the spawns "
    "still in flight fit above it, and a burst is run only if its users do "
    "(default: a tenth of the machine's memory, at least 2048).",
)
@click.option(
    "--readers",
    type=click.IntRange(0),
    default=50,
    show_default=True,
    help="Textbook readers activating runnable cells at once (coursehub only; 0: skip).",
)
@click.option(
    "--time-limit",
    type=click.FloatRange(min=1),
    default=900,
    show_default=True,
    help="Seconds one load run (a burst, a launch) may take before it stops itself.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("bench-results"),
    show_default=True,
    help="Folder for the results.",
)
@click.pass_context
def bench(
    ctx: click.Context,
    systems: tuple[str, ...],
    sizes: tuple[int, ...],
    repeat: int,
    memory_users: int,
    memory_rate: float,
    live_users: int,
    live_rate: float,
    live_margin: float,
    readers: int,
    time_limit: float,
    out: Path,
) -> None:
    """Benchmark stock JupyterHub and coursehub on this machine (needs root).

    \b
    Runs single-user launches, a steady-state memory measurement, as many live users
    as the machine's memory holds (each must still run a cell) and bursts against each
    system, then textbook readers through coursehub's Binder API, and writes
    OUT/results.json, results.md and ttfr.png.
    `coursehub bench readme README.md --from OUT/results.json` updates the README.
    """
    if ctx.invoked_subcommand is not None:
        return
    from coursehub.tools.bench.runner import Bench, BenchOptions, write_outputs
    from coursehub.tools.bench.scenarios import ScenarioOptions

    scenarios = ScenarioOptions(
        repeat=repeat,
        sizes=sizes,
        memory_users=memory_users,
        memory_rate=memory_rate,
        live_users=live_users,
        live_rate=live_rate,
        live_margin_mib=live_margin,
        readers=readers,
        reader_repeat=min(repeat, 5),
        time_limit=time_limit,
    )
    runner = Bench(BenchOptions(systems=systems, scenarios=scenarios, out=out), _emit)
    interrupted = False
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        runner.run()
    except KeyboardInterrupt:
        interrupted = True
        runner.results["interrupted"] = True
        _emit("interrupted: every hub was stopped; writing what was measured so far")
    for path in write_outputs(runner.results, out):
        click.echo(f"wrote {path}")
    if interrupted:
        sys.exit(130)


@bench.command("readme")
@click.argument("readme", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option(
    "--from",
    "source",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=Path("bench-results/results.json"),
    show_default=True,
    help="results.json of a benchmark run.",
)
def readme_command(readme: Path, source: Path) -> None:
    """Regenerate README's section between <!-- bench:start --> and <!-- bench:end -->."""
    from coursehub.tools.bench.report import render_markdown, replace_section
    from coursehub.tools.bench.runner import load_results

    try:
        section = render_markdown(load_results(source), level=3)
        readme.write_text(replace_section(readme.read_text(), section))
    except CoursehubError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"updated the benchmark section of {readme} from {source}")
