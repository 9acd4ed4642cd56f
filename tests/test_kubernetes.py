"""Kubernetes without a cluster: chart schema, golden values, and KubeSpawner's own manifests."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from traitlets.config import Config

from coursehub.cli.kubernetes import image as image_command
from coursehub.cli.kubernetes import render
from coursehub.courses import images
from coursehub.courses.environments import SERVER_STACK
from coursehub.errors import ConfigError
from coursehub.kubernetes import values as k8s
from coursehub.names import TEMP_CULLER, TEMPORARY_GROUP
from coursehub.settings import Settings
from coursehub.settings.kubernetes import CHART_JUPYTERHUB, CHART_VERSION
from coursehub.settings.yamlfile import load_settings, parse_settings

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((REPO / "examples").glob("*-kubernetes.yaml"))
GOLDEN = REPO / "tests" / "golden"
STUDENT = "student-07"


def chart_file(name: str) -> dict[str, Any]:
    """A file of the Zero to JupyterHub chart version we render for, kept in tests/data (see its README)."""
    return yaml.safe_load((REPO / "tests" / "data" / f"z2jh-{CHART_VERSION}" / name).read_text())


def helm_coalesce(defaults: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """Values over chart defaults as Helm merges them: maps merge, lists replace, null deletes."""
    merged = dict(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = helm_coalesce(merged[key], value)
        else:
            merged[key] = value
    return merged


def schema_errors(values: dict[str, Any]) -> list[str]:
    """What the chart's values.schema.yaml says about `values` once merged like `helm install`."""
    validator = jsonschema.Draft7Validator(chart_file("values.schema.yaml"))
    merged = helm_coalesce(chart_file("values.yaml"), values)
    errors = validator.iter_errors(merged)
    return [f"{'.'.join(map(str, e.path))}: {e.message[:300]}" for e in errors]


def example_id(path: Path) -> str:
    return path.name.removesuffix(".yaml")


# --- (a) the chart's schema and (b) golden files ---------------------------------------------


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_rendered_values_validate_against_the_chart_schema(example: Path) -> None:
    values = k8s.build_values(load_settings(example))
    assert schema_errors(values) == []


def test_the_schema_check_rejects_invalid_values() -> None:
    values = k8s.build_values(load_settings(EXAMPLES[0]))
    values["singleuser"]["storage"]["type"] = "local-disk"
    values["prePuller"]["extraImages"]["broken"] = {"name": "no-tag"}
    errors = schema_errors(values)
    assert any(e.startswith("singleuser.storage.type") for e in errors), errors
    assert any(e.startswith("prePuller.extraImages.broken") for e in errors), errors


def test_there_are_examples_to_check() -> None:
    assert {p.name for p in EXAMPLES} >= {"workshop-kubernetes.yaml", "class-kubernetes.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=example_id)
def test_rendered_values_match_the_golden_file(example: Path) -> None:
    rendered = k8s.values_yaml(k8s.build_values(load_settings(example)))
    golden = GOLDEN / f"{example_id(example)}.values.yaml"
    if os.environ.get("COURSEHUB_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(rendered)
    assert golden.exists(), f"no {golden}: run with COURSEHUB_UPDATE_GOLDEN=1 and review it"
    assert rendered == golden.read_text(), (
        f"{golden.name} differs: if the change is intended, regenerate with "
        "COURSEHUB_UPDATE_GOLDEN=1 and review the diff"
    )


def test_values_never_carry_the_proxy_secret() -> None:
    for example in EXAMPLES:
        values = k8s.build_values(load_settings(example))
        assert "secretToken" not in yaml.safe_dump(values)
        assert "secretToken" not in values.get("proxy", {})


def test_values_cover_the_chart_sections_coursehub_drives() -> None:
    settings = load_settings(REPO / "examples" / "workshop-kubernetes.yaml")
    values = k8s.build_values(settings)
    assert values["hub"]["image"] == {"name": "ghcr.io/coursehub/coursehub-hub", "tag": "0.1.0"}
    assert values["hub"]["concurrentSpawnLimit"] == 64
    assert values["singleuser"]["memory"] == {"limit": "8G", "guarantee": "4G"}
    assert values["singleuser"]["cpu"] == {"limit": 2.0, "guarantee": 0.5}
    storage = values["singleuser"]["storage"]
    assert (storage["type"], storage["capacity"]) == ("dynamic", "5Gi")
    assert storage["dynamic"]["storageClass"] == "standard-rwo"
    assert values["prePuller"]["extraImages"] == {
        "course-esip": {"name": "ghcr.io/esip-lab/cloud-workshop", "tag": "2025-07"}
    }
    placeholder = values["scheduling"]["userPlaceholder"]
    assert placeholder["replicas"] == 18 and placeholder["enabled"]
    assert placeholder["resources"]["requests"] == {"memory": "4Gi", "cpu": 0.5}
    assert values["scheduling"]["podPriority"]["enabled"] is True
    assert values["cull"] == {
        "enabled": True,
        "users": False,
        "removeNamedServers": False,
        "timeout": 3600,
        "every": 600,
        "maxAge": 0,
    }
    # Users' hosts under the Ingress host: hub.subdomains is on by default.
    assert values["ingress"]["hosts"] == ["workshop.example.org", "*.workshop.example.org"]


def test_hub_reads_back_the_settings_embedded_in_the_values() -> None:
    settings = load_settings(REPO / "examples" / "class-kubernetes.yaml")
    hub = k8s.build_values(settings)["hub"]
    embedded = hub["extraFiles"]["coursehub-config"]
    assert embedded["mountPath"] == hub["extraEnv"]["COURSEHUB_CONFIG"]
    assert parse_settings(embedded["stringData"]) == k8s.with_images(settings, {})


# --- (c) the real KubeSpawner, built from coursehub's hub config ------------------------------


@pytest.fixture(autouse=True)
def kubeconfig(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kube config whose API server is never contacted: it stands in for a cluster."""
    path = tmp_path_factory.getbasetemp() / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "none",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "none", "user": {"token": "not-a-token"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    # kubernetes_asyncio reads $KUBECONFIG once, when first imported: another test module on the same
    # worker may have imported it before this fixture ran.
    import kubernetes_asyncio.config.kube_config as kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))


class Student:
    """The few attributes of a hub User that KubeSpawner reads."""

    def __init__(self, name: str) -> None:
        from jupyterhub.objects import Server

        self.name = self.escaped_name = name
        self.id = 7
        self.url = f"/user/{name}/"
        self.server = Server()


class ServerRecord:
    """The database row of a (named) server, as much of it as a Spawner reads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.server = None
        self.state: dict[str, Any] = {}
        self.user_options: dict[str, Any] = {}


def spawn_manifests(config: Config, server: str, options: dict[str, Any]) -> tuple[dict, dict]:
    """The pod and PVC KubeSpawner would create for STUDENT's `server` with `options`."""
    from jupyterhub.objects import Hub
    from kubernetes_asyncio.client import ApiClient
    from kubespawner import KubeSpawner

    async def build() -> tuple[dict, dict]:
        hub = Hub(ip="hub", port=8081, base_url="/hub/")  # the chart's hub Service
        spawner = KubeSpawner(
            config=config,
            user=Student(STUDENT),
            hub=hub,
            orm_spawner=ServerRecord(server),
            _mock=True,
        )
        spawner.user_options = options
        await spawner.load_user_options()  # applies the chosen profile, as before a start
        pod, pvc = await spawner.get_pod_manifest(), spawner.get_pvc_manifest()
        async with ApiClient() as client:
            return client.sanitize_for_serialization(pod), client.sanitize_for_serialization(pvc)

    return asyncio.run(build())


def course_cases() -> list[tuple[Path, str]]:
    return [(example, course.name) for example in EXAMPLES for course in load_settings(example).courses]


@pytest.mark.parametrize(
    ("example", "course_name"),
    course_cases(),
    ids=lambda v: example_id(v) if isinstance(v, Path) else v,
)
@pytest.mark.parametrize("how", ["named-server", "profile-option"])
def test_student_pod_of_each_course(example: Path, course_name: str, how: str) -> None:
    settings = load_settings(example)
    course = next(c for c in settings.courses if c.name == course_name)
    server, options = (course.name, {}) if how == "named-server" else ("", {"profile": course.name})
    pod, pvc = spawn_manifests(k8s.build_hub_config(settings), server, options)
    container = pod["spec"]["containers"][0]

    assert course.kubernetes is not None
    assert container["image"] == course.kubernetes.image
    limits = settings.course_limits(course)
    guarantee = settings.kubernetes.guarantee
    assert container["resources"]["limits"] == {"cpu": limits.cpu, "memory": limits.memory}
    assert container["resources"]["requests"] == {
        "cpu": round(limits.cpu * guarantee.cpu, 3),
        "memory": int(limits.memory * guarantee.memory),
    }

    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["COURSEHUB_COURSE"] == course.name
    assert env["COURSEHUB_COURSE_REPO"] == course.repo
    assert env["JUPYTERHUB_DISABLE_USER_CONFIG"] == "1"  # no server config from the home
    assert container["args"][: len(k8s.START_COMMAND)] == k8s.START_COMMAND

    security = container["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 1000
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["fsGroup"] == 100

    assert pvc["metadata"]["name"] == f"claim-{STUDENT}"
    assert pvc["spec"]["resources"]["requests"]["storage"] == k8s.quantity(
        settings.kubernetes.storage.capacity
    )
    assert pvc["spec"].get("storageClassName") == settings.kubernetes.storage.storage_class
    assert_volumes(settings, course, pod, container)


def assert_volumes(settings: Settings, course: Any, pod: dict, container: dict) -> None:
    """Home from the student's PVC; shared data read-only; scratch read-write."""
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/home/jovyan"]["name"]]["persistentVolumeClaim"] == {
        "claimName": f"claim-{STUDENT}"
    }
    data = course.kubernetes.shared_data or settings.kubernetes.shared.data
    if data is not None:
        mount = mounts[data.mount_path]
        assert mount["readOnly"] is True
        source = volumes[mount["name"]]
        assert (source.get("persistentVolumeClaim") or source.get("nfs"))["readOnly"] is True
    scratch = settings.kubernetes.shared.scratch
    if scratch is not None:
        mount = mounts[scratch.mount_path]
        assert mount["readOnly"] is False
        assert volumes[mount["name"]]["nfs"] == {
            "server": scratch.nfs.server,
            "path": scratch.nfs.path,
            "readOnly": False,
        }
    assert len(volumes) == 1 + (data is not None) + (scratch is not None)


def test_a_course_server_cannot_take_another_course_profile() -> None:
    settings = load_settings(REPO / "examples" / "class-kubernetes.yaml")
    with pytest.raises(ValueError, match="No such profile: intro-python"):
        spawn_manifests(k8s.build_hub_config(settings), "data-science", {"profile": "intro-python"})


def test_the_chart_runs_the_same_hub_config_through_extra_config(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings(REPO / "examples" / "class-kubernetes.yaml")
    hub = k8s.build_values(settings)["hub"]
    config_file = tmp_path / "coursehub.yaml"
    config_file.write_text(hub["extraFiles"]["coursehub-config"]["stringData"])
    monkeypatch.setenv("COURSEHUB_CONFIG", str(config_file))
    # What the chart's jupyterhub_config.py has done by the time it runs hub.extraConfig.
    chart = Config()
    chart.KubeSpawner.volumes = [{"name": "volume-x", "persistentVolumeClaim": {"claimName": "x"}}]
    chart.JupyterHub.services = [{"name": "jupyterhub-idle-culler", "command": ["cull"]}]
    chart.JupyterHub.load_roles = [{"name": "jupyterhub-idle-culler", "scopes": ["list:users"]}]
    exec(hub["extraConfig"]["coursehub"], {"c": chart})  # noqa: S102 - the chart does this

    services = [s["name"] for s in chart.JupyterHub.services]
    assert services == ["jupyterhub-idle-culler", TEMP_CULLER]
    direct = spawn_manifests(k8s.build_hub_config(settings), "data-science", {})
    via_chart = spawn_manifests(chart, "data-science", {})
    assert via_chart == direct


def test_hub_config_keeps_accounts_on_the_hub_volume_and_applies_passthrough_last() -> None:
    settings = parse_settings(
        "courses: [{name: bio, repo: r, kubernetes: {image: 'i:1'}}]\n"
        "jupyterhub: {KubeSpawner: {start_timeout: 42}}"
    )
    config = k8s.build_hub_config(settings)
    assert config.JupyterHub.authenticator_class == "workshop"
    assert config.WorkshopAuthenticator.accounts_db == "/srv/jupyterhub/accounts.sqlite"
    assert config.KubeSpawner.start_timeout == 42


def test_temporary_user_culler_sees_only_temporary_users() -> None:
    config = k8s.build_hub_config(load_settings(REPO / "examples" / "class-kubernetes.yaml"))
    (role,) = config.JupyterHub.load_roles
    assert "admin:users!group=coursehub-temporary" in role["scopes"]
    assert all(scope.endswith(f"!group={TEMPORARY_GROUP}") for scope in role["scopes"])
    (service,) = config.JupyterHub.services
    assert "--cull-users=true" in service["command"]
    workshop = k8s.build_hub_config(load_settings(REPO / "examples" / "workshop-kubernetes.yaml"))
    assert "services" not in workshop.JupyterHub  # no open course, no user deletion at all


def test_start_script_syncs_the_course_without_overwriting_and_starts(tmp_path: Path) -> None:
    source, home = tmp_path / "src", tmp_path / "home"
    (source / "week1").mkdir(parents=True)
    (source / "week1" / "lab.ipynb").write_text("upstream")
    (source / "new.ipynb").write_text("new upstream file")
    (home / "bio" / "week1").mkdir(parents=True)
    (home / "bio" / "week1" / "lab.ipynb").write_text("student's edit")
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "COURSEHUB_COURSE": "bio",
        "COURSEHUB_COURSE_SRC": str(source),
    }
    command = [*k8s.START_COMMAND[:-1], "echo", "server started"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=30)
    assert result.stdout == "server started\n"
    assert (home / "bio" / "week1" / "lab.ipynb").read_text() == "student's edit"
    assert (home / "bio" / "new.ipynb").read_text() == "new upstream file"


def test_start_script_starts_the_server_even_when_the_sync_fails(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "COURSEHUB_COURSE": "bio",
        "COURSEHUB_COURSE_REPO": "https://invalid.example/none.git",
    }
    command = [*k8s.START_COMMAND[:-1], "echo", "server started"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=150)
    assert result.stdout.endswith("server started\n")
    assert "could not sync https://invalid.example/none.git" in result.stderr


# --- (d) invalid combinations ------------------------------------------------------------------

COURSE = "courses: [{name: bio, repo: 'https://github.com/x/bio'}]\n"


RESOLVED = {"bio": "ghcr.io/x/bio:1"}


@pytest.mark.parametrize(
    ("text", "resolved", "message"),
    [
        (
            COURSE,
            {},
            r"course 'bio' has no image for Kubernetes: set kubernetes.image .*"
            r"kubernetes.image_registry",
        ),
        (
            COURSE + "kubernetes: {image_registry: ghcr.io/x}",
            {},
            r"course 'bio' has no image yet: .*coursehub course image bio --push ghcr.io/x",
        ),
        (
            COURSE + "kubernetes: {storage: {access_mode: ReadWriteMany}}",
            RESOLVED,
            r"ReadWriteMany needs kubernetes.storage.storage_class",
        ),
        (
            COURSE + "kubernetes: {shared: {data: {pvc: d, mount_path: /home/jovyan}}}",
            RESOLVED,
            r"mount_path /home/jovyan is already used by the home",
        ),
        ("courses: []", {}, r"no courses: .* add a course"),
    ],
)
def test_invalid_combinations_fail_at_render_time(text: str, resolved: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        k8s.build_values(parse_settings(text), resolved)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "kubernetes: {shared: {scratch: {nfs: {path: /export}}}}",
            r"kubernetes.shared.scratch.nfs.server: Field required",
        ),
        (
            "kubernetes: {shared: {data: {pvc: data, nfs: {server: s, path: /e}}}}",
            r"kubernetes.shared.data: set exactly one of pvc .* or nfs",
        ),
        ("kubernetes: {shared: {data: {}}}", r"set exactly one of pvc"),
        (
            "courses: [{name: bio, repo: r, kubernetes: {image: ghcr.io/x/bio}}]",
            r"image 'ghcr.io/x/bio' needs an explicit tag",
        ),
        (
            "kubernetes: {storage: {capacity: lots}}",
            r"kubernetes.storage.capacity: 'lots' is not a size",
        ),
    ],
)
def test_invalid_kubernetes_settings_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_settings(text)


def test_capacity_reads_kubernetes_and_coursehub_sizes() -> None:
    for written in ("10Gi", "10G", "10GiB", 10 * 1024**3):
        settings = parse_settings(f"kubernetes: {{storage: {{capacity: {written}}}}}")
        assert k8s.quantity(settings.kubernetes.storage.capacity) == "10Gi"


# --- (e) what does not carry over --------------------------------------------------------------


def test_notices_list_one_machine_settings() -> None:
    settings = parse_settings(
        COURSE
        + """
hub: {state_dir: /srv/ch, port: 8443}
sandbox: {user_prefix: ws-}
limits: {pids: 256}
auth: {type: dummy}
"""
    )
    notices = "\n".join(k8s.render_notices(settings))
    for expected in (
        "sandbox.* is ignored",
        "hub.state_dir is ignored",
        "hub.port ignored",
        "limits.pids is not applied",
    ):
        assert expected in notices
    assert "create them with" not in notices  # auth is not workshop here


def test_no_notices_for_a_config_written_for_kubernetes() -> None:
    settings = load_settings(REPO / "examples" / "workshop-kubernetes.yaml")
    assert [n for n in k8s.render_notices(settings) if "ignored" in n or "pids" in n] == []


def test_local_folder_courses_are_noticed() -> None:
    settings = parse_settings("courses: [{name: demo, repo: /srv/demo}]")
    assert any("course 'demo'" in n and "local folder" in n for n in k8s.render_notices(settings))


# --- course images -------------------------------------------------------------------------------


def make_course_repo(root: Path) -> Path:
    """A course folder with an environment and a notebook."""
    root.mkdir()
    (root / "requirements.txt").write_text("numpy==2.1.0\n")
    (root / "lesson.ipynb").write_text("{}")
    return root


def test_image_tag_follows_the_environment_not_the_content(tmp_path: Path) -> None:
    repo = make_course_repo(tmp_path / "course")
    tag = images.image_tag(images.read_image_spec(repo))
    assert re.fullmatch(r"[0-9a-f]{16}", tag)
    (repo / "lesson.ipynb").write_text('{"cells": []}')
    assert images.image_tag(images.read_image_spec(repo)) == tag
    (repo / "requirements.txt").write_text("numpy==2.2.0\n")
    assert images.image_tag(images.read_image_spec(repo)) != tag
    (repo / "binder").mkdir()
    (repo / "binder" / "requirements.txt").write_text("numpy==2.2.0\n")
    assert images.read_image_spec(repo).files[0][0] == "binder/requirements.txt"


def test_image_stack_pins_the_chart_jupyterhub_and_the_local_server_stack() -> None:
    stack = images.image_stack()
    assert stack[0] == f"jupyterhub=={CHART_JUPYTERHUB}"
    assert set(SERVER_STACK) <= set(stack)
    assert any(p.startswith("nbgitpuller==") for p in stack)


def test_repo2docker_command() -> None:
    course = parse_settings("courses: [{name: bio, repo: 'https://github.com/x/bio', ref: v2}]").courses[0]
    cmd = images.repo2docker_command(course, "ghcr.io/x/bio:abc", push=True)
    assert cmd[0] == "jupyter-repo2docker" and cmd[-1] == "https://github.com/x/bio"
    pairs = dict(zip(cmd[1:-1], cmd[2:], strict=False))
    assert pairs["--image-name"] == "ghcr.io/x/bio:abc"
    assert pairs["--user-name"] == "jovyan" and pairs["--user-id"] == "1000"
    assert pairs["--ref"] == "v2"
    assert pairs["--target-repo-dir"] == "/srv/coursehub/course"
    appendix = pairs["--appendix"]
    assert appendix.startswith("RUN python3 -m pip install")
    for pin in images.image_stack():
        assert pin in appendix
    assert "--no-run" in cmd and "--push" in cmd
    assert "--push" not in images.repo2docker_command(course, "ghcr.io/x/bio:abc", push=False)


def test_course_image_command_without_a_container_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if images.find_container_engine() is not None:
        pytest.skip("this machine has a container engine: the command would really build")
    repo = make_course_repo(tmp_path / "course")
    config = tmp_path / "coursehub.yaml"
    config.write_text(f"courses: [{{name: bio, repo: {repo}}}]\n")
    monkeypatch.setenv("COURSEHUB_CONFIG", str(config))
    result = CliRunner().invoke(image_command, ["bio", "--push", "ghcr.io/x"])
    assert result.exit_code == 1
    assert "no container engine" in result.stderr
    tag = images.image_tag(images.read_image_spec(repo))
    assert result.stdout.startswith(f"jupyter-repo2docker --no-run --image-name ghcr.io/x/bio:{tag} ")
    assert result.stdout.rstrip().endswith(f" --push {repo}")


def test_render_finds_registry_images_from_the_course_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = make_course_repo(tmp_path / "course")
    config = tmp_path / "coursehub.yaml"
    config.write_text(
        f"courses: [{{name: bio, repo: {repo}}}]\nkubernetes: {{image_registry: ghcr.io/x/courses}}\n"
    )
    monkeypatch.setenv("COURSEHUB_CONFIG", str(config))
    out = tmp_path / "values.yaml"
    result = CliRunner().invoke(render, ["kubernetes", "-o", str(out)])
    assert result.exit_code == 0, result.output
    tag = images.image_tag(images.read_image_spec(repo))
    values = yaml.safe_load(out.read_text())
    assert values["prePuller"]["extraImages"]["course-bio"] == {
        "name": "ghcr.io/x/courses/bio",
        "tag": tag,
    }
    assert "notice: course 'bio': its repo is a local folder" in result.stderr


def test_render_command_prints_values_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSEHUB_CONFIG", str(REPO / "examples" / "class-kubernetes.yaml"))
    result = CliRunner().invoke(render, ["kubernetes"])
    assert result.exit_code == 0
    assert result.stdout == (GOLDEN / "class-kubernetes.values.yaml").read_text()
    config = tmp_path / "coursehub.yaml"
    config.write_text(COURSE)
    monkeypatch.setenv("COURSEHUB_CONFIG", str(config))
    result = CliRunner().invoke(render, ["kubernetes"])
    assert result.exit_code == 1
    assert "course 'bio' has no image for Kubernetes" in result.stderr


# --- the hub image -----------------------------------------------------------------------------


def test_hub_image_builds_on_the_chart_release_coursehub_expects() -> None:
    dockerfile = (REPO / "hub-image" / "Dockerfile").read_text()
    assert f"ARG CHART_VERSION={CHART_VERSION}\n" in dockerfile
    assert "FROM quay.io/jupyterhub/k8s-hub:${CHART_VERSION}" in dockerfile
    floor = re.search(r'"jupyterhub>=([\d.]+)', (REPO / "pyproject.toml").read_text())
    assert floor is not None
    version = tuple(int(p) for p in CHART_JUPYTERHUB.split("."))
    assert version >= tuple(int(p) for p in floor.group(1).split("."))


def test_launch_links_on_kubernetes_get_courses_from_the_config():
    from coursehub.courses.catalog import CourseRecord
    from coursehub.launch.handlers import launch_handlers

    settings = load_settings(REPO / "examples" / "class-kubernetes.yaml")
    static = k8s.build_hub_config(settings).Authenticator.static_courses
    assert set(static) == {course.name for course in settings.courses}
    for record in static.values():
        assert CourseRecord(**record).ready  # an image, no local content
    pattern, _, kwargs = launch_handlers("", 10, static)[0]
    assert pattern.startswith("/launch/") and kwargs["static"] == static


def test_postgres_database_goes_to_the_chart_without_its_password():
    from coursehub.settings.database import DatabaseSettings

    plain = load_settings(EXAMPLES[0])
    database = DatabaseSettings(url="postgresql://hub@db.example.org:5432/coursehub", password_env="DB_PW")
    settings = plain.model_copy(update={"database": database})
    values = k8s.build_values(settings)
    assert values["hub"]["db"] == {
        "type": "postgres",
        "url": "postgresql+psycopg://hub@db.example.org:5432/coursehub",
    }
    secret = values["hub"]["extraEnv"]["PGPASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "coursehub-database", "key": "password"}
    assert any("coursehub-database" in notice for notice in k8s.render_notices(settings))
    assert schema_errors(values) == []
    assert "db" not in k8s.build_values(plain)["hub"]  # default: the chart's own SQLite


def test_network_settings_become_the_chart_network_policy() -> None:
    settings = load_settings(EXAMPLES[0]).model_copy(deep=True)
    default = k8s.build_values(settings)["singleuser"]["networkPolicy"]
    assert default["egressAllowRules"]["cloudMetadataServer"] is False
    assert default["egressAllowRules"]["privateIPs"] is False and default["egress"] == []
    settings.network.allow = ["10.20.0.0/16"]
    settings.network.deny = ["203.0.113.0/24"]
    values = k8s.build_values(settings)
    policy = values["singleuser"]["networkPolicy"]
    blocks = [rule["to"][0]["ipBlock"] for rule in policy["egress"]]
    assert {"cidr": "10.20.0.0/16"} in blocks
    # A denied range is carved out of "the internet", and the metadata range never comes back.
    (internet,) = [b for b in blocks if b["cidr"] == "0.0.0.0/0"]
    assert {"203.0.113.0/24", "169.254.0.0/16", "10.0.0.0/8"} <= set(internet["except"])
    assert policy["egressAllowRules"]["nonPrivateIPs"] is False
    assert schema_errors(values) == []
