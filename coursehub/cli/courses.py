"""`coursehub course …`: add a course from a repo, build it, and share links to it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from coursehub.cli.base import Group, State, state
from coursehub.errors import CoursehubError


@click.group(cls=Group)
def course() -> None:
    """Courses: add one from a git repo or folder, build it, and share links to it."""


def _print_build_line(line: str) -> None:
    if line.strip():
        click.secho(f"  | {line[:150]}", dim=True)


def _build(st: State, name: str) -> None:
    from coursehub.courses.build import build_course
    from coursehub.host.runtime import ensure_state_dir

    ensure_state_dir(st.paths)
    match = [c for c in st.settings.courses if c.name == name]
    if not match:
        raise CoursehubError(f"no course called '{name}' in the config: see `coursehub course list`")
    click.echo(f"Building course {name} (content, then its environment with uv)…")
    record = build_course(match[0], st.settings, st.paths, on_line=_print_build_line)
    for note in record.notes:
        click.secho(f"note: {note}", fg="yellow")
    click.secho(f"Course {name} is ready ({record.build_seconds:.0f} s).", fg="green")


@course.command("add")
@click.argument("repo")
@click.option("--name", help="Short name for links (default: from the repo).")
@click.option("--ref", default="HEAD", show_default=True, help="Branch, tag or commit.")
@click.option("--title", default="", help="Human-readable title.")
@click.option(
    "--access",
    default="accounts",
    show_default=True,
    help="'open' (temporary users), 'accounts', or a comma-separated roster.",
)
@click.option("--notebook", default=None, help="Notebook a bare launch link opens.")
@click.pass_context
def course_add(
    ctx: click.Context, repo: str, name: str | None, ref: str, title: str, access: str, notebook: str | None
) -> None:
    """Add a course from REPO (git URL or folder): build it, then record it in coursehub.yaml.

    A failed build changes nothing: the config and the courses in service stay as they were.
    """
    from coursehub.courses.content import suggested_name
    from coursehub.settings import Course
    from coursehub.settings.edit import add_course

    st = state(ctx, creating=True)
    entry: dict[str, Any] = {"name": name or suggested_name(repo), "repo": repo}
    if ref != "HEAD":
        entry["ref"] = ref
    if title:
        entry["title"] = title
    if access != "accounts":
        entry["access"] = access if access == "open" else access.split(",")
    if notebook:
        entry["default_notebook"] = notebook
    Course.model_validate(entry)
    if any(c.name == entry["name"] for c in st.settings.courses if st.config_file):
        raise CoursehubError(f"there is already a course called '{entry['name']}'")
    st.settings.courses = [*(st.settings.courses if st.config_file else []), Course(**entry)]
    _build(st, entry["name"])
    created = not st.config_path.exists()
    add_course(st.config_path, entry)
    verb = "Created" if created else "Added to"
    click.echo(f"{verb} {st.config_path}. Link: {_link(st, entry['name'], notebook or '')}")


def _link(st: State, name: str, path: str) -> str:
    from coursehub.host.hubprocess import hub_url
    from coursehub.launch.links import launch_link

    return launch_link(hub_url(st.settings), name, path)


@course.command("build")
@click.argument("name")
@click.pass_context
def course_build(ctx: click.Context, name: str) -> None:
    """Fetch NAME's content and rebuild its environment; running servers keep theirs."""
    _build(state(ctx), name)


@course.command("update")
@click.argument("name")
@click.pass_context
def course_update(ctx: click.Context, name: str) -> None:
    """Pull NAME's latest content (and environment); students get it at their next start."""
    _build(state(ctx), name)


@course.command("list")
@click.pass_context
def course_list(ctx: click.Context) -> None:
    """Every course with its access, state and last build time."""
    from coursehub.courses.catalog import load_catalog

    st = state(ctx)
    records = load_catalog(st.paths.courses)
    for c in st.settings.courses:
        record = records.get(c.name)
        if record is None or not record.ready:
            what = "not built: run `coursehub course build " + c.name + "`"
        else:
            what = f"ready, built in {record.build_seconds:.0f} s"
        if record is not None and record.last_error:
            what += " (last build FAILED: see `coursehub course show " + c.name + "`)"
        access = c.access if isinstance(c.access, str) else f"roster of {len(c.access)}"
        click.echo(f"{c.name:<20} {access:<12} {what}")


@course.command("show")
@click.argument("name")
@click.pass_context
def course_show(ctx: click.Context, name: str) -> None:
    """NAME's settings, what is in service, and its links."""
    import json
    from dataclasses import asdict

    from coursehub.courses.catalog import load_catalog
    from coursehub.host.hubprocess import hub_url
    from coursehub.launch.links import tmplogin_link

    st = state(ctx)
    match = [c for c in st.settings.courses if c.name == name]
    if not match:
        raise CoursehubError(f"no course called '{name}': see `coursehub course list`")
    click.echo(match[0].model_dump_json(indent=2, exclude_none=True))
    record = load_catalog(st.paths.courses).get(name)
    click.echo(json.dumps(asdict(record), indent=2) if record else "(not built yet)")
    click.echo(f"link: {_link(st, name, match[0].default_notebook or '')}")
    if match[0].access == "open":
        click.echo(f"guest link: {tmplogin_link(hub_url(st.settings), name)}")


@course.command("link")
@click.argument("name")
@click.argument("path", default="")
@click.pass_context
def course_link(ctx: click.Context, name: str, path: str) -> None:
    """Print the link that opens PATH of course NAME for a student."""
    from coursehub.launch.links import parse_path

    st = state(ctx)
    if name not in {c.name for c in st.settings.courses}:
        raise CoursehubError(f"no course called '{name}': see `coursehub course list`")
    click.echo(_link(st, name, parse_path(path)))


@course.command("gc")
@click.option("--dry-run", is_flag=True, help="List what would be removed; remove nothing.")
@click.pass_context
def course_gc(ctx: click.Context, dry_run: bool) -> None:
    """Remove environments that no course uses and no server runs from.

    Each change of a course's requirements builds a new environment (~300 MiB) and keeps the old one
    for the servers still running on it. `up` runs this too; running servers always keep theirs.
    """
    from coursehub.courses.environments import find_user_python, stack_spec
    from coursehub.courses.gc import collect

    st = state(ctx)
    stack = stack_spec(str(find_user_python(st.settings.sandbox.python))).digest
    removed = collect(st.paths, keep={stack}, dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    for unused, size in removed:
        click.echo(f"{verb} {st.paths.envs / unused.name} ({size / 2**20:.0f} MiB): {unused.why}")
    total = sum(size for _, size in removed) / 2**20
    summary = f"{verb} {len(removed)} environment folder(s), {total:.0f} MiB."
    click.echo(summary if removed else "Nothing to remove.")


@course.command("remove")
@click.argument("name")
@click.pass_context
def course_remove(ctx: click.Context, name: str) -> None:
    """Remove NAME from coursehub.yaml and the catalog (students' copies stay in their homes)."""
    from coursehub.courses.build import forget_course
    from coursehub.settings.edit import remove_course

    st = state(ctx)
    if st.config_file is None:
        raise CoursehubError("no coursehub.yaml in use: nothing to remove from")
    remove_course(st.config_file, name)
    forget_course(st.paths, name)
    click.echo(f"Removed course {name}.")


@course.command("grades")
@click.argument("name")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the CSV to this file (0600) instead of standard output.",
)
@click.pass_context
def course_grades(ctx: click.Context, name: str, csv_file: Path | None) -> None:
    """Export the nbgrader gradebook of NAME: CSV columns username,assignment,score,max_score."""
    from coursehub.courses.gradebook import grades_csv, read_gradebook
    from coursehub.courses.grading import GradingPaths

    st = state(ctx)
    match = [c for c in st.settings.courses if c.name == name]
    if not match:
        raise CoursehubError(f"no course called '{name}' in the config: see `coursehub course list`")
    if match[0].grading != "nbgrader":
        raise CoursehubError(f"course '{name}' does not grade with nbgrader (courses[].grading: nbgrader)")
    rows, unmapped = read_gradebook(
        GradingPaths(st.paths.root, name).gradebook, _unix_to_hub_names(st, match[0])
    )
    for student in unmapped:
        click.secho(
            f"warning: {student} is no hub user this hub knows; shown as nbgrader's id", fg="yellow", err=True
        )
    text = grades_csv(rows)
    if csv_file is None:
        click.echo(text, nl=False)
        return
    fd = os.open(csv_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    click.echo(f"Wrote {len(rows)} grade(s) of {name} to {csv_file}.", err=True)


def _unix_to_hub_names(st: State, course: Any) -> dict[str, str]:
    """nbgrader's student ids (servers' Unix names) -> hub usernames: the roster's, and the hub's users."""
    from coursehub.clients.hubapi import HubAPI
    from coursehub.host.hubprocess import read_pid, running_url
    from coursehub.host.runtime import ensure_secret
    from coursehub.spawner.accounts import unix_name

    names = [
        n
        for n in (*course.staff, *(course.access if isinstance(course.access, list) else []))
        if ":" not in n
    ]
    if read_pid(st.paths.hub_pid) is not None:
        try:
            api = HubAPI(running_url(st.settings, st.paths), ensure_secret(st.paths.cli_token))
            names += [user["name"] for user in api.users()]
        except (OSError, CoursehubError, ValueError) as exc:
            click.secho(f"warning: the hub's users could not be listed ({exc}): the roster only", err=True)
    prefix = st.settings.sandbox.user_prefix
    return {unix_name(n, prefix): n for n in names}
