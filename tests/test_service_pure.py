"""coursehub as a service, without a hub: the config home, config set/unset, the units, the warnings.

The units are checked with Debian's `systemd-analyze verify` (no systemd runs here); what they run in the
foreground is tested in tests/test_service.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from coursehub.errors import ConfigError
from coursehub.host.units import HUB_UNIT, TLS_UNIT, Install, exec_argv, exec_line, quote, units
from coursehub.hubconfig.origins import listens_beyond_loopback, plain_http_warning
from coursehub.settings import Settings
from coursehub.settings.edit import parse_value, set_value, unset_value
from coursehub.settings.yamlfile import CONFIG_HOME, config_path, find_config, stray_config_note
from coursehub.spawner.cgroups import delegated_parent

COURSEHUB = [sys.executable, "-m", "coursehub"]
INST = Install(
    python="/opt/coursehub/.venv/bin/python",
    config=Path("/etc/coursehub/coursehub.yaml"),
    path="/opt/coursehub/node_modules/.bin:/usr/bin:/bin",
    docs=Path("/opt/coursehub/docs/production.md"),
)
TLS = {
    "hub": {"public_url": "https://hub.example.edu/", "subdomains": True},
    "tls": {"mode": "acme", "email": "admin@example.edu"},
}


# --- the config home ---------------------------------------------------------------------------------


def test_the_config_home_is_fixed_unless_named():
    assert CONFIG_HOME == Path("/etc/coursehub/coursehub.yaml")
    assert config_path(None, {}) == CONFIG_HOME
    assert config_path(None, {"COURSEHUB_CONFIG": "/srv/hub.yaml"}) == Path("/srv/hub.yaml")
    assert config_path(Path("x.yaml"), {"COURSEHUB_CONFIG": "/srv/hub.yaml"}) == Path("x.yaml")
    # A named file is read even when missing (so reading it fails loudly); a missing home means the default.
    assert find_config(None, {"COURSEHUB_CONFIG": "/nonexistent/hub.yaml"}) == Path("/nonexistent/hub.yaml")
    if not CONFIG_HOME.exists():
        assert find_config(None, {}) is None


def test_a_coursehub_yaml_in_the_current_folder_is_never_the_config(tmp_path, monkeypatch):
    """Before: `course add` run here with no config named used (and created) ./coursehub.yaml."""
    monkeypatch.delenv("COURSEHUB_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coursehub.yaml").write_text("limits: {memory: 1G}\n")
    assert find_config(None) in (None, Path("/etc/coursehub/coursehub.yaml"))
    from coursehub.cli.base import State

    st = State(None, tmp_path / "state", creating=True)  # what `course add` and `config set` write to
    assert st.config_path == Path("/etc/coursehub/coursehub.yaml")


def test_a_coursehub_yaml_in_the_current_folder_is_not_read_and_the_admin_is_told(tmp_path):
    (tmp_path / "coursehub.yaml").write_text("limits: {memory: 1G}\n")
    note = stray_config_note(tmp_path, Path("/etc/coursehub/coursehub.yaml"))
    assert note is not None and "is not read" in note and "--config" in note
    assert stray_config_note(tmp_path, tmp_path / "coursehub.yaml") is None
    assert stray_config_note(tmp_path / "elsewhere", None) is None


def cli(*args: str, cwd: Path, config: Path, check: bool = True) -> subprocess.CompletedProcess:
    """The coursehub CLI run from `cwd` with $COURSEHUB_CONFIG (not --config), as an admin's shell would."""
    env = {**os.environ, "COURSEHUB_CONFIG": str(config)}
    result = subprocess.run(
        [*COURSEHUB, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_config_set_from_another_folder_edits_the_hubs_config_not_the_folders(tmp_path):
    home, folder = tmp_path / "etc" / "coursehub.yaml", tmp_path / "somewhere"
    folder.mkdir()
    cli("config", "set", "limits.memory", "1G", cwd=folder, config=home)
    assert home.read_text() == "limits:\n  memory: 1G\n"  # created where the hub's config lives
    assert list(folder.iterdir()) == []  # never ./coursehub.yaml
    # A stray ./coursehub.yaml is neither read nor written.
    (folder / "coursehub.yaml").write_text("limits: {memory: 9G}\n")
    shown = cli("config", "show", cwd=folder, config=home)
    assert "memory: 1G" in shown.stdout and "is not read" in shown.stderr
    assert (folder / "coursehub.yaml").read_text() == "limits: {memory: 9G}\n"


# --- config set / unset --------------------------------------------------------------------------------

ANNOTATED = """\
# The physics hub.
hub:
  port: 8000  # behind the department's proxy
limits:
  memory: 1G   # per server
  cpu: 2
courses:
  - name: phys101  # first year
    repo: https://git.example.edu/phys101
"""


def test_config_set_keeps_comments_and_order_and_validates(tmp_path):
    path = tmp_path / "coursehub.yaml"
    path.write_text(ANNOTATED)
    set_value(path, "limits.cpu", parse_value("4"))
    set_value(path, "courses.phys101.title", parse_value("Physics 101"))
    set_value(path, "hub.admin_users", parse_value("[admin, tess]"))
    text = path.read_text()
    for kept in ("# The physics hub.", "# behind the department's proxy", "# per server", "# first year"):
        assert kept in text
    assert text.index("hub:") < text.index("limits:") < text.index("courses:")
    assert "cpu: 4" in text and "title: Physics 101" in text
    settings = Settings.model_validate(__import__("yaml").safe_load(text))
    assert settings.hub.admin_users == ["admin", "tess"] and settings.courses[0].title == "Physics 101"


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("limits.memory", "lots", "limits.memory"),
        ("limits.memroy", "1G", "limits.memroy"),
        ("hub.port", "99999", "hub.port"),
        ("courses.chem.title", "x", "chem"),
        ("limits.memory.x", "1", "limits.memory"),
        ("auth.oidc.client_secret", "hunter2", "client_secret"),  # secrets are refused, as in the file
        ("limits..cpu", "1", "limits..cpu"),
    ],
)
def test_config_set_refuses_invalid_input_naming_the_key_and_changes_nothing(tmp_path, key, value, named):
    path = tmp_path / "coursehub.yaml"
    path.write_text(ANNOTATED)
    before = path.stat()
    with pytest.raises(ConfigError) as exc:
        set_value(path, key, parse_value(value))
    assert named in str(exc.value)
    assert path.read_text() == ANNOTATED and path.stat().st_mtime_ns == before.st_mtime_ns
    assert sorted(p.name for p in tmp_path.iterdir()) == ["coursehub.yaml"]  # no temporary file left


def test_config_unset_restores_the_default_and_drops_emptied_sections(tmp_path):
    path = tmp_path / "coursehub.yaml"
    path.write_text(ANNOTATED)
    unset_value(path, "hub.port")
    text = path.read_text()
    assert "hub:" not in text and "# The physics hub." in text and "memory: 1G   # per server" in text
    with pytest.raises(ConfigError, match="hub.port is not set"):
        unset_value(path, "hub.port")
    with pytest.raises(ConfigError):  # a course without its repo is invalid: refused, nothing changed
        unset_value(path, "courses.phys101.repo")
    assert "repo: https://git.example.edu/phys101" in path.read_text()


def test_config_set_through_the_cli_refuses_with_the_key_and_exit_code(tmp_path):
    path = tmp_path / "coursehub.yaml"
    path.write_text(ANNOTATED)
    result = cli("config", "set", "limits.cpu", "0", cwd=tmp_path, config=path, check=False)
    assert result.returncode == 1 and "limits.cpu" in result.stderr
    assert path.read_text() == ANNOTATED


# --- plain HTTP beyond loopback ------------------------------------------------------------------------


def test_up_warns_loudly_only_for_plain_http_beyond_loopback():
    for ip in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        assert not listens_beyond_loopback(ip)
        assert plain_http_warning(Settings(hub={"ip": ip})) == ""
    for ip in ("0.0.0.0", "", "::", "192.0.2.10", "hub.example.edu"):
        assert listens_beyond_loopback(ip)
    warning = plain_http_warning(Settings(hub={"ip": "0.0.0.0", "port": 8080}))
    assert warning.startswith("WARNING") and "0.0.0.0:8080" in warning and "docs/https.md" in warning
    assert "every address:8000" in plain_http_warning(Settings(hub={"ip": ""}))
    assert plain_http_warning(Settings(**TLS)) == ""  # the TLS front end in front: no warning


# --- the units, as data ----------------------------------------------------------------------------------


def test_exec_lines_quote_for_systemd():
    assert quote("/usr/bin/python") == "/usr/bin/python"
    assert quote("/srv/my hub/c.yaml") == '"/srv/my hub/c.yaml"'
    assert quote("100%$HOME") == '"100%%$$HOME"'
    argv = ["/opt/py", "-m", "coursehub", "--config", "/srv/my hub/c 100%.yaml", "up"]
    assert exec_argv(exec_line(argv)) == argv


def test_the_hub_unit_delegates_its_cgroup_restarts_on_failure_and_names_its_config():
    rendered = units(Settings(), INST)
    assert list(rendered) == [HUB_UNIT]  # no TLS front end unit without tls:
    lines = rendered[HUB_UNIT].splitlines()
    assert "Delegate=yes" in lines and "Restart=on-failure" in lines and "KillMode=mixed" in lines
    assert "After=network-online.target" in lines and "WantedBy=multi-user.target" in lines
    assert 'Environment="COURSEHUB_CGROUP_DELEGATE=1"' in lines
    base = "/opt/coursehub/.venv/bin/python -m coursehub --config /etc/coursehub/coursehub.yaml"
    assert f"ExecStart={base} up" in lines
    assert f"ExecReload={base} reload" in lines and f"ExecStop={base} down" in lines


def test_with_tls_a_front_end_unit_runs_caddy_and_the_hub_leaves_it_to_that_unit():
    rendered = units(Settings(**TLS), INST)
    assert list(rendered) == [HUB_UNIT, TLS_UNIT]
    hub, tls = rendered[HUB_UNIT].splitlines(), rendered[TLS_UNIT].splitlines()
    assert f"Wants=network-online.target {TLS_UNIT}" in hub
    assert any(line.startswith("ExecStart=") and line.endswith(" up --no-front-end") for line in hub)
    assert f"PartOf={HUB_UNIT}" in tls and "Restart=on-failure" in tls and f"WantedBy={HUB_UNIT}" in tls
    assert any(line.startswith("ExecStart=") and line.endswith(" front-end") for line in tls)


def test_servers_cgroups_go_under_the_services_delegated_subtree_only_there():
    service = "0::/system.slice/coursehub.service\n"
    assert delegated_parent(service, 2) == "system.slice/coursehub.service/servers"
    assert delegated_parent(service, 1) is None  # v1: one hierarchy per controller, nothing delegated
    assert delegated_parent("0::/\n", 2) is None  # a container or a shell: keep the shared group
    assert delegated_parent("0::/user.slice/user-0.slice/session-3.scope\n", 2) is None


# --- install / uninstall into a temporary root, checked by systemd-analyze -------------------------------


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze is missing: the test setup installs it (apt-get install systemd)")
    return found


def verify(paths: list[Path]) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", *map(str, paths)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("with_tls", [False, True])
def test_install_writes_units_systemd_accepts_and_uninstall_removes_them(tmp_path, with_tls):
    config = tmp_path / "hub.yaml"
    config.write_text("# mine\n" + (__import__("yaml").safe_dump(TLS) if with_tls else "limits: {cpu: 2}\n"))
    root = tmp_path / "root"
    out = cli("install", "--root", str(root), cwd=tmp_path, config=config).stdout
    folder = root / "etc/systemd/system"
    expected = [HUB_UNIT, TLS_UNIT] if with_tls else [HUB_UNIT]
    assert sorted(p.name for p in folder.iterdir()) == sorted(expected)
    assert all(f"Wrote {folder / name}" in out for name in expected)
    assert config.read_text().startswith("# mine")  # an existing config is left alone
    verify([folder / name for name in expected])
    hub = (folder / HUB_UNIT).read_text()
    assert f"--config {config}" in hub
    out = cli("uninstall", "--root", str(root), cwd=tmp_path, config=config).stdout
    assert list(folder.iterdir()) == [] and "are kept" in out
    assert config.exists()


def test_verify_would_catch_a_broken_unit(tmp_path):
    """The check above can fail: a unit whose command does not exist is refused."""
    broken = tmp_path / HUB_UNIT
    broken.write_text(units(Settings(), INST)[HUB_UNIT])  # /opt/coursehub/.venv/bin/python does not exist
    result = subprocess.run(
        [systemd_analyze(), "verify", str(broken)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0 and "/opt/coursehub/.venv/bin/python" in result.stderr


def test_install_writes_a_starter_config_where_none_is(tmp_path):
    root, config = tmp_path / "root", Path("/etc/coursehub-test-nonexistent/coursehub.yaml")
    cli("install", "--root", str(root), cwd=tmp_path, config=config)
    starter = root / "etc/coursehub-test-nonexistent/coursehub.yaml"
    assert "coursehub config set" in starter.read_text()
    assert not config.exists()  # only under the root
    verify([root / "etc/systemd/system" / HUB_UNIT])


def test_the_tls_units_command_becomes_caddy_serving_the_configured_certificate(tmp_path):
    """coursehub-tls.service's ExecStart, in the foreground: it writes the Caddyfile, then is caddy."""
    import yaml
    from conftest import free_port, wait_for
    from test_tls import make_wildcard_files, tls_handshake

    ca, cert, key = make_wildcard_files(tmp_path, "hub.localhost")
    https_port, http_port = free_port(), free_port()
    config = tmp_path / "hub.yaml"
    settings = {
        "hub": {"public_url": f"https://hub.localhost:{https_port}/", "subdomains": True},
        "tls": {"mode": "files", "cert_file": str(cert), "key_file": str(key), "http_port": http_port},
    }
    config.write_text(yaml.safe_dump(settings))
    root = tmp_path / "root"
    cli("install", "--root", str(root), cwd=tmp_path, config=config)
    line = next(
        line.removeprefix("ExecStart=")
        for line in (root / "etc/systemd/system" / TLS_UNIT).read_text().splitlines()
        if line.startswith("ExecStart=")
    )
    argv = [*exec_argv(line)[:-1], "--state-dir", str(tmp_path / "state"), "front-end"]
    with (tmp_path / "front.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd="/")
    try:

        def names():
            try:
                with tls_handshake("alice.hub.localhost", https_port, ca) as conn:
                    return [value for _, value in conn.getpeercert()["subjectAltName"]]
            except OSError:
                assert proc.poll() is None, (tmp_path / "front.log").read_text()[-2000:]
                return None

        served = wait_for(names, timeout=30, what="caddy of the TLS unit")
        assert served == ["hub.localhost", "*.hub.localhost"]
        assert Path(f"/proc/{proc.pid}/cmdline").read_bytes().split(b"\0")[1] == b"run"  # exec'd: it is caddy
        caddyfile = tmp_path / "state" / "caddy" / "Caddyfile"
        assert oct(caddyfile.stat().st_mode & 0o777) == "0o600" and str(cert) in caddyfile.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
