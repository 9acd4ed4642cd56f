"""The `tls:` section: HTTPS built in, Caddy in front of the proxy with ACME or the admin's certificate."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from coursehub.settings.base import Model

LETS_ENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"
LETS_ENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"
# Values end up as Caddyfile tokens: nothing that could end a token, open a block or a placeholder.
_CADDY_UNSAFE = re.compile(r'[\s"{}\\`#]')
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_ACME_KEYS = ("email", "staging", "acme_directory", "acme_ca_root")
_FILE_KEYS = ("cert_file", "key_file")


def caddy_safe(value: str, key: str) -> str:
    """`value` unchanged, or ValueError when it cannot be written into a Caddyfile as one token."""
    if _CADDY_UNSAFE.search(value):
        raise ValueError(f"tls.{key}: {value!r} contains a space, quote, brace, backslash or '#'; rename it")
    return value


class TLSSettings(Model):
    """HTTPS on one machine: Caddy (Debian's caddy) terminates TLS in front of the proxy."""

    mode: Literal["off", "acme", "files"] = Field(
        "off",
        description="'off': plain HTTP (the local default, or your own TLS proxy in front); 'acme': "
        "certificates from Let's Encrypt or another ACME directory; 'files': the admin's certificate "
        "and key (a wildcard one for hub.subdomains). Needs hub.public_url: https://<host name>/.",
    )
    email: str | None = Field(None, description="ACME account e-mail (mode acme).")
    staging: bool = Field(
        False,
        description="Use Let's Encrypt's staging directory (untrusted certificates, generous rate limits) "
        "to try a setup out (mode acme).",
    )
    acme_directory: str | None = Field(
        None, description="Any ACME directory URL instead of Let's Encrypt's (mode acme)."
    )
    acme_ca_root: Path | None = Field(
        None,
        description="PEM file of a CA to trust for acme_directory's own HTTPS, for a private or test ACME "
        "server (mode acme).",
    )
    cert_file: Path | None = Field(
        None,
        description="PEM certificate chain for the hub's host and, with hub.subdomains, *.<host> "
        "(mode files).",
    )
    key_file: Path | None = Field(None, description="PEM private key of cert_file (mode files), 0600 root.")
    http_port: int = Field(
        80,
        ge=1,
        le=65535,
        description="Port where http:// requests are redirected to https:// (and ACME's HTTP challenge "
        "is answered: Let's Encrypt needs 80).",
    )
    hsts_max_age: int = Field(
        31536000,
        ge=0,
        description="Seconds browsers remember to use only HTTPS (Strict-Transport-Security); 0 sends none.",
    )

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"tls.email: {value!r} is not an e-mail address such as admin@example.org")
        return None if value is None else caddy_safe(value, "email")

    @field_validator("acme_directory")
    @classmethod
    def _directory(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https://[^/\s]+(/\S*)?$", value):
            raise ValueError(
                f"tls.acme_directory: {value!r} is not an https:// URL of an ACME directory, "
                f"e.g. {LETS_ENCRYPT}"
            )
        return None if value is None else caddy_safe(value, "acme_directory")

    @field_validator("acme_ca_root", "cert_file", "key_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        if value is not None:
            if not value.is_absolute():
                raise ValueError(f"{value} must be an absolute path")
            caddy_safe(str(value), "file")
        return value

    @model_validator(mode="after")
    def _mode_keys(self) -> TLSSettings:
        set_keys = [key for key in _ACME_KEYS + _FILE_KEYS if getattr(self, key) not in (None, False)]
        if self.mode == "off" and set_keys:
            raise ValueError(f"tls.{set_keys[0]} is set but tls.mode is off: set tls.mode to acme or files")
        if self.mode == "acme":
            stray = [key for key in _FILE_KEYS if getattr(self, key) is not None]
            if stray:
                raise ValueError(
                    f"tls.{stray[0]} is for tls.mode files; mode acme obtains certificates itself"
                )
            if self.staging and self.acme_directory:
                raise ValueError(
                    "tls.staging picks Let's Encrypt's staging directory; with tls.acme_directory set, "
                    "remove tls.staging"
                )
            if self.acme_ca_root and not self.acme_directory:
                raise ValueError(
                    "tls.acme_ca_root is for a private ACME server: set tls.acme_directory to its URL "
                    "(Let's Encrypt needs no extra root)"
                )
        if self.mode == "files":
            if self.cert_file is None or self.key_file is None:
                raise ValueError("tls.mode files needs tls.cert_file and tls.key_file (PEM files)")
            stray = [key for key in _ACME_KEYS if getattr(self, key) not in (None, False)]
            if stray:
                raise ValueError(f"tls.{stray[0]} is for tls.mode acme; mode files uses your certificate")
        return self

    def directory(self) -> str:
        """The ACME directory Caddy asks (mode acme)."""
        if self.acme_directory:
            return self.acme_directory
        return LETS_ENCRYPT_STAGING if self.staging else LETS_ENCRYPT


def https_port(public_url: str) -> int:
    """The port users reach HTTPS at: hub.public_url's, else 443."""
    return urlsplit(public_url).port or 443
