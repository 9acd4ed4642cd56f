"""A small CAS authenticator: service-ticket validation (CAS 2 / 3 serviceValidate) with attributes.

Why not jhub-cas-authenticator 1.0.2 (the only packaged one): its login handler sets the login cookie
itself, skipping JupyterHub's login pipeline (`check_allowed`, `allowed_users`/`allow_all`,
managed groups, `post_auth_hook`), and at validation it rebuilds the service URL from the request
URI *including* `ticket=`, so it differs from the service the ticket was issued for.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode
from xml.etree import ElementTree

from jupyterhub.auth import Authenticator
from jupyterhub.handlers import BaseHandler
from jupyterhub.utils import maybe_future, url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from traitlets import Enum, Set, TraitError, Unicode, validate

CAS_NS = "{http://www.yale.edu/tp/cas}"


def parse_service_response(body: bytes | str) -> tuple[str, dict[str, list[str]]] | None:
    """(user, attributes) from a serviceValidate answer; None when CAS says the ticket is not valid."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError:
        return None
    success = root.find(f"{CAS_NS}authenticationSuccess")
    user = success.findtext(f"{CAS_NS}user") if success is not None else None
    if success is None or not user or not user.strip():
        return None
    attributes: dict[str, list[str]] = {}
    for element in success.find(f"{CAS_NS}attributes") or []:
        name = element.tag.removeprefix(CAS_NS)
        attributes.setdefault(name, []).append((element.text or "").strip())
    return user.strip(), attributes


class CASLoginHandler(BaseHandler):
    """/hub/cas/login: send the browser to CAS, then turn the ticket it brings back into a login."""

    async def get(self) -> None:
        service = self.authenticator.service_for(self)
        ticket = self.get_argument("ticket", "")
        if not ticket:
            self.redirect(f"{self.authenticator.cas_url('login')}?{urlencode({'service': service})}")
            return
        user = await self.login_user({"ticket": ticket, "service": service})
        if user is None:
            raise web.HTTPError(403, "CAS login refused: invalid ticket, or you are not allowed on this hub")
        self.redirect(self.get_next_url(user))

    def append_query_parameters(self, url: str, exclude: list[str] | None = None) -> str:
        """JupyterHub carries this request's query to the next page: never the (spent) ticket."""
        return super().append_query_parameters(url, exclude=[*(exclude or ["next"]), "ticket"])


class CASAuthenticator(Authenticator):
    """Log in through a CAS server; groups can come from a CAS attribute."""

    login_service = Unicode("CAS", config=True, help="Name on the login button.")
    cas_server_url = Unicode(config=True, help="CAS base URL, e.g. https://cas.example.edu/cas.")
    cas_protocol = Enum([2, 3], 3, config=True, help="3: /p3/serviceValidate (attributes); 2: none.")
    cas_service_url = Unicode(
        "", config=True, help="Service URL registered at CAS: this hub's public /hub/cas/login (required)."
    )
    username_attribute = Unicode("", config=True, help="Attribute used as username instead of the user.")
    groups_attribute = Unicode("", config=True, help="Attribute listing the user's groups.")
    allowed_groups = Set(Unicode(), config=True, help="Members of these groups may log in.")
    admin_groups = Set(Unicode(), config=True, help="Members of these groups are admins.")

    @validate("cas_server_url")
    def _https_only(self, proposal: dict) -> str:
        url = proposal["value"]
        if url and not url.lower().startswith("https://"):
            raise TraitError(f"the CAS server must be reached over https, not {url!r}")
        return url

    def login_url(self, base_url: str) -> str:
        return url_path_join(base_url, "cas/login")

    def get_handlers(self, app: Any) -> list:
        return [(r"/cas/login", CASLoginHandler)]

    def cas_url(self, endpoint: str) -> str:
        """A CAS endpoint under the server URL."""
        return f"{self.cas_server_url.rstrip('/')}/{endpoint}"

    def service_for(self, handler: BaseHandler) -> str:
        """The service URL: the same on the way to CAS and at validation (`next` kept, ticket not).

        Never from the request's Host or X-Scheme: a client could then have a ticket that CAS issued
        for another service validated as if it were ours.
        """
        base = self.cas_service_url
        if not base:
            raise web.HTTPError(
                503, "CAS login is not configured: set hub.public_url (or auth.cas.service_url)"
            )
        next_url = handler.get_argument("next", "")
        return f"{base}?{urlencode({'next': next_url})}" if next_url else base

    async def authenticate(self, handler: BaseHandler, data: dict) -> dict | None:
        """Validate the service ticket with CAS; None when CAS does not vouch for it."""
        endpoint = "p3/serviceValidate" if self.cas_protocol == 3 else "serviceValidate"
        query = urlencode({"service": data["service"], "ticket": data["ticket"]})
        try:
            response = await AsyncHTTPClient().fetch(
                f"{self.cas_url(endpoint)}?{query}", request_timeout=15, connect_timeout=10
            )
        except (HTTPClientError, OSError) as exc:
            self.log.warning("CAS ticket validation failed: %s", exc)
            return None
        parsed = parse_service_response(response.body)
        if parsed is None:
            self.log.warning("CAS rejected a service ticket")
            return None
        user, attributes = parsed
        name = (attributes.get(self.username_attribute) or [user])[0] if self.username_attribute else user
        auth: dict[str, Any] = {"name": name, "auth_state": {"cas_user": user, "attributes": attributes}}
        if self.groups_attribute:
            groups = sorted({g for g in attributes.get(self.groups_attribute, []) if g})
            auth["groups"] = groups
            if self.admin_groups & set(groups):
                auth["admin"] = True
        return auth

    async def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        """Allowed users, allow_all, or membership of an allowed group."""
        groups = set((authentication or {}).get("groups") or [])
        if groups & (self.allowed_groups | self.admin_groups):
            return True
        return bool(await maybe_future(super().check_allowed(username, authentication)))
