"""The `coursehub` command: parses arguments and prints; the work happens elsewhere."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from . import __version__
from .auth.accounts import AccountStore, Credential
from .auth.cards import write_credentials
from .configfile import dump_settings, find_config, load_settings
from .errors import CoursehubError
from .paths import StatePaths
from .settings import Settings

CONFIG_HELP = "coursehub.yaml to use (default: $COURSEHUB_CONFIG, ./coursehub.yaml, or built-in)."


class State:
    """What every command needs: the settings (validated once) and the state folder."""

    def __init__(self, config: Path | None, state_dir: Path | None) -> None:
        self.config_file = find_config(config)
        self.settings: Settings = load_settings(self.config_file)
        if state_dir is not None:
            self.settings.hub.state_dir = state_dir.resolve()
        self.paths = StatePaths(self.settings.hub.state_dir)


def fail(message: str) -> None:
    """Print an error the user can act on and exit non-zero."""
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(1)


class Group(click.Group):
    """A click group that turns CoursehubError into a clean message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CoursehubError as exc:
            fail(str(exc))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="coursehub")
@click.option("-c", "--config", type=click.Path(path_type=Path, dir_okay=False), help=CONFIG_HELP)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Where the database, secrets and environments live (default: hub.state_dir).",
)
@click.pass_context
def main(ctx: click.Context, config: Path | None, state_dir: Path | None) -> None:
    """Jupyter for classes, workshops and science gateways.

    \b
    Start a hub on this machine:     coursehub up
    Hand out workshop accounts:      coursehub accounts create --count 60 --prefix ws
    Check a config file:             coursehub config check coursehub.yaml
    """
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ctx.obj = (config, state_dir)


def state(ctx: click.Context) -> State:
    """Settings and paths, loaded lazily so `config check` can report errors itself."""
    config, state_dir = ctx.find_root().obj
    return State(config, state_dir)


@main.command()
@click.option("--ip", help="Address to listen on (default: hub.ip, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default 8000).")
@click.pass_context
def up(ctx: click.Context, ip: str | None, port: int | None) -> None:
    """Start the hub, the proxy and the idle culler; Ctrl-C stops them.

    Users' servers keep running across a hub restart and are re-attached;
    `coursehub down` stops them too. Needs root and bubblewrap.
    """
    from . import hubprocess

    st = state(ctx)
    if ip is not None:
        st.settings.hub.ip = ip
    if port is not None:
        st.settings.hub.port = port
    hubprocess.preflight(st.settings)
    prepared = hubprocess.prepare(st.settings, st.paths, click.echo)
    if prepared.admin is not None:
        click.secho(
            "First start: an admin account was created. Write this down, it is shown only once:",
            fg="yellow",
        )
        click.echo(f"    username: {prepared.admin.username}\n    password: {prepared.admin.password}")
    if hubprocess.read_pid(st.paths.hub_pid) is None:
        hubprocess.kill_orphans(st.settings, click.echo)
    hub = hubprocess.start_hub(st.config_file, st.paths, prepared.user_env)
    sys.exit(hubprocess.supervise(hub, st.settings, st.paths, click.echo))


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every user server, then the hub and the proxy."""
    from . import hubprocess

    st = state(ctx)
    hubprocess.down(st.settings, st.paths, click.echo)


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show whether the hub and proxy run, and every user server."""
    from . import hubprocess
    from .settings import format_size

    st = state(ctx)
    hub_pid, proxy_pid, rows = hubprocess.status(st.settings, st.paths)
    url = hubprocess.hub_url(st.settings)
    click.echo(f"hub:   {f'running (pid {hub_pid}) at {url}' if hub_pid else 'stopped'}")
    click.echo(f"proxy: {f'running (pid {proxy_pid})' if proxy_pid else 'stopped'}")
    click.echo(f"servers: {len(rows)}")
    for row in rows:
        state_word = "ready" if row.ready else "starting"
        click.echo(
            f"  {row.user:<24} {row.server or '(default)':<16} {state_word:<9} "
            f"{format_size(row.memory) if row.memory else '-'}"
        )


@main.group(cls=Group)
def config() -> None:
    """Validate and show coursehub.yaml."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), required=False)
@click.pass_context
def config_check(ctx: click.Context, file: Path | None) -> None:
    """Validate FILE (or the config in use) and say what is wrong, with line numbers."""
    path = file or find_config(ctx.find_root().obj[0])
    if path is None:
        click.echo("No config file: the built-in defaults are in use (they are valid).")
        return
    settings = load_settings(path)
    click.echo(f"{path}: OK ({len(settings.courses)} course(s), auth: {settings.auth.type})")


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective settings (file merged over defaults) as YAML."""
    click.echo(dump_settings(state(ctx).settings), nl=False)


@config.command("schema")
def config_schema() -> None:
    """Print the JSON schema of coursehub.yaml (for editors and CI)."""
    import json

    click.echo(json.dumps(Settings.model_json_schema(), indent=2))


@config.command("reference")
def config_reference() -> None:
    """Print the Markdown reference of every setting (the README's is generated from it)."""
    from .reference import render_reference

    click.echo(render_reference())


@main.group(cls=Group)
def accounts() -> None:
    """Pre-generated workshop accounts: create, list, disable, delete, reset."""


def _store(ctx: click.Context) -> tuple[AccountStore, State]:
    st = state(ctx)
    from .runtime import ensure_state_dir

    ensure_state_dir(st.paths)
    return AccountStore(st.paths.accounts), st


def _write_cards(creds: list[Credential], st: State, out: Path | None, stem: str) -> None:
    from .hubprocess import hub_url

    csv_path, html_path = write_credentials(creds, hub_url(st.settings), out or st.paths.cards, stem)
    click.echo(f"Wrote {csv_path} and {html_path} (printable cards); both are 0600.")


@accounts.command("create")
@click.option("--count", type=click.IntRange(1, 5000), required=True, help="How many accounts.")
@click.option("--prefix", required=True, help="Username prefix: esip -> esip-01, esip-02, …")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the CSV and the cards (default: <state>/accounts).",
)
@click.pass_context
def accounts_create(ctx: click.Context, count: int, prefix: str, out: Path | None) -> None:
    """Create COUNT accounts with random passwords; write a CSV and printable cards."""
    store, st = _store(ctx)
    with click.progressbar(length=count, label="Hashing passwords") as bar:
        creds = store.create_batch(prefix, count)
        bar.update(count)
    click.echo(f"Created {len(creds)} accounts: {creds[0].username} … {creds[-1].username}")
    _write_cards(
        creds,
        st,
        out,
        f"{prefix}-{creds[0].username.rsplit('-', 1)[1]}-{creds[-1].username.rsplit('-', 1)[1]}",
    )


@accounts.command("list")
@click.pass_context
def accounts_list(ctx: click.Context) -> None:
    """List accounts with their state (never their passwords)."""
    store, _ = _store(ctx)
    for info in store.list():
        flags = [
            w
            for w, on in (
                ("admin", info.is_admin),
                ("disabled", not info.enabled),
                ("locked", info.locked_until is not None),
            )
            if on
        ]
        click.echo(f"{info.username:<24} {' '.join(flags)}")


@accounts.command("disable")
@click.argument("usernames", nargs=-1, required=True)
@click.pass_context
def accounts_disable(ctx: click.Context, usernames: tuple[str, ...]) -> None:
    """Stop these accounts from logging in (their files stay)."""
    store, _ = _store(ctx)
    for name in usernames:
        store.disable(name)
        click.echo(f"disabled {name}")


@accounts.command("enable")
@click.argument("usernames", nargs=-1, required=True)
@click.pass_context
def accounts_enable(ctx: click.Context, usernames: tuple[str, ...]) -> None:
    """Let disabled accounts log in again."""
    store, _ = _store(ctx)
    for name in usernames:
        store.enable(name)
        click.echo(f"enabled {name}")


@accounts.command("delete")
@click.argument("usernames", nargs=-1, required=True)
@click.pass_context
def accounts_delete(ctx: click.Context, usernames: tuple[str, ...]) -> None:
    """Delete these accounts (their home folders stay until an admin removes them)."""
    store, _ = _store(ctx)
    for name in usernames:
        store.delete(name)
        click.echo(f"deleted {name}")


@accounts.command("reset")
@click.argument("username")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder for the new card (default: <state>/accounts).",
)
@click.pass_context
def accounts_reset(ctx: click.Context, username: str, out: Path | None) -> None:
    """Give USERNAME a new random password (and lift any lockout)."""
    store, st = _store(ctx)
    cred = store.reset(username)
    click.echo(f"{cred.username}: {cred.password}")
    import time

    _write_cards([cred], st, out, f"reset-{username}-{int(time.time())}")


@main.group(cls=Group)
def course() -> None:
    """Courses: add one from a git repo or folder, build it, and share links to it."""


def _print_build_line(line: str) -> None:
    if line.strip():
        click.secho(f"  | {line[:150]}", dim=True)


def _build(st: State, name: str) -> None:
    from .courses.build import build_course
    from .runtime import ensure_state_dir

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
    from .configedit import add_course
    from .configfile import DEFAULT_NAME
    from .courses.content import suggested_name
    from .settings import Course

    st = state(ctx)
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
    path = st.config_file or Path.cwd() / DEFAULT_NAME
    add_course(path, entry)
    click.echo(f"Added to {path}. Link: {_link(st, entry['name'], notebook or '')}")


def _link(st: State, name: str, path: str) -> str:
    from .hubprocess import hub_url
    from .launch.links import launch_link

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
    from .courses.catalog import load_catalog

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

    from .courses.catalog import load_catalog
    from .hubprocess import hub_url
    from .launch.links import tmplogin_link

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
    from .launch.links import parse_path

    st = state(ctx)
    if name not in {c.name for c in st.settings.courses}:
        raise CoursehubError(f"no course called '{name}': see `coursehub course list`")
    click.echo(_link(st, name, parse_path(path)))


@course.command("remove")
@click.argument("name")
@click.pass_context
def course_remove(ctx: click.Context, name: str) -> None:
    """Remove NAME from coursehub.yaml and the catalog (students' copies stay in their homes)."""
    from .configedit import remove_course
    from .courses.catalog import remove_record

    st = state(ctx)
    if st.config_file is None:
        raise CoursehubError("no coursehub.yaml in use: nothing to remove from")
    remove_course(st.config_file, name)
    remove_record(st.paths.courses, name)
    click.echo(f"Removed course {name}.")


def _register_plugins() -> None:
    """Commands that live in their own modules."""
    from .commands.kubernetes import image as course_image_command
    from .commands.kubernetes import render

    main.add_command(render)
    course.add_command(course_image_command)


_register_plugins()

if __name__ == "__main__":
    main()
