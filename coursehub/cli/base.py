"""What every coursehub command shares: settings loading and turning errors into clean exits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from coursehub.errors import CoursehubError
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.yamlfile import config_path, find_config, load_settings, stray_config_note

CONFIG_HELP = (
    "coursehub.yaml to use (default: $COURSEHUB_CONFIG, else /etc/coursehub/coursehub.yaml, else the "
    "built-in default)."
)


class State:
    """What every command needs: the settings (validated once) and the state folder."""

    def __init__(self, config: Path | None, state_dir: Path | None, creating: bool = False) -> None:
        # Where commands that edit the config write (created there when missing), never ./coursehub.yaml.
        self.config_path = config_path(config)
        self.config_file = find_config(config)
        if creating and self.config_file is not None and not self.config_file.exists():
            self.config_file = None  # a named file that does not exist yet: the edit creates it
        if note := stray_config_note(Path.cwd(), self.config_file):
            click.secho(note, fg="yellow", err=True)
        self.settings: Settings = load_settings(self.config_file)
        if state_dir is not None:
            self.settings.hub.state_dir = state_dir.resolve()
        self.paths = StatePaths(self.settings.hub.state_dir)
        from coursehub.spawner.cgroups import adopt_parent

        adopt_parent(self.paths.cgroup_parent)  # servers' cgroups where a systemd service's `up` put them


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


def state(ctx: click.Context, creating: bool = False) -> State:
    """Settings and paths, loaded lazily so `config check` can report errors itself.

    `creating`: the command writes the config, so a named file that does not exist yet is no error.
    """
    config, state_dir = ctx.find_root().obj
    return State(config, state_dir, creating)
