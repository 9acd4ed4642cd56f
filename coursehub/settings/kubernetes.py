"""The `kubernetes:` section of coursehub.yaml: read only by the Zero to JupyterHub deployment."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from coursehub import __version__
from coursehub.settings.base import Model, parse_size

HUB_IMAGE = "ghcr.io/coursehub/coursehub-hub"
# The Zero to JupyterHub release hub-image/Dockerfile builds on, and the JupyterHub inside it:
# course images get the same jupyterhub-singleuser so that hub and servers speak one version.
CHART_VERSION = "4.4.0"
CHART_JUPYTERHUB = "5.5.0"
# The layout of user pods, shared by course images and the hub config.
USER_NAME, USER_ID, FS_GID = "jovyan", 1000, 100  # the user Zero to JupyterHub expects
HOME = f"/home/{USER_NAME}"
COURSE_SRC = "/srv/coursehub/course"  # where repo2docker puts the course inside its image

_K8S_NAME = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
_K8S_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT])i\s*$")


def parse_capacity(value: Any) -> int:
    """Bytes from a Kubernetes quantity ('10Gi') or a coursehub size ('10G', 10737418240)."""
    match = _K8S_QUANTITY.match(value) if isinstance(value, str) else None
    return parse_size(f"{match.group(1)}{match.group(2)}" if match else value)


def split_image(image: str) -> tuple[str, str]:
    """('registry/name', 'tag') of an image reference; the tag is required."""
    name, sep, tag = image.rpartition(":")
    if not sep or not name or "/" in tag or "@" in image or not tag:
        example = image.split("@")[0].rstrip(":")
        raise ValueError(f"image {image!r} needs an explicit tag, e.g. {example}:2025-09")
    return name, tag


class HubImage(Model):
    """The hub image: the chart's own plus coursehub (built from hub-image/Dockerfile)."""

    name: str = Field(HUB_IMAGE, description="Image name, without the tag.")
    tag: str = Field(__version__, description="Image tag (default: this coursehub's version).")


class Storage(Model):
    """Each user's home: one PersistentVolumeClaim, created on first start."""

    capacity: int = Field(10 * 1024**3, description="Size of each home, e.g. 10Gi.")
    storage_class: str | None = Field(
        None, description="StorageClass of homes (default: the cluster's default class)."
    )
    access_mode: Literal["ReadWriteOnce", "ReadWriteMany"] = Field(
        "ReadWriteOnce",
        description="ReadWriteMany lets one student's course servers run on different nodes; "
        "it needs a storage_class that supports it.",
    )

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, value: Any) -> int:
        return parse_capacity(value)


class NfsSource(Model):
    """An NFS export."""

    server: str = Field(min_length=1, description="NFS server host name or address.")
    path: str = Field(pattern=r"^/", description="Exported path on the server.")


class SharedVolume(Model):
    """A folder every user's server mounts, from an existing PVC or an NFS export."""

    pvc: str | None = Field(None, pattern=_K8S_NAME, description="Existing PVC name.")
    nfs: NfsSource | None = Field(None, description="An NFS export instead of a PVC.")
    sub_path: str | None = Field(None, description="Folder inside the volume to mount.")
    mount_path: str = Field(f"{HOME}/shared", pattern=r"^/", description="Where users see it.")

    @model_validator(mode="after")
    def _one_source(self) -> SharedVolume:
        if (self.pvc is None) == (self.nfs is None):
            raise ValueError(
                "set exactly one of pvc (an existing PersistentVolumeClaim) or nfs: {server, path}"
            )
        return self


class SharedScratch(SharedVolume):
    """A read-write folder shared by everyone (the workshop scratch space)."""

    mount_path: str = Field(f"{HOME}/scratch", pattern=r"^/", description="Where users see it.")


class SharedVolumes(Model):
    """Course data (read-only for users) and scratch space (read-write), both optional."""

    data: SharedVolume | None = Field(None, description="Read-only shared data.")
    scratch: SharedScratch | None = Field(None, description="Read-write shared scratch space.")


class Guarantee(Model):
    """What the scheduler reserves per server, as a fraction of its limit (overcommit)."""

    memory: float = Field(0.5, gt=0, le=1, description="Memory guarantee / memory limit.")
    cpu: float = Field(0.25, gt=0, le=1, description="CPU guarantee / CPU limit.")


class Scheduling(Model):
    """Pod placement: warm room for arriving students, and packing users onto few nodes."""

    user_placeholders: int = Field(
        0, ge=0, description="Placeholder pods, each the size of one user, kept ready."
    )
    user_scheduler: bool = Field(True, description="Pack user pods onto the busiest nodes.")


class PrePuller(Model):
    """Pulling course images onto nodes before students arrive."""

    hook: bool = Field(True, description="Pull on every node during `helm upgrade`.")
    continuous: bool = Field(True, description="Pull on nodes that join later.")


class Ingress(Model):
    """Expose the hub through an Ingress at a host name (else: the proxy-public Service)."""

    host: str = Field(min_length=1, description="Public host name, e.g. hub.example.edu.")
    class_name: str | None = Field(None, description="IngressClass (default: the cluster's).")
    tls_secret: str | None = Field(
        None, pattern=_K8S_NAME, description="Secret with the TLS certificate for host."
    )


class KubernetesSettings(Model):
    """Deploying on Kubernetes with the Zero to JupyterHub chart (`coursehub render kubernetes`)."""

    hub_image: HubImage = Field(default_factory=HubImage)
    image_registry: str | None = Field(
        None,
        description="Registry prefix for course images built by `coursehub course image`: "
        "<prefix>/<course>:<hash of its environment>.",
    )
    storage: Storage = Field(default_factory=Storage)
    shared: SharedVolumes = Field(default_factory=SharedVolumes)
    guarantee: Guarantee = Field(default_factory=Guarantee)
    scheduling: Scheduling = Field(default_factory=Scheduling)
    prepuller: PrePuller = Field(default_factory=PrePuller)
    ingress: Ingress | None = Field(None, description="Serve the hub at a host name.")

    @field_validator("image_registry")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is not None and (not value.strip("/") or ":" in value.rsplit("/", 1)[-1]):
            raise ValueError(f"{value!r} is not a registry prefix, e.g. ghcr.io/my-org/courses")
        return value.rstrip("/") if value else value


class CourseKubernetes(Model):
    """Per-course Kubernetes settings."""

    image: str | None = Field(
        None,
        description="Image of this course's servers (name:tag); default: built by "
        "`coursehub course image` into kubernetes.image_registry.",
    )
    shared_data: SharedVolume | None = Field(
        None, description="Read-only data for this course only (replaces kubernetes.shared.data)."
    )

    @field_validator("image")
    @classmethod
    def _image(cls, value: str | None) -> str | None:
        if value is not None:
            split_image(value)
        return value
