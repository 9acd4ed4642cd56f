"""coursehub.yaml -> Settings -> traitlets Config, as pure functions (no hub is started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from traitlets.config import Config

from coursehub.cli import main
from coursehub.courses.build import describe
from coursehub.courses.catalog import CourseRecord
from coursehub.errors import ConfigError
from coursehub.hubconfig import Runtime, build
from coursehub.names import CULLER_SCOPES
from coursehub.paths import StatePaths
from coursehub.settings import Settings, parse_size
from coursehub.settings.yamlfile import parse_settings

RUNTIME = Runtime(
    paths=StatePaths(Path("/srv/state")),
    proxy_command="/bin/chp",
    python="/venv/bin/python",
    user_env=Path("/srv/state/envs/abc"),
    cli_token="t0ken",
)


def config_for(yaml_text: str) -> Config:
    return build(parse_settings(yaml_text), RUNTIME)


def test_defaults_give_a_local_sandboxed_hub_on_sqlite():
    c = build(Settings(), RUNTIME)
    assert c.JupyterHub.bind_url == "http://127.0.0.1:8000/"
    assert c.JupyterHub.db_url == "sqlite:////srv/state/jupyterhub.sqlite"
    assert c.JupyterHub.spawner_class == "sandbox"
    assert c.JupyterHub.authenticator_class == "workshop"
    assert c.JupyterHub.cleanup_servers is False  # servers survive hub restarts
    assert c.SandboxSpawner.mem_limit == 2 * 1024**3
    assert c.SandboxSpawner.cpu_limit == 1.0
    assert c.SandboxSpawner.pids_limit == 512
    assert c.SandboxSpawner.kernel_cull_timeout == 3600  # the culler's timeout, for idle kernels
    assert c.SandboxSpawner.environment_path == "/srv/state/envs/abc"
    assert c.SandboxSpawner.courses_root == "/srv/state/courses"
    assert c.JupyterHub.allow_named_servers is True  # a named server per course
    assert "/srv/state" in c.SandboxSpawner.hidden_paths
    assert c.SandboxSpawner.course_order == ["demo"]
    assert c.Authenticator.admin_users == {"admin"}


def test_limits_and_hub_settings_reach_the_config():
    c = config_for("""
hub: {port: 9000, concurrent_spawn_limit: 20, start_timeout: 90}
limits: {memory: 512M, cpu: 0.5, pids: 64}
""")
    assert c.JupyterHub.bind_url == "http://127.0.0.1:9000/"
    assert c.JupyterHub.concurrent_spawn_limit == 20
    assert c.Spawner.start_timeout == 90
    assert c.SandboxSpawner.mem_limit == 512 * 1024**2
    assert c.SandboxSpawner.cpu_limit == 0.5
    assert c.SandboxSpawner.pids_limit == 64


def test_course_limits_override_global_ones():
    settings = parse_settings("""
limits: {memory: 1G}
courses:
  - {name: bio101, repo: /srv/bio, limits: {memory: 4G}, access: [ana, "group:bio"]}
  - {name: chem, repo: /srv/chem}
""")
    bio, chem = settings.courses
    record = CourseRecord(name="bio101")
    describe(record, bio, settings)
    assert record.limits["memory"] == 4 * 1024**3 and record.access == ["ana", "group:bio"]
    describe(record, chem, settings)
    assert record.limits["memory"] == 1024**3
    assert build(settings, RUNTIME).SandboxSpawner.course_order[0] == "bio101"


def test_culler_is_a_service_with_least_privilege():
    c = config_for("culler: {timeout: 1200, every: 60, max_age: 7200}")
    (culler,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert "--timeout=1200" in culler["command"] and "--max-age=7200" in culler["command"]
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert role["scopes"] == CULLER_SCOPES and "admin:users" not in role["scopes"]
    assert not [
        s
        for s in build(parse_settings("culler: {enabled: false}"), RUNTIME).JupyterHub.services
        if s["name"] == "idle-culler"
    ]


def test_other_authenticators_can_be_selected():
    assert config_for("auth: {type: dummy}").Authenticator.allow_all is True
    c = config_for("auth: {type: 'oauthenticator.github.GitHubOAuthenticator'}")
    assert c.JupyterHub.authenticator_class == "oauthenticator.github.GitHubOAuthenticator"


def test_passthrough_sets_any_trait_last():
    c = config_for("""
limits: {memory: 1G}
jupyterhub:
  JupyterHub: {log_level: DEBUG}
  SandboxSpawner: {mem_limit: 123}
""")
    assert c.JupyterHub.log_level == "DEBUG"
    assert c.SandboxSpawner.mem_limit == 123


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hub:\n  prot: 80\n", ["coursehub.yaml:2", "unknown key 'hub.prot'", "port"]),
        ("limits:\n  memory: -1G\n", ["coursehub.yaml:2", "limits.memory", "positive"]),
        ("limits:\n  memory: lots\n", ["limits.memory", "not a size"]),
        ("limits:\n  cpu: fast\n", ["limits.cpu", "number"]),
        ("hub: {port: 70000}\n", ["hub.port", "65535"]),
        ("courses:\n  - {name: Bad Name, repo: x}\n", ["courses.0.name", "pattern"]),
        ("courses:\n  - {name: a, repo: x}\n  - {name: a, repo: y}\n", ["unique", "a"]),
        ("sandbox: {home_root: relative/path}\n", ["sandbox.home_root", "absolute"]),
        ("jupyterhub: {'not a class': {x: 1}}\n", ["jupyterhub"]),
        ("- just\n- a list\n", ["top level must be a mapping"]),
        ("hub: [unclosed\n", ["not valid YAML"]),
    ],
)
def test_bad_config_is_rejected_with_key_and_line(text, expected):
    with pytest.raises(ConfigError) as error:
        parse_settings(text)
    for fragment in expected:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("text", "size"),
    [("512M", 512 * 2**20), ("1.5G", 3 * 2**29), ("2GiB", 2 * 2**30), (1024, 1024)],
)
def test_sizes(text, size):
    assert parse_size(text) == size


def test_config_check_exit_codes(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("limits: {memory: 1G}\n")
    bad.write_text("limits:\n  memroy: 1G\n")
    runner = CliRunner()
    ok = runner.invoke(main, ["config", "check", str(good)])
    assert ok.exit_code == 0 and "OK" in ok.output
    failed = runner.invoke(main, ["config", "check", str(bad)])
    assert failed.exit_code == 1
    assert "bad.yaml:2" in failed.output and "limits.memroy" in failed.output
    assert "memory" in failed.output  # what is allowed


def test_config_show_prints_effective_settings(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("limits: {memory: 3G}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "config", "show"])
    assert result.exit_code == 0
    assert "memory: 3G" in result.output and "port: 8000" in result.output


def test_up_refuses_with_bad_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("limits: {memory: -5}\n")
    result = CliRunner().invoke(main, ["--config", str(path), "up"])
    assert result.exit_code == 1
    assert "limits.memory" in result.output


def role_names(c: Config) -> set[str]:
    return {role["name"] for role in c.JupyterHub.load_roles}


def test_passthrough_roles_are_added_to_coursehubs_own():
    # How JupyterHub's sharing is turned on: a role given to every user.
    c = config_for("""
binder: {enabled: true}
jupyterhub:
  JupyterHub:
    load_roles: [{name: user, scopes: [self, shares!user]}]
    services: [{name: announcements, url: "http://127.0.0.1:9999"}]
""")
    assert {
        "user",
        "idle-culler",
        "coursehub-temporary-culler",
        "coursehub-binder-culler",
        "coursehub-cli",
    } <= role_names(c)
    assert {"announcements", "idle-culler", "coursehub-cli"} <= {s["name"] for s in c.JupyterHub.services}


def test_passthrough_template_paths_keep_the_status_page():
    c = config_for("jupyterhub: {JupyterHub: {template_paths: [/srv/my-templates]}}")
    paths = c.JupyterHub.template_paths
    assert paths[0] == "/srv/my-templates"  # the admin's templates win over ours...
    assert any(Path(p, "coursehub-status.html").exists() for p in paths)  # ...and ours stay found


def test_passthrough_adds_to_hidden_paths_and_admins_and_headers():
    c = config_for("""
jupyterhub:
  SandboxSpawner: {hidden_paths: [/srv/secret]}
  Authenticator: {admin_users: [root2]}
  JupyterHub: {tornado_settings: {slow_spawn_timeout: 0}}
""")
    assert {"/srv/state", "/srv/secret"} <= set(c.SandboxSpawner.hidden_paths)  # the hub's state stays hidden
    assert c.Authenticator.admin_users == {"admin", "root2"}
    assert c.JupyterHub.tornado_settings["slow_spawn_timeout"] == 0
    assert "Content-Security-Policy" in c.JupyterHub.tornado_settings["headers"]


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # Redefining one of coursehub's own roles would change what its culler may do.
        (
            "JupyterHub: {load_roles: [{name: idle-culler, scopes: [admin:users]}]}",
            ["jupyterhub.JupyterHub.load_roles", "idle-culler", "jupyterhub_config.d"],
        ),
        (
            "JupyterHub: {tornado_settings: {headers: {Content-Security-Policy: ''}}}",
            ["jupyterhub.JupyterHub.tornado_settings", "Content-Security-Policy", "jupyterhub_config.d"],
        ),
        (
            "ConfigurableHTTPProxy: {command: [/opt/chp]}",
            ["jupyterhub.ConfigurableHTTPProxy.command", "jupyterhub_config.d"],
        ),
        ("JupyterHub: {services: {a: 1}}", ["jupyterhub.JupyterHub.services", "list"]),
        ("Spawnr: {foo: 1}", ["jupyterhub.Spawnr", "Spawner"]),
        ("jupyterhub: {foo: 1}", ["jupyterhub.jupyterhub", "JupyterHub"]),
    ],
)
def test_passthrough_conflicts_and_unknown_classes_are_refused(text, fragments):
    with pytest.raises(ConfigError) as error:
        config_for(f"jupyterhub: {{{text}}}\n")
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    "name",
    [
        "Application",
        "Spawner",
        "LocalProcessSpawner",
        "GitHubOAuthenticator",
        "OAuthenticator",
        "CryptKeeper",
    ],
)
def test_passthrough_accepts_the_classes_jupyterhub_loads(name):
    c = config_for(f"jupyterhub: {{{name}: {{log_level: DEBUG}}}}\n")
    assert c[name].log_level == "DEBUG"


def test_passthrough_knows_the_classes_of_an_authenticator_it_selects():
    c = config_for("""
jupyterhub:
  JupyterHub: {authenticator_class: ltiauthenticator.lti13.auth.LTI13Authenticator}
  LTI13Authenticator: {issuer: "https://lms.example.org"}
""")
    assert c.LTI13Authenticator.issuer == "https://lms.example.org"


def test_config_check_refuses_passthrough_that_would_drop_coursehubs_roles(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "jupyterhub:\n  JupyterHub:\n    load_roles: [{name: coursehub-cli, scopes: [admin:users]}]\n"
    )
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "jupyterhub.JupyterHub.load_roles" in result.output and "coursehub-cli" in result.output
    path.write_text("jupyterhub:\n  Spawnr: {foo: 1}\n")
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "jupyterhub.Spawnr" in result.output


@pytest.mark.parametrize("name", ["coursehub-temporary-culler", "coursehub-binder-culler"])
def test_group_cullers_delete_users_without_first_removing_their_servers(name):
    # JupyterHub removes a named server after answering (`remove: true`); the culler's next request,
    # deleting the user, then raced that removal and got 500 "orm_spawner not found". Deleting the
    # user deletes all their servers anyway.
    c = config_for("binder: {enabled: true}")
    (culler,) = [s for s in c.JupyterHub.services if s["name"] == name]
    assert "--cull-users=true" in culler["command"]
    assert not [arg for arg in culler["command"] if arg.startswith("--remove-named-servers")]
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == name]
    group = "coursehub-temporary" if "temporary" in name else "coursehub-binder"
    assert sorted(role["scopes"]) == sorted(f"{s}!group={group}" for s in [*CULLER_SCOPES, "admin:users"])


def test_one_machines_cullers_share_a_process_each_loop_with_its_own_services_token():
    from coursehub.hubconfig.services import Backend, culler_token_env, hub_services
    from coursehub.names import BINDER_CULLER, CULLERS_ENV, TEMP_CULLER

    settings = Settings.model_validate({"binder": {"enabled": True}})
    apart, roles_apart = hub_services(settings, Backend(python="/py"))
    tokens = {TEMP_CULLER: "t" * 64, BINDER_CULLER: "b" * 64}
    shared, roles = hub_services(settings, Backend(python="/py", culler_tokens=tokens))
    assert roles == roles_apart  # the same services, with the same scopes
    assert [s["name"] for s in shared] == [s["name"] for s in apart]
    runner, temporary, binder = shared[:3]
    assert runner["command"] == ["/py", "-m", "coursehub.hub.cullers"]
    assert temporary == {"name": TEMP_CULLER, "api_token": tokens[TEMP_CULLER]}
    assert binder == {"name": BINDER_CULLER, "api_token": tokens[BINDER_CULLER]}
    loops = json.loads(runner["environment"][CULLERS_ENV])
    # Each loop: the arguments its own process had, and its own service's token (never in argv).
    assert [(loop["name"], loop["args"]) for loop in loops] == [
        (s["name"], s["command"][3:]) for s in apart[:3]
    ]
    assert [loop["token_env"] for loop in loops] == [
        "JUPYTERHUB_API_TOKEN",
        culler_token_env(TEMP_CULLER),
        culler_token_env(BINDER_CULLER),
    ]
    assert {runner["environment"][loop["token_env"]] for loop in loops[1:]} == set(tokens.values())
    assert not any(token in " ".join(s.get("command", [])) for s in shared for token in tokens.values())
    # One culler alone keeps its own process.
    alone, _ = hub_services(
        Settings.model_validate({"culler": {"enabled": False}}), Backend("/py", culler_tokens=tokens)
    )
    assert [s.get("command", [])[2:3] for s in alone] == [["jupyterhub_idle_culler"]]


@pytest.mark.parametrize(
    ("section", "key"),
    [("limits", ("memory",)), ("binder", ("memory",)), ("courses", (0, "limits", "memory"))],
)
def test_every_memory_setting_reads_and_writes_sizes_alike(section, key):
    from coursehub.settings.base import Size
    from coursehub.settings.yamlfile import dump_settings

    assert Size  # the one size type behind every memory setting
    course = "courses: [{name: a, repo: x, limits: {memory: 1.5G}}]\n"
    text = course if section == "courses" else f"{section}: {{memory: 1.5G}}\n"
    settings = parse_settings(text)
    value = getattr(settings, section)
    for part in key:
        value = value[part] if isinstance(part, int) else getattr(value, part)
    assert value == 3 * 2**29
    assert "memory: 1536M" in dump_settings(settings)
    with pytest.raises(ConfigError, match="not a size"):
        parse_settings(text.replace("1.5G", "lots"))
