"""What every coursehub command shares: settings loading and turning errors into clean exits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from coursehub.errors import CoursehubError
from coursehub.paths import StatePaths
from coursehub.settings import Settings
from coursehub.settings.yamlfile import find_config, load_settings

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


def state(ctx: click.Context) -> State:
    """Settings and paths, loaded lazily so `config check` can report errors itself."""
    config, state_dir = ctx.find_root().obj
    return State(config, state_dir)
