"""The `coursehub` command: parses arguments and prints; the work happens elsewhere."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from coursehub import __version__
from coursehub.auth.accounts import AccountStore, Credential
from coursehub.auth.cards import write_credentials
from coursehub.cli.base import CONFIG_HELP, Group, State, state
from coursehub.errors import CoursehubError
from coursehub.settings import Settings
from coursehub.settings.yamlfile import CONFIG_HOME, dump_settings, find_config, load_settings


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


def _print_admin(admin: Credential | None) -> None:
    if admin is not None:
        click.secho(
            "First start: an admin account was created. Write this down, it is shown only once:",
            fg="yellow",
        )
        click.echo(f"    username: {admin.username}\n    password: {admin.password}")


@main.command()
@click.option("--ip", help="Address to listen on (default: hub.ip, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Port to listen on (default 8000).")
@click.option(
    "--front-end/--no-front-end",
    default=True,
    show_default=True,
    help="Start the TLS front end when tls: is set (the systemd service runs it as a unit of its own).",
)
@click.pass_context
def up(ctx: click.Context, ip: str | None, port: int | None, front_end: bool) -> None:
    """Start the hub, the proxy and the idle culler; Ctrl-C stops them.

    Users' servers keep running across a hub restart and are re-attached;
    `coursehub down` stops them too; `coursehub reload` applies a changed config.
    Needs root and bubblewrap.
    """
    from coursehub.host import hubprocess
    from coursehub.host.caddyfile import certificate_warning
    from coursehub.hubconfig.origins import plain_http_warning, shared_origin_warning

    def load() -> Settings:
        settings = state(ctx).settings
        if ip is not None:
            settings.hub.ip = ip
        if port is not None:
            settings.hub.port = port
        return settings

    st = state(ctx)
    st.settings = load()
    hubprocess.preflight(st.settings)
    if warning := plain_http_warning(st.settings):
        click.secho(warning, fg="red", bold=True, err=True)
    if warning := shared_origin_warning(st.settings):
        click.secho(warning, fg="yellow", err=True)
    if warning := certificate_warning(st.settings):
        click.secho(warning, fg="yellow", err=True)
    hubprocess.use_service_cgroups(st.paths, click.echo)
    prepared = hubprocess.prepare(st.settings, st.paths, click.echo)
    _print_admin(prepared.admin)
    if hubprocess.read_pid(st.paths.hub_pid) is None:
        hubprocess.kill_orphans(st.settings, click.echo)

    def reload() -> tuple[Settings, Path]:
        """The new settings, checked and prepared while the old hub still serves."""
        new = load()
        if new.hub.state_dir.resolve() != st.settings.hub.state_dir.resolve():
            raise CoursehubError("hub.state_dir changed: a reload keeps the state folder; restart instead")
        hubprocess.preflight(new)
        ready = hubprocess.prepare(new, st.paths, click.echo, sweep_cgroups=False)
        _print_admin(ready.admin)
        if front_end and hubprocess.front_end_changed(new, st.paths):
            hubprocess.start_front_end(new, st.paths, click.echo)  # replaces the running one
        return new, ready.user_env

    hub = hubprocess.start_hub(st.settings, st.paths, prepared.user_env)
    try:
        if front_end:
            hubprocess.start_front_end(st.settings, st.paths, click.echo)
        code = hubprocess.supervise(hub, st.settings, st.paths, click.echo, reload)
    except BaseException:
        hub.terminate()  # no hub without the front end the config asks for
        hub.wait(60)
        raise
    finally:
        st.paths.up_pid.unlink(missing_ok=True)
        if front_end:
            hubprocess.stop_front_end(st.paths, click.echo)
    sys.exit(code)


@main.command()
@click.option(
    "--timeout", type=click.IntRange(10, 3600), default=900, show_default=True, help="Seconds to wait."
)
@click.pass_context
def reload(ctx: click.Context, timeout: int) -> None:
    """Apply the config to the running hub; users' servers and kernels keep running.

    The config is checked first (nothing happens if it is invalid); then `coursehub up` prepares it
    (new courses are built) while the old hub serves, and restarts only the hub process.
    """
    from coursehub.host import hubprocess
    from coursehub.hubconfig.pipeline import check

    st = state(ctx)
    check(st.settings)
    click.echo("Reloading (new courses are built first)…")
    hubprocess.request_reload(st.settings, st.paths, timeout)
    click.secho(f"Reloaded: the hub runs with {st.config_file or 'the built-in default'}.", fg="green")


@main.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop every user server, then the hub and the proxy."""
    from coursehub.host import hubprocess

    st = state(ctx)
    hubprocess.down(st.settings, st.paths, click.echo)


@main.command()
@click.pass_context
def status(ctx: click.Context) -> None:
    """Show whether the hub and proxy run, and every user server (memory; home use against its quota)."""
    from coursehub.host import hubprocess
    from coursehub.settings import format_size

    st = state(ctx)
    hub_pid, proxy_pid, rows = hubprocess.status(st.settings, st.paths)
    url = hubprocess.running_url(st.settings, st.paths)
    click.echo(f"hub:   {f'running (pid {hub_pid}) at {url}' if hub_pid else 'stopped'}")
    click.echo(f"proxy: {f'running (pid {proxy_pid})' if proxy_pid else 'stopped'}")
    click.echo(f"servers: {len(rows)}")
    for row in rows:
        state_word = "ready" if row.ready else "starting"
        disk = f"  home {disk_use(row.disk_used, row.disk_limit)}" if row.disk_limit else ""
        click.echo(
            f"  {row.user:<24} {row.server or '(default)':<16} {state_word:<9} "
            f"{format_size(row.memory) if row.memory else '-'}{disk}"
        )


def disk_use(used: int, limit: int) -> str:
    """'1.2G of 5.0G (24 %)': a home's use against its quota."""
    gib = 1024**3
    return f"{used / gib:.2f}G of {limit / gib:.2f}G ({100 * used / limit:.0f} %)"


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
        click.echo(f"No config  ({CONFIG_HOME} does not exist): the built-in defaults are in use.")
        return
    settings = load_settings(path)
    from coursehub.hubconfig.pipeline import check

    check(settings)  # what only the built config shows: the `jupyterhub:` section's names and merges
    click.echo(f"{path}: OK ({len(settings.courses)} course(s), auth: {settings.auth.type})")


@config.command("show")
@click.pass_context
def config_show(ctx: click.Context) -> None:
    """Print the effective settings (file merged over defaults) as YAML."""
    click.echo(dump_settings(state(ctx).settings), nl=False)


@config.command("set")
@click.argument("key")
@click.argument("value")
@click.pass_context
def config_set(ctx: click.Context, key: str, value: str) -> None:
    """Set KEY (dotted: limits.memory, courses.<name>.title) to VALUE (read as YAML) in the config.

    The new file is validated first: an invalid key or value is refused, naming the key, and nothing
    changes. Comments and order are kept. `coursehub reload` applies it to a running hub.
    """
    from coursehub.settings.edit import parse_value, set_value

    st = state(ctx, creating=True)
    set_value(st.config_path, key, parse_value(value))
    click.echo(f"{key} set in {st.config_path}; `coursehub reload` applies it to a running hub.")


@config.command("unset")
@click.argument("key")
@click.pass_context
def config_unset(ctx: click.Context, key: str) -> None:
    """Remove KEY (dotted) from the config, so that its default applies again."""
    from coursehub.settings.edit import unset_value

    st = state(ctx, creating=True)
    unset_value(st.config_path, key)
    click.echo(f"{key} removed from {st.config_path}; `coursehub reload` applies it to a running hub.")


@config.command("schema")
def config_schema() -> None:
    """Print the JSON schema of coursehub.yaml (for editors and CI)."""
    import json

    click.echo(json.dumps(Settings.model_json_schema(), indent=2))


@config.command("reference")
def config_reference() -> None:
    """Print the Markdown reference of every setting (the README's is generated from it)."""
    from coursehub.settings.reference import render_reference

    click.echo(render_reference())


@main.group(cls=Group)
def accounts() -> None:
    """Pre-generated workshop accounts: create, list, disable, delete, reset."""


def _store(ctx: click.Context) -> tuple[AccountStore, State]:
    st = state(ctx)
    from coursehub.host.runtime import ensure_state_dir

    ensure_state_dir(st.paths)
    return AccountStore(st.paths.accounts), st


def _revoke(store: AccountStore, st: State) -> None:
    """End the changed accounts' hub sessions, tokens and servers now, or say when it will happen."""
    from coursehub.clients.hubapi import HubAPI
    from coursehub.host.hubprocess import read_pid, revoke_pending, running_url
    from coursehub.host.runtime import ensure_secret

    if not store.pending_revocations():
        return
    if read_pid(st.paths.hub_pid) is None:
        click.echo("The hub is not running: their sessions, tokens and servers end when it starts.")
        return
    api = HubAPI(running_url(st.settings, st.paths), ensure_secret(st.paths.cli_token))
    revoke_pending(store, api, click.echo)


def _write_cards(creds: list[Credential], st: State, out: Path | None, stem: str) -> None:
    from coursehub.host.hubprocess import hub_url

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


def _bulk_account_command(verb: str, past: str, doc: str) -> None:
    """Register `accounts <verb> NAME...`, which calls AccountStore.<verb> on each name."""

    @accounts.command(verb, help=doc)
    @click.argument("usernames", nargs=-1, required=True)
    @click.pass_context
    def command(ctx: click.Context, usernames: tuple[str, ...]) -> None:
        store, st = _store(ctx)
        for name in usernames:
            getattr(store, verb)(name)
            click.echo(f"{past} {name}")
        _revoke(store, st)


_bulk_account_command(
    "disable", "disabled", "Stop these accounts from logging in and end their sessions (their files stay)."
)
_bulk_account_command("enable", "enabled", "Let disabled accounts log in again.")
_bulk_account_command(
    "delete",
    "deleted",
    "Delete these accounts and end their sessions; their names are never reissued, their home folders "
    "stay until an admin removes them.",
)


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
    _revoke(store, st)
    import time

    _write_cards([cred], st, out, f"reset-{username}-{int(time.time())}")


def _register_plugins() -> None:
    """Commands that live in their own modules."""
    from coursehub.cli.backup import backup, restore
    from coursehub.cli.bench import bench
    from coursehub.cli.courses import course
    from coursehub.cli.kubernetes import image as course_image_command
    from coursehub.cli.kubernetes import render
    from coursehub.cli.lti_grades import lti_grades
    from coursehub.cli.ops import loadtest, plan
    from coursehub.cli.service import front_end, install, uninstall

    main.add_command(loadtest)
    main.add_command(plan)
    main.add_command(course)
    main.add_command(render)
    main.add_command(bench)
    main.add_command(backup)
    main.add_command(restore)
    main.add_command(install)
    main.add_command(uninstall)
    main.add_command(front_end)
    course.add_command(course_image_command)
    course.add_command(lti_grades)


_register_plugins()

if __name__ == "__main__":
    main()
