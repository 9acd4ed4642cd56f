"""coursehub.yaml, modelled once: defaults, validation and the JSON schema all come from here."""

from __future__ import annotations

import ipaddress
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from coursehub.settings.auth import AuthSettings, LockoutSettings, SecretRef
from coursehub.settings.base import COURSE_NAME, Model, Size, format_size, parse_size
from coursehub.settings.binder import BinderSettings
from coursehub.settings.database import DatabaseSettings
from coursehub.settings.kubernetes import CourseKubernetes, KubernetesSettings
from coursehub.settings.tls import TLSSettings, https_port

__all__ = ["COURSE_NAME", "AuthSettings", "LockoutSettings", "Model", "format_size", "parse_size"]


class Limits(Model):
    """Resources one user server (with its kernels) may use."""

    memory: Size = Field(2 * 1024**3, description="Memory limit per server, e.g. 512M or 2G.")
    cpu: float = Field(1.0, gt=0, le=1024, description="CPU limit per server, in cores.")
    pids: int = Field(512, ge=16, le=1_000_000, description="Maximum processes per server.")
    disk: Size | None = Field(
        None,
        ge=1024**2,
        description="Quota on each student's home, e.g. 5G (a project quota: the homes' file system must "
        "be ext4 with the project and quota features, or XFS, mounted with prjquota). Unset: no quota.",
    )


class PartialLimits(Model):
    """Per-course overrides of the global limits; unset keys inherit."""

    memory: Size | None = Field(None, description="Memory limit per server, e.g. 512M.")
    cpu: float | None = Field(None, gt=0, le=1024, description="CPU limit, in cores.")
    pids: int | None = Field(None, ge=16, le=1_000_000, description="Maximum processes.")
    disk: Size | None = Field(
        None, ge=1024**2, description="Quota on the home of each student who opens this course, e.g. 10G."
    )

    def over(self, base: Limits) -> Limits:
        """These overrides applied on top of `base`."""
        return base.model_copy(update=self.model_dump(exclude_none=True))


class HubSettings(Model):
    """Where the hub listens and how it treats spawns."""

    ip: str = Field(
        "127.0.0.1",
        description="Address the proxy listens on: 127.0.0.1 serves this machine alone; an address the "
        "network reaches (0.0.0.0) needs hub.public_url with a host name, or hub.subdomains: false.",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port the proxy listens on.")
    api_port: int = Field(8081, ge=1, le=65535, description="Port of the hub's own API.")
    proxy_api_port: int = Field(8001, ge=1, le=65535, description="Port of the proxy's API.")
    public_url: str | None = Field(None, description="URL users reach (for cards and links).")
    trusted_proxies: list[str] = Field(
        [],
        description="Reverse proxies in front of the hub (CIDRs or addresses): per-address limits and the "
        "lockout take the right-most X-Forwarded-For entry not among them. The hub's own proxy is always "
        "trusted.",
    )
    subdomains: bool = Field(
        True,
        description="Serve each user's server on its own origin, <user>.<hub host> (JupyterHub's "
        "subdomain_host), so that a student's pages cannot act on the hub as a visitor. Needs a host "
        "name: http://localhost:<port> and <user>.localhost:<port> on this machine; on a network "
        "address, hub.public_url with a host name and wildcard DNS (docs/security.md). false: every "
        "server on the hub's origin (up warns what students can then do to each other).",
    )
    state_dir: Path = Field(Path("/var/lib/coursehub"), description="Database, secrets, envs.")
    admin_users: list[str] | None = Field(
        None,
        description="Hub users with admin rights. Default: [admin] (the workshop admin account) "
        "under the workshop authenticator; nobody under any other, where anyone might get the name.",
    )
    concurrent_spawn_limit: int = Field(
        1000,
        ge=1,
        description="Spawns the hub accepts at once (more get HTTP 429); the sandbox "
        "spawner queues them and starts sandbox.max_parallel_starts at a time.",
    )
    start_timeout: int = Field(300, ge=10, description="Seconds a server may take to start.")
    http_timeout: int = Field(120, ge=5, description="Seconds a started server may take to answer.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        networks = []
        for cidr in value:
            try:
                networks.append(str(ip_network(cidr.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"{cidr!r} is not an address or a CIDR such as 10.0.0.0/8") from None
        return networks


class SandboxSettings(Model):
    """How each user's server is isolated on one machine."""

    home_root: Path = Field(Path("/home/coursehub"), description="Parent of users' homes.")
    user_prefix: str = Field(
        "ch-", pattern=r"^[a-z][a-z0-9-]{0,7}$", description="Prefix of Unix account names."
    )
    python: Path | None = Field(
        None, description="Interpreter for user environments (default: first one users can run)."
    )
    spawn_mode: Literal["fork", "exec"] = Field(
        "fork",
        description="'fork': servers forked from a warm fork server per stack environment "
        "(fast); 'exec': each server a fresh bubblewrap process.",
    )
    max_parallel_starts: int = Field(
        8, ge=1, le=1000, description="Servers started at once; others queue, seeing their place."
    )
    merge_memory: bool = Field(
        False,
        description="Fork mode: the kernel merges memory pages that users' servers and kernels hold "
        "byte-for-byte alike (KSM; `up` turns ksmd on): about a third of the memory per user. Off by "
        "default: a student could then tell, by timing a write, whether another process holds a page "
        "they guessed whole (docs/security.md).",
    )
    readonly_paths: list[Path] = Field([], description="Extra host paths shown read-only.")
    server_log_max: Size = Field(
        16 * 1024**2,
        ge=64 * 1024,
        description="Bytes of output kept per server (two files of half this; the newest output is kept).",
    )
    hidden_paths: list[Path] = Field([], description="Extra host paths hidden from users.")

    @field_validator("readonly_paths", "hidden_paths", "home_root")
    @classmethod
    def _absolute(cls, value: Any) -> Any:
        for path in value if isinstance(value, list) else [value]:
            if not Path(path).is_absolute():
                raise ValueError(f"{path} must be an absolute path")
        return value


class NetworkSettings(Model):
    """A network namespace per server (local backend) and the chart's singleuser.networkPolicy."""

    isolate: bool = Field(
        True,
        description="Each server in its own network namespace (local backend; needs root with CAP_NET_ADMIN, "
        "`ip` and `nft`, else `up` refuses to start): reaches the hub's API, DNS and (where the "
        "host forwards) the internet; never the host's other services, other servers or link-local "
        "addresses. The hub's API then listens on the subnet's first address. false: servers share "
        "the host's network (any service on its loopback is reachable from every kernel).",
    )
    subnet: str = Field("10.217.0.0/16", description="IPv4 range of servers' namespaces (local backend).")
    allow: list[str] = Field([], description="CIDRs servers may reach although private (a campus service).")
    deny: list[str] = Field([], description="CIDRs servers may never reach (link-local is always refused).")

    @field_validator("subnet")
    @classmethod
    def _subnet(cls, value: str) -> str:
        network = ipaddress.IPv4Network(value)
        if network.prefixlen > 24:
            raise ValueError(f"{value}: use a /24 or larger range")
        return str(network)

    @field_validator("allow", "deny")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(cidr, strict=False)) for cidr in value]


class CullerSettings(Model):
    """jupyterhub-idle-culler, run as a hub-managed service."""

    enabled: bool = Field(True, description="Stop idle servers.")
    timeout: int = Field(3600, ge=60, description="Idle seconds before a server is stopped.")
    every: int = Field(600, ge=10, description="Seconds between culling rounds.")
    max_age: int = Field(0, ge=0, description="Stop servers older than this (0: never).")
    kernel_timeout: int | None = Field(
        None,
        ge=0,
        description="Idle seconds before a kernel is shut down inside its running server (default: "
        "timeout while the culler is enabled; 0: never). A busy kernel is never shut down, and keeps its "
        "server from the culler however long it computes.",
    )
    warn_before: int | None = Field(
        None,
        ge=0,
        description="Seconds before an idle server is stopped that JupyterLab shows a warning (default: "
        "min(300, timeout/4); 0: no warning; one machine).",
    )

    def kernel_seconds(self) -> int:
        """Idle seconds before a kernel is shut down in its server (0: never)."""
        if self.kernel_timeout is not None:
            return self.kernel_timeout
        return self.timeout if self.enabled else 0


class TemporaryUsers(Model):
    """Anonymous users created by /hub/tmplogin links to courses whose access is 'open'."""

    idle_timeout: int = Field(
        3600, ge=60, description="Idle seconds before a temporary user is deleted with their files."
    )
    per_client_per_minute: int = Field(
        10, ge=1, description="New temporary users one client address may create per minute."
    )


class Course(Model):
    """A course: content, environment and who may open it."""

    name: str = Field(pattern=COURSE_NAME, description="Short name used in links and paths.")
    title: str = Field("", description="Human-readable title.")
    description: str = Field(
        "", description="One paragraph shown on the home page (default: the first paragraph of the README)."
    )
    repo: str = Field(description="Git URL or local folder with the course content.")
    ref: str = Field("HEAD", description="Branch, tag or commit.")
    default_notebook: str | None = Field(None, description="Notebook opened by default.")
    access: Literal["open", "accounts"] | list[str] = Field(
        "accounts", description="'open', 'accounts', or a roster of usernames / 'group:<name>'."
    )
    limits: PartialLimits = Field(default_factory=PartialLimits)
    shared_data: Path | None = Field(None, description="Host folder shown read-only as ~/<course>/shared.")
    scratch: Path | None = Field(None, description="Host folder shared read-write as ~/<course>/scratch.")
    kubernetes: CourseKubernetes | None = Field(None, description="Image and data on Kubernetes.")
    allow_apt: bool = Field(
        False,
        description="Install the repository's apt.txt system-wide, as root: only for repositories you trust.",
    )
    staff: list[str] = Field(
        [],
        description="Usernames of the course's staff (not admins): they open the course, list its roster's "
        "students and open, start and stop those students' servers of this course; needs a roster.",
    )
    webhook_secret: SecretRef | None = Field(
        None,
        description="Secret of the push webhook POST /hub/coursehub/webhook/<name> (GitHub's signature or "
        "GitLab's token) that updates the course: 'env:NAME' or 'file:/path'; unset: no webhook.",
    )
    auto_update: bool = Field(
        False,
        description="When a server of the course starts and the repo's ref moved since the last build, "
        "update the course in the background (that start gets the content in service).",
    )
    grading: Literal["none", "nbgrader"] = Field(
        "none",
        description="'nbgrader': assignments with nbgrader; staff get formgrader and create assignment, "
        "students the assignment list; one exchange for the course (needs staff, or LTI's).",
    )

    def roster(self) -> str | list[str]:
        """Who may open the course: its access rule, and its staff."""
        if isinstance(self.access, list):
            return [*self.access, *(name for name in self.staff if name not in self.access)]
        return self.access

    @model_validator(mode="after")
    def _staff_need_a_roster(self) -> Course:
        if self.staff and not isinstance(self.access, list):
            raise ValueError(
                f"course '{self.name}': staff are given the servers of the course's roster, and "
                f"access '{self.access}' is everyone's; list the students (access: [names, group:<name>])"
            )
        bad = [name for name in self.staff if name.startswith("group:") or not name.strip()]
        if bad:
            raise ValueError(f"course '{self.name}': staff are usernames; not {', '.join(bad)}")
        # Roster names become JupyterHub scope filters (`servers!server=<name>/<course>`).
        names = [*self.staff, *self.access] if self.staff else []
        odd = [name for name in names if set(name) & set("!=/ \t")]
        if odd:
            raise ValueError(
                f"course '{self.name}': names with '!', '=', '/' or spaces cannot be given to staff: "
                f"{', '.join(repr(name) for name in odd)}"
            )
        return self


Passthrough = dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], dict[str, Any]]


class Settings(Model):
    """The whole of coursehub.yaml."""

    hub: HubSettings = Field(default_factory=HubSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    limits: Limits = Field(default_factory=Limits)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    culler: CullerSettings = Field(default_factory=CullerSettings)
    network: NetworkSettings = Field(default_factory=NetworkSettings)
    temporary: TemporaryUsers = Field(default_factory=TemporaryUsers)
    binder: BinderSettings = Field(default_factory=BinderSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    tls: TLSSettings = Field(default_factory=TLSSettings)
    courses: list[Course] = Field(
        default_factory=lambda: [demo_course()], description="Courses offered on this hub."
    )
    jupyterhub: Passthrough = Field(
        {},
        description="Any trait by class name, e.g. {JupyterHub: {log_level: DEBUG}}; applied last: "
        "values replace coursehub's, lists and mappings (roles, services, paths) add to them.",
    )

    @model_validator(mode="after")
    def _unique_courses(self) -> Settings:
        names = [course.name for course in self.courses]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"course names must be unique; repeated: {', '.join(duplicates)}")
        return self

    @model_validator(mode="after")
    def _graders(self) -> Settings:
        lti = self.auth.type in ("lti13", "lti11")
        for course in self.courses:
            if (
                course.grading == "nbgrader"
                and not course.staff
                and not (lti and isinstance(course.access, list))
            ):
                raise ValueError(
                    f"course '{course.name}': grading: nbgrader needs someone to grade: list the course's "
                    "staff (staff: [names]) and its students (access: [names, group:<name>])"
                )
        return self

    @model_validator(mode="after")
    def _cas_service_from_public_url(self) -> Settings:
        cas = self.auth.cas
        if self.auth.type == "cas" and cas is not None and not cas.service_url and not self.hub.public_url:
            # The request's Host header must never choose the service a ticket is validated for.
            raise ValueError(
                "auth.cas needs hub.public_url (the URL users type, e.g. https://hub.uni.example): "
                "the CAS service URL is built from it"
            )
        return self

    @model_validator(mode="after")
    def _tls_needs_a_public_https_name(self) -> Settings:
        check_tls(self)
        return self

    def admin_users(self) -> list[str]:
        """hub.admin_users, or its default for the authenticator in use."""
        if self.hub.admin_users is not None:
            return list(self.hub.admin_users)
        # Only workshop accounts are handed out by the admin: elsewhere the first person to sign up
        # (or be called) 'admin' at the provider would become a hub admin.
        return ["admin"] if self.auth.type == "workshop" else []

    def course_limits(self, course: Course) -> Limits:
        """Effective limits of a course's servers."""
        return course.limits.over(self.limits)

    def disk_limited(self) -> bool:
        """Whether any home gets a quota (limits.disk hub-wide or for some course)."""
        return self.limits.disk is not None or any(c.limits.disk is not None for c in self.courses)


DEMO_DIR = Path(__file__).parent.parent / "demo"


def demo_course() -> Course:
    """The small course every fresh hub offers."""
    return Course(
        name="demo",
        title="coursehub demo",
        repo=str(DEMO_DIR),
        default_notebook="welcome.ipynb",
    )


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def check_tls(settings: Settings) -> None:
    """ValueError saying what to change when tls is on but the hub's address or URL cannot carry it."""
    tls, hub = settings.tls, settings.hub
    if tls.mode == "off":
        return
    url = hub.public_url or ""
    host = urlsplit(url).hostname or ""
    if not url.lower().startswith("https://") or not host:
        raise ValueError(
            f"tls.mode {tls.mode} needs hub.public_url: https://<host name>/ (the name users type and "
            "certificates are issued for), e.g. https://hub.example.org/"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        raise ValueError(f"tls: hub.public_url names the IP address {host}; use a host name with DNS")
    if hub.ip not in LOOPBACK:
        raise ValueError(
            f"tls: hub.ip is {hub.ip}, so the proxy would also serve plain HTTP to the network; keep "
            "hub.ip: 127.0.0.1 (Caddy takes the public ports: hub.public_url's and tls.http_port)"
        )
    port = https_port(url)
    taken = {
        "hub.port": hub.port,
        "hub.api_port": hub.api_port,
        "hub.proxy_api_port": hub.proxy_api_port,
        "tls.http_port": tls.http_port,
    }
    for key, value in taken.items():
        if value == port:
            raise ValueError(f"tls: hub.public_url's port {port} is also {key}; give them different ports")
