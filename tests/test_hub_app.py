"""The hub's process imports the plugins its config selects, not every one installed (no hub started)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
UNUSED = ("oauthenticator", "ltiauthenticator", "jwt")


def imported_after(code: str) -> list[str]:
    """Which of UNUSED a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport sys\nprint(','.join(m for m in {UNUSED!r} if m in sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    return [name for name in out.stdout.strip().split(",") if name]


def test_the_hubs_app_lists_its_classes_without_importing_every_plugin():
    # JupyterHub's own default imports them all (entry points) for --help-all: 8 MiB of the hub's memory.
    assert imported_after("from coursehub.hub.app import JupyterHub\nJupyterHub().classes") == []
    # What it saves:
    assert imported_after("from jupyterhub.app import JupyterHub\nJupyterHub().classes") != []


def test_the_hub_leaves_out_makos_pygments_highlighting_and_its_error_pages_still_render():
    probe = (
        "import coursehub.hub.app, sys, mako.exceptions, mako.template\n"
        "print('pygments' in sys.modules)\n"
        "try:\n    mako.template.Template('${1/0}').render()\n"
        "except ZeroDivisionError:\n    page = mako.exceptions.html_error_template().render().decode()\n"
        "print('ZeroDivisionError' in page and 'syntax-highlighted' not in page)\n"
        "import pygments\nprint('pygments' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    # Not loaded with the hub (4.5 MiB); mako's page falls back to plain escaping; importable still.
    assert out.stdout.split() == ["False", "True", "True"]
    plain = subprocess.run(
        [sys.executable, "-c", "import jupyterhub.app, sys; print('pygments' in sys.modules)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert plain.stdout.strip() == "True"  # what it saves


def test_the_hubs_config_without_a_jupyterhub_section_imports_no_plugin():
    # Checking a `jupyterhub:` section's class names loads them all: only when a section names another class.
    build = "from tests.test_settings import config_for\nconfig_for('auth: {type: workshop}\\n')\n"
    assert imported_after(build) == []
    section = "jupyterhub: {GitHubOAuthenticator: {log_level: DEBUG}}\\n"
    named = build.replace("auth: {type: workshop}\\n", section)
    assert "oauthenticator" in imported_after(named)


def test_the_hub_runs_as_coursehubs_app():
    from coursehub.host.hubprocess import hub_command

    assert hub_command()[1:3] == ["-m", "coursehub.hub.app"]


def test_the_hubs_environment_gives_its_proxy_small_young_generations_unless_the_admin_chose():
    from coursehub.host.hubprocess import PROXY_NODE_OPTIONS, hub_environ

    env = hub_environ({"PATH": "/bin"}, "{}", Path("/state"), Path("/env"))
    assert env["NODE_OPTIONS"] == PROXY_NODE_OPTIONS == "--max-semi-space-size=1"
    assert env["PATH"] == "/bin" and env["COURSEHUB_STATE_DIR"] == "/state"
    kept = hub_environ({"NODE_OPTIONS": "--dns-result-order=ipv4first"}, "{}", Path("/s"), Path("/e"))
    assert kept["NODE_OPTIONS"] == "--dns-result-order=ipv4first --max-semi-space-size=1"
    theirs = hub_environ({"NODE_OPTIONS": "--max-semi-space-size=8"}, "{}", Path("/s"), Path("/e"))
    assert theirs["NODE_OPTIONS"] == "--max-semi-space-size=8"


def test_the_running_proxy_has_the_small_young_generations(fork_hub):
    proxy_pid = int((fork_hub.state_dir / "proxy.pid").read_text())
    environ = Path(f"/proc/{proxy_pid}/environ").read_bytes().split(b"\0")
    assert b"NODE_OPTIONS=--max-semi-space-size=1" in environ
    assert b"node" in Path(f"/proc/{proxy_pid}/cmdline").read_bytes().split(b"\0")[0]
