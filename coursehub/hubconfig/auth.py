"""The authenticator: settings.auth -> traits of the maintained authenticator of each provider."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from traitlets.config import Config

from coursehub.settings.auth import (
    LEGACY_ENTRY_POINTS,
    CASAuth,
    CILogonAuth,
    GitHubAuth,
    GoogleAuth,
    GroupAccess,
    LTI11Auth,
    LTI13Auth,
    OAuthClient,
    OIDCAuth,
    resolve_secret,
)

from ..paths import StatePaths
from ..settings import Settings
from .origins import hub_origin

if TYPE_CHECKING:
    from coursehub.hubconfig.runtime import Runtime

CLASSES = {
    "workshop": "workshop",
    "dummy": "dummy",
    "tmp": "coursehub.auth.sso.TemporaryUsersAuthenticator",
    "cas": "coursehub.auth.cas.CASAuthenticator",
    "github": "oauthenticator.github.GitHubOAuthenticator",
    "google": "oauthenticator.google.GoogleOAuthenticator",
    "cilogon": "oauthenticator.cilogon.CILogonOAuthenticator",
    "oidc": "oauthenticator.generic.GenericOAuthenticator",
    "lti13": "coursehub.auth.lti.LTI13CourseAuthenticator",
    "lti11": "coursehub.auth.lti.LTI11CourseAuthenticator",
}
Secrets = Callable[[str, str], str]


def authenticator_class(settings: Settings) -> str:
    """The authenticator's entry point name or import path."""
    auth = settings.auth
    if auth.type in LEGACY_ENTRY_POINTS and auth.provider() is None:
        return auth.type  # `type: github` alone: oauthenticator's entry point, configured by `jupyterhub:`
    return CLASSES.get(auth.type, auth.type)


def hub_url(settings: Settings, path: str) -> str:
    """An absolute URL of this hub (public_url, else the address it listens on)."""
    hub = settings.hub
    base = hub.public_url or (hub_origin(settings) if hub.subdomains else f"http://{hub.ip}:{hub.port}")
    return f"{base.rstrip('/')}/hub/{path}"


# Where the built-in TLS front end (Caddy) connects to the proxy from.
FRONT_END_ADDRESS = "127.0.0.1/32"


def trusted_proxies(settings: Settings) -> list[str]:
    """hub.trusted_proxies, plus the built-in TLS front end's address when tls is on."""
    proxies = list(settings.hub.trusted_proxies)
    if settings.tls.mode != "off" and FRONT_END_ADDRESS not in proxies:
        proxies.append(FRONT_END_ADDRESS)
    return proxies


def apply_auth(settings: Settings, runtime: Runtime, c: Config, secrets: Secrets = resolve_secret) -> None:
    """Authenticator class and traits; `secrets` turns 'env:'/'file:' references into values."""
    auth = settings.auth
    c.JupyterHub.authenticator_class = authenticator_class(settings)
    c.Authenticator.courses_root = str(runtime.paths.courses)
    c.Authenticator.tmp_per_client_per_minute = settings.temporary.per_client_per_minute
    c.Authenticator.trusted_proxies = trusted_proxies(settings)
    if settings.tls.mode != "off":
        c.Authenticator.tls_ask_key_file = str(runtime.paths.tls_ask_key)
        c.Authenticator.tls_hub_host = (urlsplit(settings.hub.public_url or "").hostname or "").lower()
    provider = auth.provider()
    if provider is not None and auth.type != "workshop":
        c.Authenticator.admin_users = provider_admins(settings)
    if auth.type == "workshop":
        c.WorkshopAuthenticator.accounts_db = str(runtime.paths.accounts)
        c.WorkshopAuthenticator.max_failures = auth.lockout.max_failures
        c.WorkshopAuthenticator.failure_window = auth.lockout.window
        c.WorkshopAuthenticator.lockout_seconds = auth.lockout.lockout
    elif auth.type in ("dummy", "tmp"):
        c.Authenticator.allow_all = True
    elif isinstance(provider, GitHubAuth):
        apply_github(settings, provider, c.GitHubOAuthenticator, secrets)
    elif isinstance(provider, GoogleAuth):
        apply_google(settings, provider, c.GoogleOAuthenticator, secrets)
    elif isinstance(provider, CILogonAuth):
        apply_cilogon(settings, provider, c.CILogonOAuthenticator, secrets)
    elif isinstance(provider, OIDCAuth):
        apply_oidc(settings, provider, c.GenericOAuthenticator, secrets)
    elif isinstance(provider, CASAuth):
        apply_cas(settings, provider, c.CASAuthenticator)
    elif isinstance(provider, LTI13Auth):
        apply_lti13(provider, c.LTI13CourseAuthenticator, runtime.paths)
    elif isinstance(provider, LTI11Auth):
        apply_lti11(provider, c.LTI11CourseAuthenticator, secrets)


def provider_admins(settings: Settings, extra: list[str] | None = None) -> set[str]:
    """Admins under a login provider: hub.admin_users as given (empty by default) and the provider's own."""
    return set(settings.admin_users()) | set(extra or [])


def apply_access(settings: Settings, access: Any, section: Any) -> None:
    """allow_all, allowed_users and admin_users (with hub.admin_users), on one class section."""
    section.allow_all = access.allow_all
    if access.allowed_users:
        section.allowed_users = set(access.allowed_users)
    # A class section wins over c.Authenticator: repeat the hub's admins here.
    section.admin_users = provider_admins(settings, access.admin_users)


def apply_groups(access: GroupAccess, section: Any) -> None:
    """Groups from the provider become JupyterHub groups (so they work as course rosters)."""
    if not access.groups_claim:
        return
    section.manage_groups = True
    section.auth_state_groups_key = f"oauth_user.{access.groups_claim}"
    section.allowed_groups = set(access.allowed_groups)
    section.admin_groups = set(access.admin_groups)


def apply_oauth_client(
    settings: Settings, client: OAuthClient, name: str, section: Any, secrets: Secrets
) -> None:
    """Client ID, secret (resolved from its reference), callback URL and scopes."""
    section.client_id = client.client_id
    section.client_secret = secrets(client.client_secret, f"auth.{name}.client_secret")
    section.oauth_callback_url = client.callback_url or hub_url(settings, "oauth_callback")
    if client.scopes is not None:
        section.scope = list(client.scopes)


def apply_github(settings: Settings, gh: GitHubAuth, section: Any, secrets: Secrets) -> None:
    """GitHub: organisations and teams allow; teams can become groups (and admins)."""
    apply_oauth_client(settings, gh, "github", section, secrets)
    apply_access(settings, gh, section)
    section.github_url = gh.url.rstrip("/")
    if gh.api_url:
        section.github_api = gh.api_url.rstrip("/")
    if gh.allowed_organizations:
        section.allowed_organizations = set(gh.allowed_organizations)
    if gh.teams_as_groups:
        from ..auth.sso import github_team_groups

        section.populate_teams_in_auth_state = True
        section.manage_groups = True
        section.auth_state_groups_key = github_team_groups
        section.admin_groups = set(gh.admin_teams)
        if gh.scopes is None:
            section.scope = ["read:user", "read:org"]


def apply_google(settings: Settings, google: GoogleAuth, section: Any, secrets: Secrets) -> None:
    """Google: Workspace domains allow."""
    apply_oauth_client(settings, google, "google", section, secrets)
    apply_access(settings, google, section)
    if google.hosted_domains:
        section.hosted_domain = list(google.hosted_domains)
        section.strip_domain = google.strip_domain
        # oauthenticator's hosted_domain only *blocks* other domains; without allowed_users,
        # everyone of the domains is allowed (that is what "allow by domain" means here).
        section.allow_all = google.allow_all or not google.allowed_users


def apply_cilogon(settings: Settings, ci: CILogonAuth, section: Any, secrets: Secrets) -> None:
    """CILogon: identity providers allow (each with its username rule)."""
    apply_oauth_client(settings, ci, "cilogon", section, secrets)
    apply_access(settings, ci, section)
    apply_groups(ci, section)
    section.cilogon_host = ci.host
    section.allowed_idps = {entity: cilogon_idp(idp) for entity, idp in ci.idps.items()}


def cilogon_idp(idp: Any) -> dict[str, Any]:
    """One entry of CILogonOAuthenticator.allowed_idps."""
    derivation: dict[str, Any] = {"username_claim": idp.username_claim}
    if idp.strip_domain:
        derivation.update(action="strip_idp_domain", domain=idp.strip_domain)
    elif idp.prefix:
        derivation.update(action="prefix", prefix=idp.prefix)
    entry: dict[str, Any] = {"username_derivation": derivation, "allow_all": idp.allow_all}
    if idp.allowed_domains:
        entry["allowed_domains"] = list(idp.allowed_domains)
    return entry


def apply_oidc(settings: Settings, oidc: OIDCAuth, section: Any, secrets: Secrets) -> None:
    """Any OIDC provider: endpoints, username claim, groups (or any list claim) allow and admin."""
    apply_oauth_client(settings, oidc, "oidc", section, secrets)
    apply_access(settings, oidc, section)
    apply_groups(oidc, section)
    section.authorize_url = oidc.authorize_url
    section.token_url = oidc.token_url
    section.userdata_url = oidc.userdata_url
    section.username_claim = oidc.username_claim
    section.login_service = oidc.login_service


def apply_cas(settings: Settings, cas: CASAuth, section: Any) -> None:
    """CAS: server, protocol, attributes for username and groups."""
    apply_access(settings, cas, section)
    section.cas_server_url = cas.server_url
    section.cas_protocol = cas.protocol
    section.cas_service_url = cas.service_url or hub_url(settings, "cas/login")
    section.username_attribute = cas.username_attribute or ""
    section.login_service = cas.login_service
    if cas.groups_claim:
        section.manage_groups = True
        section.groups_attribute = cas.groups_claim
        section.allowed_groups = set(cas.allowed_groups)
        section.admin_groups = set(cas.admin_groups)


def apply_lti_mapping(lti: LTI13Auth | LTI11Auth, section: Any) -> None:
    """Course mapping and roles; every launch the platform signs is allowed in."""
    section.allow_all = True
    section.contexts = dict(lti.contexts)
    section.label_contexts = dict(lti.label_contexts)
    section.course_param = lti.course_param
    section.param_courses = list(lti.param_courses)
    section.notebook_param = lti.notebook_param
    section.instructor_roles = list(lti.instructor_roles)
    section.instructors_are_admins = lti.instructors_are_admins


def apply_lti13(lti: LTI13Auth, section: Any, paths: StatePaths) -> None:
    """LTI 1.3: the platform's issuer, client IDs, endpoints and key set; where launches are kept (AGS)."""
    apply_lti_mapping(lti, section)
    section.issuer = lti.issuer
    section.client_id = set(lti.client_ids)
    section.authorize_url = lti.authorize_url
    section.jwks_endpoint = lti.jwks_url
    section.username_key = lti.username_claim
    section.ags_store = str(paths.lti_grades)
    section.tool_key_file = str(paths.lti_tool_key)


def apply_lti11(lti: LTI11Auth, section: Any, secrets: Secrets) -> None:
    """LTI 1.1: consumer keys and their shared secrets."""
    apply_lti_mapping(lti, section)
    section.consumers = {
        key: secrets(ref, f"auth.lti11.consumers.{key}") for key, ref in lti.consumers.items()
    }
    section.username_key = lti.username_key


def secret_references(settings: Settings) -> list[str]:
    """The 'env:'/'file:' references the configured provider needs at hub start."""
    provider = settings.auth.provider()
    if isinstance(provider, OAuthClient):
        return [provider.client_secret]
    if isinstance(provider, LTI11Auth):
        return list(provider.consumers.values())
    return []


def kubernetes_notice(settings: Settings) -> str | None:
    """What an SSO provider needs in the chart's hub pod (its packages and its secrets)."""
    # CAS is coursehub's own authenticator and has no secret: nothing to add.
    if settings.auth.provider() is None or settings.auth.type in ("workshop", "cas"):
        return None
    needs = f"auth.{settings.auth.type} needs coursehub[sso] in the hub image"
    refs = secret_references(settings)
    if refs:
        needs += (
            f" and its secrets ({', '.join(refs)}) in the hub pod: hub.extraEnv from a Kubernetes "
            "Secret for env:, or hub.extraFiles with mode 0600 for file:"
        )
    return needs
