"""Docs that must match the code: the README's config reference, its two commands, CI."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from coursehub.cli import main
from coursehub.settings.reference import replace_reference

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()


def test_config_reference_matches_settings_model():
    assert replace_reference(README) == README, (
        "README's configuration reference is stale: regenerate it with "
        "`coursehub config reference` (or replace_reference)"
    )


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    assert "./run up" in README and "./run test" in README
    ci = (REPO / ".ci" / "run").read_text()
    assert "./run test" in ci


def test_every_command_is_in_the_readme():
    group = main
    for name in group.commands:
        assert f"coursehub {name}" in README, f"`coursehub {name}` is not documented in README"


def test_help_teaches():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "coursehub up" in result.output
