"""The `auth` section of coursehub.yaml: one typed sub-section per way of logging in."""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from coursehub.errors import ConfigError
from coursehub.settings.base import COURSE_NAME, Model

# Before the sub-sections, `type: github` (an entry point) was configured through `jupyterhub:`; still is.
LEGACY_ENTRY_POINTS = ("github", "google", "cilogon")
PROVIDERS = ("workshop", "cas", "github", "google", "cilogon", "oidc", "lti13", "lti11", "tmp")
_ENV = re.compile(r"^env:[A-Za-z_][A-Za-z0-9_]*$")


def _secret_reference(value: str) -> str:
    """Only references are accepted: a secret written in coursehub.yaml would leak with it."""
    if _ENV.match(value) or (value.startswith("file:/") and len(value) > 6):
        return value
    raise ValueError(
        "secrets are never written in coursehub.yaml: give 'env:VARIABLE' (an environment "
        "variable of the hub) or 'file:/absolute/path' (a file only its owner can read, mode 0600)"
    )


SecretRef = Annotated[
    str,
    AfterValidator(_secret_reference),
    Field(description="'env:NAME' or 'file:/path' (mode 0600); never the secret itself."),
]


def resolve_secret(reference: str, where: str = "a secret") -> str:
    """The value behind 'env:NAME' or 'file:/path'; ConfigError when missing or readable by others."""
    kind, _, target = reference.partition(":")
    if kind == "env":
        value = os.environ.get(target, "")
        if not value:
            raise ConfigError(f"{where}: the environment variable {target} is not set (or empty)")
        return value
    path = Path(target)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{where}: {path} is readable by others: run `chmod 600 {path}`")
    value = path.read_text().strip()
    if not value:
        raise ConfigError(f"{where}: {path} is empty")
    return value


class LockoutSettings(Model):
    """Slowing and locking out repeated failed logins."""

    max_failures: int = Field(5, ge=1, description="Failures before a lockout.")
    window: float = Field(300, gt=0, description="Seconds in which failures are counted.")
    lockout: float = Field(600, gt=0, description="Seconds an account or client stays locked.")


class WorkshopAuth(Model):
    """Pre-generated accounts (`coursehub accounts create`): the default."""


class Access(Model):
    """Who of the provider's users may log in, and who is an admin."""

    allow_all: bool = Field(False, description="Anyone the provider authenticates may log in.")
    allowed_users: list[str] = Field([], description="Usernames allowed to log in.")
    admin_users: list[str] = Field([], description="Usernames made admins (with hub.admin_users).")


class GroupAccess(Access):
    """Access by group membership sent by the provider; its groups become JupyterHub groups."""

    groups_claim: str | None = Field(
        None,
        description="Claim/attribute listing the user's groups (dots for nested keys); they become "
        "JupyterHub groups, usable in course rosters as 'group:<name>'.",
    )
    allowed_groups: list[str] = Field([], description="Members of these groups may log in.")
    admin_groups: list[str] = Field([], description="Members of these groups are admins.")

    @model_validator(mode="after")
    def _groups_need_claim(self) -> GroupAccess:
        if (self.allowed_groups or self.admin_groups) and not self.groups_claim:
            raise ValueError("allowed_groups/admin_groups need groups_claim (where the groups come from)")
        return self


class OAuthClient(Model):
    """The OAuth client registered at the provider."""

    client_id: str = Field(description="Client ID given by the provider.")
    client_secret: SecretRef
    callback_url: str | None = Field(
        None, description="Default: <hub.public_url>/hub/oauth_callback (register it at the provider)."
    )
    scopes: list[str] | None = Field(None, description="Scopes to request (default: the provider's).")


class GitHubAuth(OAuthClient, Access):
    """GitHub (or GitHub Enterprise) accounts."""

    url: str = Field("https://github.com", description="GitHub or GitHub Enterprise base URL.")
    api_url: str | None = Field(None, description="API URL (default: derived from url).")
    allowed_organizations: list[str] = Field(
        [], description="Members of these organisations ('org') or teams ('org:team') may log in."
    )
    teams_as_groups: bool = Field(
        False, description="Each 'org:team' of the user becomes a JupyterHub group (asks for read:org)."
    )
    admin_teams: list[str] = Field([], description="Members of these 'org:team' are admins.")

    @model_validator(mode="after")
    def _admin_teams_need_groups(self) -> GitHubAuth:
        if self.admin_teams and not self.teams_as_groups:
            raise ValueError("admin_teams needs teams_as_groups: true")
        return self


class GoogleAuth(OAuthClient, Access):
    """Google accounts, optionally limited to Workspace domains."""

    hosted_domains: list[str] = Field(
        [],
        description="Accounts of these Google Workspace domains may log in (all of them, or only "
        "allowed_users when that is set); other domains never.",
    )
    strip_domain: bool = Field(True, description="Username without '@domain' (one domain only).")


class CILogonIdP(Model):
    """One identity provider allowed through CILogon."""

    username_claim: str = Field("email", description="Claim giving the username (eppn, email...).")
    strip_domain: str | None = Field(None, description="Strip '@<this>' from usernames.")
    prefix: str | None = Field(None, description="Prefix usernames with '<this>:'.")
    allow_all: bool = Field(False, description="Every user of this IdP may log in.")
    allowed_domains: list[str] = Field([], description="Users with these email domains may log in.")


class CILogonAuth(OAuthClient, GroupAccess):
    """CILogon: research and education identity providers (InCommon, eduGAIN)."""

    host: str = Field("cilogon.org", description="CILogon host (test.cilogon.org for testing).")
    idps: dict[str, CILogonIdP] = Field(
        description="Allowed identity providers by EntityID (https://cilogon.org/idplist)."
    )


class OIDCAuth(OAuthClient, GroupAccess):
    """Any OpenID Connect / OAuth 2 provider (Keycloak, Azure AD, Okta, Authentik...)."""

    authorize_url: str = Field(description="The provider's authorization endpoint.")
    token_url: str = Field(description="The provider's token endpoint.")
    userdata_url: str = Field(description="The provider's userinfo endpoint.")
    username_claim: str = Field("preferred_username", description="Claim giving the username.")
    login_service: str = Field("single sign-on", description="Name on the login button.")
    scopes: list[str] | None = Field(["openid", "profile", "email"], description="Scopes to request.")


class CASAuth(GroupAccess):
    """CAS (Apereo CAS and compatible), protocol 2 or 3."""

    server_url: str = Field(description="CAS base URL, e.g. https://cas.example.edu/cas (https only).")
    protocol: Literal[2, 3] = Field(3, description="3: attributes in /p3/serviceValidate; 2: none.")
    service_url: str | None = Field(
        None, description="Service URL registered at CAS (default: <hub.public_url>/hub/cas/login)."
    )
    username_attribute: str | None = Field(None, description="Attribute to use instead of the CAS user.")
    login_service: str = Field("CAS", description="Name on the login button.")

    @field_validator("server_url")
    @classmethod
    def _https_only(cls, value: str) -> str:
        # Ticket validation answers name the user: over plain HTTP anyone on the path could forge one.
        if not value.lower().startswith("https://") or len(value) <= len("https://"):
            raise ValueError(
                f"the CAS server must be reached over https (got {value!r}): use its https:// URL"
            )
        return value


class LTIMapping(Model):
    """Where an LMS launch lands and what LMS roles mean."""

    contexts: dict[str, Annotated[str, Field(pattern=COURSE_NAME)]] = Field(
        {}, description="LMS context (course) id -> coursehub course."
    )
    label_contexts: dict[str, Annotated[str, Field(pattern=COURSE_NAME)]] = Field(
        {},
        description="LMS context label -> coursehub course, when ids are not known in advance (whoever "
        "can give an LMS course this label lands in the course).",
    )
    course_param: str = Field("course", description="Custom parameter naming the course directly.")
    param_courses: list[Annotated[str, Field(pattern=COURSE_NAME)]] = Field(
        [],
        description="Courses course_param may name (any LMS instructor can set it); others are ignored.",
    )
    notebook_param: str = Field("notebook", description="Custom parameter naming the notebook to open.")
    instructor_roles: list[str] = Field(
        ["Instructor", "Administrator", "ContentDeveloper", "TeachingAssistant"],
        description="LMS context roles (short names or full URIs) that make a user an instructor; "
        "institution and system roles never do.",
    )
    instructors_are_admins: bool = Field(
        False, description="Instructors get JupyterHub admin rights (and other launches lose them)."
    )


class LTI13Auth(LTIMapping):
    """LTI 1.3 (Canvas, Moodle, Blackboard, Brightspace, Open edX) as the external tool."""

    issuer: str = Field(description="The platform's issuer (iss claim).")
    client_ids: list[str] = Field(min_length=1, description="Client ID(s) of the tool at the platform.")
    authorize_url: str = Field(description="The platform's OIDC authorization endpoint.")
    jwks_url: str = Field(description="The platform's public key set (JWKS) URL.")
    username_claim: str = Field(
        "sub", description="Claim for the username ('custom_<name>' for a custom parameter)."
    )
    token_url: str = Field(
        "",
        description="The platform's OAuth 2 token endpoint, for posting grades (Assignment and Grade "
        "Services); empty: no grades are posted.",
    )
    token_audience: str = Field(
        "", description="The aud of the tool's token requests, when the platform wants other than token_url."
    )


class LTI11Auth(LTIMapping):
    """LTI 1.1 (legacy LMS integrations), OAuth 1 signed launches."""

    consumers: dict[str, SecretRef] = Field(
        min_length=1, description="Consumer key -> its shared secret reference."
    )
    username_key: str = Field("user_id", description="Launch parameter giving the username.")


class TmpAuth(Model):
    """Every visitor gets a fresh temporary user (put an SSO proxy or network limits in front)."""


class AuthSettings(Model):
    """Who may log in."""

    type: str = Field(
        "workshop",
        description="The provider in use: workshop, cas, github, google, cilogon, oidc, lti13, lti11, "
        "tmp (each configured in its sub-section), 'dummy' (demos only), or any JupyterHub "
        "authenticator entry point or import path. Default: the one sub-section given, else workshop.",
    )
    lockout: LockoutSettings = Field(default_factory=LockoutSettings)
    workshop: WorkshopAuth | None = None
    cas: CASAuth | None = None
    github: GitHubAuth | None = None
    google: GoogleAuth | None = None
    cilogon: CILogonAuth | None = None
    oidc: OIDCAuth | None = None
    lti13: LTI13Auth | None = None
    lti11: LTI11Auth | None = None
    tmp: TmpAuth | None = None

    @model_validator(mode="after")
    def _one_provider(self) -> AuthSettings:
        given = [name for name in PROVIDERS if getattr(self, name) is not None]
        if "type" not in self.model_fields_set and len(given) == 1:
            # Not through __setattr__: validate_assignment would re-enter this validator.
            self.__dict__["type"] = given[0]
        elif "type" not in self.model_fields_set and len(given) > 1:
            raise ValueError(f"several providers configured ({', '.join(given)}): choose one with auth.type")
        if (
            self.type in PROVIDERS
            and self.type not in ("workshop", "tmp", *LEGACY_ENTRY_POINTS)
            and getattr(self, self.type) is None
        ):
            raise ValueError(f"auth.type is '{self.type}' but there is no auth.{self.type} section")
        return self

    def provider(self) -> Model | None:
        """The sub-section of the provider in use (None for plugins, legacy entry points and 'dummy')."""
        if self.type not in PROVIDERS or (
            self.type in LEGACY_ENTRY_POINTS and getattr(self, self.type) is None
        ):
            return None
        return getattr(self, self.type) or {"workshop": WorkshopAuth, "tmp": TmpAuth}[self.type]()
