"""BinderHub requests, pure: parse provider/spec and urlpath into typed values, match them to courses."""

from __future__ import annotations

import ipaddress
import posixpath
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from coursehub.errors import BinderSpecError

PROVIDERS = ("gh", "gl", "git")
MAX_SPEC = 1000
_GH_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
_GL_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,255}(/[A-Za-z0-9_.-]{1,255}){1,19}$")
# A git ref: what `git check-ref-format` allows, minus anything that could be read as an option.
_REF = re.compile(r"^(?!-)(?!.*\.\.)(?!.*@\{)(?!.*//)[A-Za-z0-9._/@+-]{1,200}(?<![./])$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
_URL_PATH = re.compile(r"^[A-Za-z0-9._~/+-]{1,500}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
REPO_SCHEMES = ("https", "http", "git")
# Repositories that are not courses (binder.allow_any_repo): https only (see pinned_fetch_options).
ANY_REPO_SCHEMES = ("https",)
DEFAULT_PORTS = {"https": 443, "git": 9418}
Resolver = Callable[..., list]


@dataclass(frozen=True)
class BinderSpec:
    """What a /build or /v2 request asks for."""

    provider: str  # gh, gl or git
    repo_url: str  # normalised: scheme://host/path, no trailing '/' or '.git'
    ref: str
    spec: str  # as sent, still percent-encoded: <provider>/<spec> is the request's identity

    @property
    def request(self) -> str:
        """BinderHub's `binder_request`: v2/<provider>/<spec>."""
        return f"v2/{self.provider}/{self.spec}"


def parse_build_path(provider: str, raw_spec: str) -> BinderSpec:
    """A BinderSpec from the URL parts after /build/ (spec still percent-encoded)."""
    if provider not in PROVIDERS:
        raise BinderSpecError(f"unknown provider '{provider[:20]}': this hub serves {', '.join(PROVIDERS)}")
    if not raw_spec or len(raw_spec) > MAX_SPEC or _CONTROL.search(unquote(raw_spec)):
        raise BinderSpecError("the spec is empty, too long, or contains control characters")
    head, _, ref = raw_spec.rstrip("/").rpartition("/")
    if not head:
        raise BinderSpecError(f"a {provider} spec needs a repository and a ref: .../<repo>/<ref>")
    ref = _parse_ref(unquote(ref))
    if provider == "gh":
        repo = _github(head)
    elif provider == "gl":
        repo = _gitlab(unquote(head))
    else:
        repo = normalize_repo_url(unquote(head))
    return BinderSpec(provider=provider, repo_url=repo, ref=ref, spec=raw_spec.rstrip("/"))


def _parse_ref(ref: str) -> str:
    if not _REF.match(ref):
        raise BinderSpecError(f"'{ref[:60]}' is not a valid git ref (branch, tag or commit)")
    return ref


def _github(head: str) -> str:
    parts = head.split("/")
    if len(parts) != 2 or not all(_GH_NAME.match(p) and p not in (".", "..") for p in parts):
        raise BinderSpecError("a gh spec is <owner>/<repo>/<ref>, e.g. gh/jupyter/notebook/main")
    return f"https://github.com/{parts[0].lower()}/{parts[1].lower().removesuffix('.git')}"


def _gitlab(namespace: str) -> str:
    namespace = namespace.strip("/")
    if not _GL_NAMESPACE.match(namespace) or any(p in (".", "..") for p in namespace.split("/")):
        raise BinderSpecError("a gl spec is <url-escaped group/project>/<ref>, e.g. gl/group%2Fproject/main")
    return f"https://gitlab.com/{namespace.lower().removesuffix('.git')}"


def normalize_repo_url(url: str) -> str:
    """scheme://host/path of a remote git URL (https, http, git); BinderSpecError otherwise."""
    if _CONTROL.search(url) or " " in url or "\\" in url:
        raise BinderSpecError("the repository URL contains spaces, backslashes or control characters")
    parts = urlsplit(url)
    if parts.scheme.lower() not in REPO_SCHEMES:
        raise BinderSpecError(
            f"the repository must be a {', '.join(s + '://' for s in REPO_SCHEMES)} URL, not '{url[:80]}'"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise BinderSpecError("the repository URL may not carry credentials, a query or a fragment")
    if not _HOST.match(parts.netloc):
        raise BinderSpecError(f"'{parts.netloc[:80]}' is not a host name")
    path = parts.path.rstrip("/").removesuffix(".git")
    if not _URL_PATH.match(path) or ".." in path.split("/") or not path.startswith("/"):
        raise BinderSpecError("the repository URL needs a plain path, e.g. https://host/group/project")
    host = parts.netloc.lower()
    if host in ("github.com", "gitlab.com"):
        path = path.lower()  # these hosts ignore case
    return f"{parts.scheme.lower()}://{host}{path}"


def course_repo_url(repo: str) -> str | None:
    """A course's repo normalised as a Binder spec would be; None for local folders."""
    try:
        return normalize_repo_url(repo)
    except BinderSpecError:
        return None


def parse_urlpath(query: dict[str, str]) -> str:
    """The server path to open: urlpath, or legacy labpath/filepath; never absolute or escaping."""
    if query.get("urlpath"):
        raw = query["urlpath"]
    elif query.get("labpath"):
        raw = "lab/tree/" + query["labpath"]
    elif query.get("filepath"):
        raw = "tree/" + query["filepath"]
    else:
        return ""
    path, _, rest = raw.lstrip("/").partition("?")
    if _CONTROL.search(raw) or "\\" in raw or rest or "#" in path or "://" in path:
        raise BinderSpecError("urlpath must be a plain path in the server, e.g. lab/tree/intro.ipynb")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BinderSpecError("urlpath may not contain '..'")
    return "/".join(quote(p, safe="@:+,;=-_.~") for p in parts)


def join_server_url(server_url: str, urlpath: str) -> str:
    """`urlpath` under a server's URL (which ends in '/')."""
    return posixpath.join(server_url, urlpath) if urlpath else server_url


def server_name_for(repo_url: str) -> str:
    """A stable course name for an unregistered repository (built only with allow_any_repo)."""
    import hashlib

    from coursehub.courses.access import UNREGISTERED_PREFIX

    return UNREGISTERED_PREFIX + hashlib.sha256(repo_url.encode()).hexdigest()[:12]


def address_refusal(address: str) -> str | None:
    """Why a build may not fetch from `address` (loopback, private, link-local...), or None (pure)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private:
        return "a private address"
    if not ip.is_global or ip.is_multicast:
        return "not a public address"
    return None


def unregistered_repo_refusal(repo_url: str, resolve: Resolver | None = None) -> str | None:
    """Why the hub may not fetch `repo_url` for an anonymous build, or None; checked before any connection.

    `resolve` is getaddrinfo (tests pass their own: a test never sends traffic to a real address).
    """
    try:
        pinned_fetch_options(repo_url, resolve)
    except BinderSpecError as exc:
        return str(exc)
    return None


def pinned_fetch_options(repo_url: str, resolve: Resolver | None = None) -> tuple[str, ...]:
    """git options that fetch `repo_url` from the public addresses checked here, and only from them.

    The host is resolved once: git connects to exactly these addresses (curl's resolve list), so a
    name that answers with a public address for the check and a private one for git (DNS rebinding)
    reaches nothing new, and no redirect leads elsewhere. Raises BinderSpecError saying why not.
    """
    parts = urlsplit(repo_url)
    if parts.scheme not in ANY_REPO_SCHEMES:
        # git:// too is refused: git's daemon protocol resolves the host itself, with no way to pin it.
        raise BinderSpecError("only https:// repositories are built here")
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS[parts.scheme]
    try:
        infos = (resolve or socket.getaddrinfo)(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        infos = []
    if not infos:
        raise BinderSpecError(f"the host '{host[:80]}' cannot be resolved")
    addresses: list[str] = []  # as curl's resolve list writes them: IPv6 in brackets
    for info in infos:
        address = str(info[4][0])
        reason = address_refusal(address)
        if reason:
            raise BinderSpecError(
                f"'{host[:80]}' is {reason} ({address}): this hub builds only repositories on public hosts"
            )
        listed = f"[{address}]" if ":" in address else address
        if listed not in addresses:
            addresses.append(listed)
    return git_pin_options(host, port, addresses)


def git_pin_options(host: str, port: int, addresses: list[str]) -> tuple[str, ...]:
    """git's `-c` options: connect to `host:port` only at `addresses`, follow no redirect (pure)."""
    return (
        "-c",
        f"http.curloptResolve={host}:{port}:{','.join(addresses)}",
        "-c",
        "http.followRedirects=false",
    )
