"""The `binder:` section: the BinderHub-compatible API for thebe and Jupyter Book launch buttons."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from coursehub.settings.base import Model, Size

_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class BinderSettings(Model):
    """Anonymous, short-lived servers for web pages with runnable cells (served at /hub/binder)."""

    enabled: bool = Field(True, description="Serve /hub/binder/build and /hub/binder/v2 for open courses.")
    allow_any_repo: bool = Field(
        False,
        description="Also build and serve repositories that are not registered courses "
        "(https:// URLs only; built with the course environment builder).",
    )
    allowed_origins: list[str] = Field(
        [],
        description="Web origins (e.g. https://book.example.org) whose pages may call the build "
        "API and the launched servers; '*' allows any. Empty: no other origin.",
    )
    memory: Size = Field(512 * 1024**2, description="Memory limit of each anonymous server, e.g. 512M.")
    cpu: float = Field(0.5, gt=0, le=64, description="CPU limit of each anonymous server, in cores.")
    max_age: int = Field(3600, ge=60, description="Seconds after which an anonymous server is deleted.")
    idle_timeout: int = Field(
        600, ge=60, description="Idle seconds after which an anonymous server is deleted with its files."
    )
    max_per_repo: int = Field(50, ge=1, description="Anonymous servers at once per repository.")
    max_total: int = Field(100, ge=1, description="Anonymous servers at once on this hub.")
    per_client_per_minute: int = Field(
        60,
        ge=1,
        description="Launches one client address may ask for per minute (a class behind one "
        "school NAT shares an address: keep this above the class size).",
    )

    @field_validator("allowed_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not _ORIGIN.match(origin):
                raise ValueError(
                    f"'{origin}' is not an origin: write scheme://host[:port] with no path, "
                    "e.g. https://book.example.org"
                )
        return [origin.rstrip("/") for origin in value]
