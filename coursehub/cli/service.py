"""`coursehub install`, `uninstall` and `front-end`: coursehub as a systemd service."""

from __future__ import annotations

from pathlib import Path

import click

from coursehub.cli.base import state
from coursehub.errors import CoursehubError

ROOT_HELP = "Install root: units go to ROOT/etc/systemd/system (default /, this machine)."


@click.command()
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("/"), help=ROOT_HELP)
@click.pass_context
def install(ctx: click.Context, root: Path) -> None:
    """Write systemd units that run this hub as a service (and its TLS front end when tls: is set).

    The units name this config file, so commands run from any folder act on the same hub. Where systemd
    runs, they are enabled (not started): `systemctl start coursehub`.
    """
    from coursehub.host.install import install as write_units
    from coursehub.host.install import this_install

    st = state(ctx, creating=True)
    write_units(st.settings, this_install(st.config_path), root, click.echo)


@click.command()
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("/"), help=ROOT_HELP)
def uninstall(root: Path) -> None:
    """Stop, disable and remove the systemd units; the config and the state folder stay."""
    from coursehub.host.install import uninstall as remove_units

    remove_units(root, click.echo)


@click.command("front-end")
@click.pass_context
def front_end(ctx: click.Context) -> None:
    """Run the TLS front end (caddy, from tls:) in the foreground; its systemd unit runs this."""
    from coursehub.host import frontend
    from coursehub.host.runtime import ensure_state_dir

    st = state(ctx)
    if st.settings.tls.mode == "off":
        raise CoursehubError("tls.mode is off: there is no TLS front end to run (docs/https.md)")
    ensure_state_dir(st.paths)
    frontend.exec_caddy(st.settings, st.paths)
