"""The Kubernetes backend: settings -> KubeSpawner config and Zero to JupyterHub values. Pure."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from traitlets.config import Config

from coursehub.courses.grading import role_of
from coursehub.courses.images import is_remote
from coursehub.errors import ConfigError
from coursehub.hubconfig import pipeline as core
from coursehub.hubconfig.auth import authenticator_class, kubernetes_notice
from coursehub.hubconfig.database import effective_url
from coursehub.hubconfig.runtime import Runtime
from coursehub.hubconfig.services import Backend, has_open_courses, hub_services
from coursehub.hubconfig.staff import staff_roles
from coursehub.kubernetes import grading
from coursehub.names import TEMP_CULLER, TEMPORARY_GROUP
from coursehub.paths import StatePaths
from coursehub.settings import Course, Limits, Settings, format_size
from coursehub.settings.kubernetes import (
    COURSE_SRC,
    FS_GID,
    HOME,
    USER_ID,
    CourseKubernetes,
    Guarantee,
    SharedVolume,
    split_image,
)

HUB_STATE = Path("/srv/jupyterhub")  # the chart's hub-db volume: hub database and accounts
CONFIG_PATH = "/usr/local/etc/coursehub/coursehub.yaml"  # where hub.extraFiles puts the settings
PVC_NAME = "claim-{username}"  # one home per user, shared by all their course servers
HUB_API = "http://localhost:8081/hub/api"  # services run inside the hub pod
CONTAINER_SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": USER_ID,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
# Sync the course into ~/<course>/ before the server starts: from git with nbgitpuller's merge
# rules (the student's edits win), else from the copy in the image without overwriting.
START_SCRIPT = """\
if [ -n "${COURSEHUB_COURSE:-}" ]; then
  dest="$HOME/$COURSEHUB_COURSE"
  if [ -n "${COURSEHUB_COURSE_REPO:-}" ]; then
    timeout 120 gitpuller "$COURSEHUB_COURSE_REPO" "${COURSEHUB_COURSE_BRANCH:-}" "$dest" \\
      || echo "coursehub: could not sync $COURSEHUB_COURSE_REPO into $dest" >&2
  elif [ -d "$COURSEHUB_COURSE_SRC" ]; then
    mkdir -p "$dest" && cp -Rn "$COURSEHUB_COURSE_SRC/." "$dest/" 2>/dev/null
  fi
fi
exec "$@"
"""
START_COMMAND = ["/bin/sh", "-c", START_SCRIPT, "coursehub-start", "jupyterhub-singleuser"]
EXTRA_CONFIG = """\
# coursehub: the hub side of coursehub.yaml (mounted by hub.extraFiles), over the chart's config
import os
from pathlib import Path

from coursehub.hub.chart_config import apply_to_chart_config
from coursehub.settings.yamlfile import load_settings

apply_to_chart_config(c, load_settings(Path(os.environ["COURSEHUB_CONFIG"])))
"""


def build_hub_config(settings: Settings) -> Config:
    """The hub-side traitlets Config on Kubernetes (what the chart's own config lacks)."""
    c = Config()
    c.JupyterHub.concurrent_spawn_limit = settings.hub.concurrent_spawn_limit
    c.Authenticator.admin_users = set(settings.admin_users())
    core.apply_auth(settings, _chart_runtime(), c)
    # The proxy is another pod: the hub cannot see who holds its sockets, so it believes the chain
    # from any peer (docs/security.md: user pods can reach the hub's port and claim addresses).
    c.Authenticator.verify_proxy_peer = False
    # Launch links on the hub: courses come from the config (pods fetch content themselves).
    c.Authenticator.static_courses = static_courses(settings)
    apply_services(settings, c)
    core.apply_ops(c)
    apply_spawner(settings, c)
    core.apply_passthrough(settings, c)
    return c


def static_courses(settings: Settings) -> dict[str, dict[str, Any]]:
    """Course records for the launch handlers, from settings alone (no local catalog on Kubernetes)."""
    return {
        course.name: {
            "name": course.name,
            "title": course.title or course.name,
            "description": course.description,
            "access": course.roster(),
            "default_notebook": course.default_notebook or "",
            "environment": course_image(settings, course),
            "limits": settings.course_limits(course).model_dump(),
        }
        for course in settings.courses
    }


def _chart_runtime() -> Runtime:
    """A Runtime for core's helpers: only its paths are read, and they are the hub pod's."""
    return Runtime(paths=StatePaths(HUB_STATE), proxy_command="", python="python3", user_env=Path("/"))


# The chart runs its own idle culler and no Binder API; guests are culled only when courses admit them.
CHART_SERVICES = Backend(
    python="python3", hub_api=HUB_API, idle_culler=False, binder=False, guests_always=False
)


def apply_services(settings: Settings, c: Config) -> None:
    """Hub-managed services (hubconfig/services.py) the chart lacks, and course staff's roles."""
    services, roles = hub_services(settings, CHART_SERVICES)
    if services:
        c.JupyterHub.services = services
    roles = [*roles, *staff_roles(settings)]
    if roles:
        c.JupyterHub.load_roles = roles


def apply_spawner(settings: Settings, c: Config) -> None:
    """KubeSpawner: non-root pods, a home volume, shared folders, and a profile per course."""
    ks = c.KubeSpawner
    c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
    ks.cmd = START_COMMAND
    ks.default_url = "/lab"
    # As SandboxSpawner: the server runs no config from the student's home (~/.jupyter).
    ks.disable_user_config = True
    # On KubeSpawner, not Spawner: the chart sets KubeSpawner.start_timeout, which would win.
    ks.start_timeout = settings.hub.start_timeout
    ks.http_timeout = settings.hub.http_timeout
    ks.uid, ks.fs_gid = USER_ID, FS_GID
    ks.allow_privilege_escalation = False
    ks.container_security_context = dict(CONTAINER_SECURITY)
    ks.environment = {"COURSEHUB_COURSE_SRC": COURSE_SRC}
    storage = settings.kubernetes.storage
    ks.pvc_name_template = PVC_NAME
    ks.storage_pvc_ensure = True
    ks.storage_capacity = quantity(storage.capacity)
    ks.storage_access_modes = [storage.access_mode]
    if storage.storage_class:
        ks.storage_class = storage.storage_class
    ks.volumes, ks.volume_mounts = shared_volumes(settings)
    for trait, value in resources(settings.limits, settings.kubernetes.guarantee).items():
        ks[trait] = value
    ks.profile_list = CourseProfiles(
        tuple(course_profiles(settings)), tuple(grading.graders(settings).items())
    )


@dataclass(frozen=True, eq=False)
class CourseProfiles:
    """KubeSpawner.profile_list: a course's named server gets its course; the default may choose."""

    profiles: tuple[dict[str, Any], ...]
    graders: tuple[tuple[str, tuple[str, ...]], ...] = ()  # courses with grading: nbgrader, their staff

    def __call__(self, spawner: Any) -> list[dict[str, Any]]:
        """The profiles `spawner` may use (KubeSpawner calls this before each start)."""
        own = [p for p in self.profiles if p["slug"] == spawner.name]
        chosen = copy.deepcopy(own or list(self.profiles))
        staff_of = dict(self.graders)
        for profile in chosen:
            course = profile["slug"]
            if course in staff_of:  # nbgrader's extensions for this user's role in the course
                added = grading.role_override(course, role_of(spawner.user, course, staff_of[course]))
                override = profile["kubespawner_override"]
                override["args"] = added["args"]
                override["environment"] = {**override.get("environment", {}), **added["environment"]}
        return chosen


def course_profiles(settings: Settings) -> list[dict[str, Any]]:
    """One KubeSpawner profile per course: its image, resources, environment and data."""
    guarantee = settings.kubernetes.guarantee
    profiles = []
    for index, course in enumerate(settings.courses):
        override: dict[str, Any] = {
            "image": course_image(settings, course),
            **resources(settings.course_limits(course), guarantee),
            "environment": course_environment(course),
        }
        data = course.kubernetes.shared_data if course.kubernetes else None
        if data is not None:
            # None removes the hub-wide data volume: KubeSpawner merges dict overrides.
            override["volumes"] = {
                "shared-data": None,
                "course-data": volume("course-data", data, read_only=True),
            }
            override["volume_mounts"] = {
                "shared-data": None,
                "course-data": mount("course-data", data, read_only=True),
            }
        profiles.append(
            {
                "slug": course.name,
                "display_name": course.title or course.name,
                "description": course.repo,
                "default": index == 0,
                "kubespawner_override": override,
            }
        )
    return profiles


def course_environment(course: Course) -> dict[str, str]:
    """What the start script needs to sync this course into the home."""
    env = {"COURSEHUB_COURSE": course.name}
    if is_remote(course.repo):
        env["COURSEHUB_COURSE_REPO"] = course.repo
        env["COURSEHUB_COURSE_BRANCH"] = "" if course.ref == "HEAD" else course.ref
    return env


def course_image(settings: Settings, course: Course) -> str:
    """The course's image, or a ConfigError saying how to give it one."""
    if course.kubernetes is not None and course.kubernetes.image:
        return course.kubernetes.image
    if settings.kubernetes.image_registry:
        raise ConfigError(
            f"course '{course.name}' has no image yet: `coursehub render kubernetes` finds it in "
            f"{settings.kubernetes.image_registry} (build it with `coursehub course image "
            f"{course.name} --push {settings.kubernetes.image_registry}`), or set its "
            "kubernetes.image"
        )
    raise ConfigError(
        f"course '{course.name}' has no image for Kubernetes: set kubernetes.image (name:tag) "
        "in that course, or set kubernetes.image_registry and build it with "
        f"`coursehub course image {course.name} --push <registry>`"
    )


def with_images(settings: Settings, images: Mapping[str, str]) -> Settings:
    """A copy of `settings` in which every course names its image (explicit, else `images`)."""
    copied = settings.model_copy(deep=True)
    for course in copied.courses:
        if course.name in images and not (course.kubernetes and course.kubernetes.image):
            fields = course.kubernetes.model_dump() if course.kubernetes else {}
            fields["image"] = images[course.name]
            course.kubernetes = CourseKubernetes.model_validate(fields)
        course_image(copied, course)  # raises, naming the course, when it has none
    return copied


def shared_volumes(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    """KubeSpawner volumes and mounts (dicts, so profiles can override by key)."""
    home = {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
    volumes: dict[str, Any] = {"home": home}
    mounts: dict[str, Any] = {"home": {"name": "home", "mountPath": HOME}}
    shared = settings.kubernetes.shared
    for key, source, read_only in (
        ("shared-data", shared.data, True),
        ("shared-scratch", shared.scratch, False),
    ):
        if source is not None:
            volumes[key] = volume(key, source, read_only)
            mounts[key] = mount(key, source, read_only)
    return volumes, mounts


def volume(name: str, source: SharedVolume, read_only: bool) -> dict[str, Any]:
    """A pod volume from an existing PVC or an NFS export."""
    if source.pvc is not None:
        return {
            "name": name,
            "persistentVolumeClaim": {"claimName": source.pvc, "readOnly": read_only},
        }
    assert source.nfs is not None  # the model requires one of the two
    return {
        "name": name,
        "nfs": {"server": source.nfs.server, "path": source.nfs.path, "readOnly": read_only},
    }


def mount(name: str, source: SharedVolume, read_only: bool) -> dict[str, Any]:
    """Where a shared volume appears in the server's container."""
    spec: dict[str, Any] = {"name": name, "mountPath": source.mount_path, "readOnly": read_only}
    if source.sub_path:
        spec["subPath"] = source.sub_path
    return spec


def resources(limits: Limits, guarantee: Guarantee) -> dict[str, Any]:
    """KubeSpawner limits and guarantees: the guarantee is a fraction of the limit."""
    return {
        "mem_limit": byte_spec(limits.memory),
        "mem_guarantee": byte_spec(int(limits.memory * guarantee.memory)),
        "cpu_limit": limits.cpu,
        "cpu_guarantee": round(limits.cpu * guarantee.cpu, 3),
    }


def byte_spec(size: int) -> str | int:
    """Bytes as KubeSpawner reads them ('2G' is 2 GiB there), or a plain integer."""
    text = format_size(size)
    return int(text) if text.isdigit() else text


def quantity(size: int) -> str:
    """Bytes as an exact Kubernetes quantity ('10Gi'; Kubernetes reads '10G' as 10**10)."""
    text = format_size(size)
    return text if text.isdigit() else f"{text}i"


def image_parts(image: str) -> dict[str, str]:
    """{'name', 'tag'} of an image, as the chart writes images."""
    name, tag = split_image(image)
    return {"name": name, "tag": tag}


def check_kubernetes(settings: Settings) -> None:
    """Raise ConfigError for combinations that cannot work on a cluster."""
    k8s = settings.kubernetes
    if not settings.courses:
        raise ConfigError(
            "no courses: on Kubernetes every server runs a course's image, so "
            "add a course (with kubernetes.image) to coursehub.yaml"
        )
    if k8s.storage.access_mode == "ReadWriteMany" and not k8s.storage.storage_class:
        raise ConfigError(
            "kubernetes.storage.access_mode ReadWriteMany needs kubernetes.storage.storage_class: "
            "set it to a class that can share volumes across nodes (e.g. an NFS provisioner's); "
            "the cluster's default class usually cannot"
        )
    paths = {HOME: "the home"}
    mounted = [
        ("kubernetes.shared.data", k8s.shared.data),
        ("kubernetes.shared.scratch", k8s.shared.scratch),
    ]
    for key, source in mounted:
        if source is None:
            continue
        if source.mount_path in paths:
            raise ConfigError(
                f"{key}.mount_path {source.mount_path} is already used by "
                f"{paths[source.mount_path]}: choose another folder"
            )
        paths[source.mount_path] = key


def build_values(settings: Settings, images: Mapping[str, str] | None = None) -> dict[str, Any]:
    """values.yaml for the `jupyterhub` chart; `images` names courses' images found by the CLI."""
    settings = with_images(settings, images or {})
    check_kubernetes(settings)
    values: dict[str, Any] = {
        "hub": hub_values(settings),
        "singleuser": singleuser_values(settings),
        "prePuller": prepuller_values(settings),
        "scheduling": scheduling_values(settings),
        "cull": cull_values(settings),
    }
    ingress = settings.kubernetes.ingress
    if ingress is not None:
        values["ingress"] = {
            "enabled": True,
            "hosts": [ingress.host],
            "ingressClassName": ingress.class_name,
            "tls": [{"hosts": [ingress.host], "secretName": ingress.tls_secret}]
            if ingress.tls_secret
            else [],
        }
        # The Ingress reaches the proxy inside the cluster: no cloud load balancer needed.
        values["proxy"] = {"service": {"type": "ClusterIP"}}
    apply_subdomains(settings, values)
    return values


def kubernetes_origin(settings: Settings) -> str:
    """scheme://host of the hub on a cluster: hub.public_url, else the Ingress host ('' if neither)."""
    if settings.hub.public_url:
        parts = urlsplit(settings.hub.public_url)
        return f"{parts.scheme}://{parts.netloc}"
    ingress = settings.kubernetes.ingress
    if ingress is not None:
        return f"{'https' if ingress.tls_secret else 'http'}://{ingress.host}"
    return ""


def chart_subdomains(settings: Settings) -> bool:
    """Whether the chart gives each user a host: hub.subdomains, unless left at its default with no host name.

    A chart behind a load balancer's address knows no name to put users under; the default then
    renders the shared origin (with a notice) and an explicit `hub.subdomains: true` is an error.
    """
    if not settings.hub.subdomains:
        return False
    if kubernetes_origin(settings):
        return True
    if "subdomains" in settings.hub.model_fields_set:
        raise ConfigError(
            "hub.subdomains on Kubernetes needs the hub's host name: set hub.public_url or "
            "kubernetes.ingress.host (with wildcard DNS *.<host> pointing at the cluster)"
        )
    return False


def apply_subdomains(settings: Settings, values: dict[str, Any]) -> None:
    """Each user's server at <user>.<host>: the chart's subdomain_host (it adds CHP's --host-routing)."""
    if not chart_subdomains(settings):
        return
    origin = kubernetes_origin(settings)
    host = urlsplit(origin).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise ConfigError(
            f"hub.subdomains (on by default): {host} is an IP address, which has no subdomains for "
            "users' servers: set hub.public_url to a host name with wildcard DNS, or hub.subdomains: false"
        )
    hub_config = values["hub"]["config"]["JupyterHub"]
    hub_config["subdomain_host"] = origin
    if origin.startswith("https://"):
        hub_config["cookie_host_prefix_enabled"] = True
    if "ingress" in values:
        values["ingress"]["hosts"].append(f"*.{host}")
        for tls in values["ingress"]["tls"]:
            tls["hosts"].append(f"*.{host}")


class _ValuesDumper(yaml.SafeDumper):
    """Writes multi-line strings (scripts, the embedded coursehub.yaml) as literal blocks."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_ValuesDumper.add_representer(str, _str)


def values_yaml(values: dict[str, Any]) -> str:
    """values as a YAML document that a person can read (and diff)."""
    header = "# Rendered by `coursehub render kubernetes` from coursehub.yaml: edit that instead.\n"
    return header + yaml.dump(values, Dumper=_ValuesDumper, sort_keys=False, width=100)


def hub_values(settings: Settings) -> dict[str, Any]:
    """The hub pod: coursehub's image, and coursehub.yaml applied by hub.extraConfig."""
    auth = authenticator_class(settings)
    image = settings.kubernetes.hub_image
    return {
        "image": {"name": image.name, "tag": image.tag},
        "concurrentSpawnLimit": settings.hub.concurrent_spawn_limit,
        # Also applied by extraConfig; here so that the values do not show the chart's 'dummy'.
        "config": {"JupyterHub": {"authenticator_class": auth}},
        "extraFiles": {
            "coursehub-config": {
                "mountPath": CONFIG_PATH,
                "stringData": embedded_settings(settings),
            }
        },
        "extraEnv": {"COURSEHUB_CONFIG": CONFIG_PATH, **database_env(settings)},
        "extraConfig": {"coursehub": EXTRA_CONFIG},
        **({"services": grading.hub_service()} if grading.graders(settings) else {}),
        **database_values(settings),
    }


DATABASE_SECRET = "coursehub-database"


def database_values(settings: Settings) -> dict[str, Any]:
    """The chart's hub.db for `database.url` (none: the chart's own SQLite on the hub volume)."""
    if not settings.database.url:
        return {}
    url = effective_url(settings, StatePaths(HUB_STATE), env_url=None, password=None)
    return {"db": {"type": "postgres", "url": url}}


def database_env(settings: Settings) -> dict[str, Any]:
    """PGPASSWORD for the hub pod from a Kubernetes Secret: the password never enters values.yaml."""
    db = settings.database
    if not (db.url and (db.password_env or db.password_file)):
        return {}
    return {"PGPASSWORD": {"valueFrom": {"secretKeyRef": {"name": DATABASE_SECRET, "key": "password"}}}}


def embedded_settings(settings: Settings) -> str:
    """coursehub.yaml for the hub pod: what differs from the defaults, images resolved."""
    return yaml.safe_dump(settings.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def singleuser_values(settings: Settings) -> dict[str, Any]:
    """The chart's view of user pods (placeholders and the image puller read it)."""
    res = resources(settings.limits, settings.kubernetes.guarantee)
    storage = settings.kubernetes.storage
    volumes, mounts = shared_volumes(settings)
    del volumes["home"], mounts["home"]  # the chart adds the home volume itself
    return {
        "image": image_parts(course_image(settings, settings.courses[0])),
        "cmd": START_COMMAND,
        "defaultUrl": "/lab",
        "startTimeout": settings.hub.start_timeout,
        "uid": USER_ID,
        "fsGid": FS_GID,
        "allowPrivilegeEscalation": False,
        "cpu": {"limit": res["cpu_limit"], "guarantee": res["cpu_guarantee"]},
        "memory": {"limit": res["mem_limit"], "guarantee": res["mem_guarantee"]},
        "extraEnv": {"COURSEHUB_COURSE_SRC": COURSE_SRC},
        **({"extraFiles": grading.extra_files()} if grading.graders(settings) else {}),
        "storage": {
            "type": "dynamic",
            "capacity": quantity(storage.capacity),
            "homeMountPath": HOME,
            "dynamic": {
                "storageClass": storage.storage_class,
                "pvcNameTemplate": PVC_NAME,
                "storageAccessModes": [storage.access_mode],
            },
            "extraVolumes": [volumes[k] for k in sorted(volumes)],
            "extraVolumeMounts": [mounts[k] for k in sorted(mounts)],
        },
        "profileList": course_profiles(settings),
        "networkPolicy": network_policy(settings),
    }


def network_policy(settings: Settings) -> dict[str, Any]:
    """The chart's singleuser.networkPolicy from `network:`: the same allow and deny lists as locally."""
    from coursehub.spawner.netns import LINK_LOCAL, PRIVATE

    network = settings.network
    v4 = [cidr for cidr in network.deny if ":" not in cidr]
    egress: list[dict[str, Any]] = [{"to": [{"ipBlock": {"cidr": cidr}}]} for cidr in network.allow]
    if v4:
        # NetworkPolicy only allows: a denied range is carved out of the chart's "non-private"
        # rule, which is then written here instead.
        carved = [c for c in PRIVATE if ":" not in c] + [LINK_LOCAL[0], *v4]
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": carved}}]})
    return {
        "enabled": True,
        "egress": egress,
        "egressAllowRules": {
            "cloudMetadataServer": False,
            "dnsPortsPrivateIPs": True,
            "nonPrivateIPs": not v4,
            "privateIPs": False,
        },
    }


def prepuller_values(settings: Settings) -> dict[str, Any]:
    """Pull every course image onto every node before students arrive."""
    pull = settings.kubernetes.prepuller
    return {
        "hook": {"enabled": pull.hook},
        "continuous": {"enabled": pull.continuous},
        # extraImages lists the same images, by course name: pulling them twice buys nothing.
        "pullProfileListImages": False,
        "extraImages": {f"course-{c.name}": image_parts(course_image(settings, c)) for c in settings.courses},
    }


def scheduling_values(settings: Settings) -> dict[str, Any]:
    """User scheduler and placeholders, each placeholder as big as the largest course's server."""
    sched, guarantee = settings.kubernetes.scheduling, settings.kubernetes.guarantee
    sizes = [settings.course_limits(c) for c in settings.courses] or [settings.limits]
    memory = max(int(limits.memory * guarantee.memory) for limits in sizes)
    cpu = max(round(limits.cpu * guarantee.cpu, 3) for limits in sizes)
    placeholders = sched.user_placeholders > 0
    return {
        "userScheduler": {"enabled": sched.user_scheduler},
        # Real users may only evict placeholders when pod priority is on.
        "podPriority": {"enabled": placeholders},
        "userPlaceholder": {
            "enabled": placeholders,
            "replicas": sched.user_placeholders,
            "resources": {"requests": {"memory": quantity(memory), "cpu": cpu}},
        },
    }


def cull_values(settings: Settings) -> dict[str, Any]:
    """The chart's idle culler stops idle servers; it never deletes users (or their homes)."""
    culler = settings.culler
    return {
        "enabled": culler.enabled,
        "users": False,
        "removeNamedServers": False,
        "timeout": culler.timeout,
        "every": culler.every,
        "maxAge": culler.max_age,
    }


def render_notices(settings: Settings) -> list[str]:
    """What in `settings` does not carry over to Kubernetes, or works differently there."""
    notices = [notice for notice in [kubernetes_notice(settings), grading.notice(settings)] if notice]
    if "sandbox" in settings.model_fields_set:
        notices.append(
            "sandbox.* is ignored: each server is its own pod (non-root, no privilege "
            "escalation, all capabilities dropped) instead of a bubblewrap sandbox"
        )
    if "state_dir" in settings.hub.model_fields_set:
        notices.append(
            f"hub.state_dir is ignored: the hub database and workshop accounts live "
            f"on the chart's hub volume, at {HUB_STATE}"
        )
    ports = sorted({"ip", "port", "api_port", "proxy_api_port"} & settings.hub.model_fields_set)
    if ports:
        notices.append(
            f"hub.{', hub.'.join(ports)} ignored: the chart's proxy-public Service "
            "(or kubernetes.ingress) exposes the hub"
        )
    if "pids" in settings.limits.model_fields_set or any(c.limits.pids is not None for c in settings.courses):
        notices.append(
            "limits.pids is not applied per server: Kubernetes limits processes per "
            "pod for a whole node (the kubelet's podPidsLimit)"
        )
    if settings.disk_limited():
        notices.append(
            "limits.disk is not applied on Kubernetes: each home is a volume of its own, of "
            "kubernetes.storage.capacity"
        )
    if database_env(settings):
        notices.append(
            f"database password: the hub pod reads PGPASSWORD from the Secret {DATABASE_SECRET} "
            f"(`kubectl create secret generic {DATABASE_SECRET} --from-literal=password=...`), "
            "not from database.password_env/password_file"
        )
    if settings.auth.type == "workshop":
        notices.append(
            f"workshop accounts are kept in {HUB_STATE}/accounts.sqlite: create them "
            f"with `kubectl exec deploy/hub -- coursehub --state-dir {HUB_STATE} "
            "accounts create ...`"
        )
    if chart_subdomains(settings):
        notices.append(
            "hub.subdomains: users' servers are at <user>.<host>; point wildcard DNS *.<host> at the "
            "cluster, and with TLS give the Ingress (or your proxy) a certificate that covers *.<host>"
        )
    elif settings.hub.subdomains:
        notices.append(
            "hub.subdomains is off in these values: they name no host for the hub (hub.public_url or "
            "kubernetes.ingress.host), so every user's server shares the hub's origin and a student's "
            "page can act on the hub as whoever opens it; set a host name with wildcard DNS *.<host> "
            "(docs/security.md), or hub.subdomains: false to say this is meant"
        )
    if settings.culler.enabled and has_open_courses(settings):
        notices.append(
            f"idle temporary users are deleted with their homes by the "
            f"{TEMP_CULLER} service, which sees only members of the group "
            f"'{TEMPORARY_GROUP}'"
        )
    for course in settings.courses:
        if not is_remote(course.repo):
            notices.append(
                f"course '{course.name}': its repo is a local folder that pods cannot "
                "fetch, so students get the copy inside the image; use a git URL to "
                "update content without rebuilding"
            )
    return notices
