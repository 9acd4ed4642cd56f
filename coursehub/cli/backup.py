"""`coursehub backup FILE` and `coursehub restore FILE`."""

from __future__ import annotations

from pathlib import Path

import click

from coursehub.cli.base import state


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.pass_context
def backup(ctx: click.Context, file: Path) -> None:
    """Save the hub database, workshop accounts, cookie secret, course catalog and settings to FILE.

    Also the grading courses' nbgrader folders (gradebooks included), the LTI grade store and
    the LTI tool key. One gzipped tar, mode 0600. SQLite is copied with its backup API,
    PostgreSQL with pg_dump; both are consistent while the hub runs. Course environments are
    not included: `coursehub up` rebuilds them.
    """
    from coursehub.host.backup import create_backup
    from coursehub.host.database import resolve_url
    from coursehub.settings.yamlfile import dump_settings

    st = state(ctx)
    settings_yaml = st.config_file.read_text() if st.config_file else dump_settings(st.settings)
    summary = create_backup(st.paths, resolve_url(st.settings, st.paths), settings_yaml, file)
    click.echo(f"Wrote {summary.archive} (0600; {summary.database}): {', '.join(summary.members)}")


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--force", is_flag=True, help="Replace the state of a (stopped) hub that already has some.")
@click.pass_context
def restore(ctx: click.Context, file: Path, force: bool) -> None:
    """Restore a `coursehub backup` FILE into this config's state folder and database.

    Refuses while a hub runs from that folder. The archive's settings are written to
    <state>/coursehub.yaml.from-backup for you to compare with your config.
    """
    from coursehub.host.backup import restore_backup
    from coursehub.host.database import resolve_url
    from coursehub.host.hubprocess import read_pid

    st = state(ctx)
    db_url = resolve_url(st.settings, st.paths)
    summary = restore_backup(st.paths, db_url, file, read_pid(st.paths.hub_pid), force)
    click.echo(f"Restored {', '.join(summary.members)} into {st.paths.root} ({summary.database}).")
    click.echo("Start the hub with `coursehub up`: course environments are rebuilt if missing.")
