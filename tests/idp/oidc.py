"""An OAuth 2 / OpenID Connect provider built with authlib's server components (authorization code
grant with PKCE, OpenID id_token, bearer-protected userinfo), plus GitHub's URL layout over the same
server so that oauthenticator's GitHubOAuthenticator can be pointed at it with `github_url`."""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request, session
from joserfc.jwk import RSAKey

# The hub talks to this provider over plain HTTP on 127.0.0.1.
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"


@dataclass
class Person:
    """A user of the identity provider."""

    name: str
    groups: list[str] = field(default_factory=list)
    teams: list[tuple[str, str]] = field(default_factory=list)  # (org, team) on the GitHub side
    claims: dict = field(default_factory=dict)  # more userinfo claims (email, hd, idp, eppn...)

    def get_user_id(self) -> str:
        return self.name


@dataclass
class Client(ClientMixin):
    """One registered OAuth client (the hub)."""

    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope):
        return scope

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret):
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method, endpoint):
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code"

    def check_grant_type(self, grant_type):
        return grant_type == "authorization_code"


@dataclass
class Code:
    """An issued authorization code."""

    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: Person
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope

    def get_nonce(self):
        return self.nonce

    def get_auth_time(self):
        return self.auth_time

    def get_acr(self):
        return None

    def get_amr(self):
        return None


@dataclass
class Token(TokenMixin):
    """An issued bearer token."""

    access_token: str
    client_id: str
    scope: str
    user: Person
    expires_at: float

    def check_client(self, client):
        return client.get_client_id() == self.client_id

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return int(self.expires_at - time.time())

    def is_expired(self):
        return time.time() > self.expires_at

    def is_revoked(self):
        return False

    def get_user(self):
        return self.user


class Provider:
    """State of one provider: people, the registered client, codes and tokens."""

    def __init__(self, people: list[Person], client: Client) -> None:
        self.people = {p.name: p for p in people}
        self.client = client
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, Token] = {}
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.issuer = ""  # set once the URL is known


def make_app(provider: Provider) -> Flask:
    """The Flask app of `provider`."""
    app = Flask("test-oidc-provider")
    app.secret_key = secrets.token_hex(16)
    signing_key = RSAKey.import_key(
        provider.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

        def save_authorization_code(self, code, req):
            provider.codes[code] = Code(
                code=code,
                client_id=req.client.client_id,
                redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope,
                user=req.user,
                nonce=req.payload.data.get("nonce"),
                code_challenge=req.payload.data.get("code_challenge"),
                code_challenge_method=req.payload.data.get("code_challenge_method"),
            )

        def query_authorization_code(self, code, client):
            found = provider.codes.get(code)
            return found if found and found.client_id == client.client_id else None

        def delete_authorization_code(self, authorization_code):
            provider.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return authorization_code.user

    class IdToken(OpenIDCode):
        def exists_nonce(self, nonce, req):
            return any(c.nonce == nonce for c in provider.codes.values())

        def resolve_client_private_key(self, client):
            return signing_key

        def get_client_claims(self, client):
            return {"iss": provider.issuer, "aud": [client.get_client_id()]}

        def generate_user_info(self, user, scope):
            return UserInfo(sub=user.name, preferred_username=user.name, groups=user.groups)

    def save_token(token, req):
        provider.tokens[token["access_token"]] = Token(
            access_token=token["access_token"],
            client_id=req.client.client_id,
            scope=token.get("scope", ""),
            user=req.user,
            expires_at=time.time() + token.get("expires_in", 3600),
        )

    server = AuthorizationServer(
        app,
        query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
        save_token=save_token,
    )
    server.register_grant(CodeGrant, [CodeChallenge(required=False), IdToken(require_nonce=False)])

    class Bearer(BearerTokenValidator):
        def authenticate_token(self, token_string):
            return provider.tokens.get(token_string)

    protect = ResourceProtector()
    protect.register_token_validator(Bearer())

    @app.get("/login")
    def login():
        """The provider's own sign-in (a password form in real life): remember who this browser is."""
        name = request.args.get("user", "")
        if name not in provider.people:
            return "unknown user", 403
        session["user"] = name
        return "signed in"

    @app.get("/authorize")
    @app.get("/login/oauth/authorize")
    def authorize():
        person = provider.people.get(session.get("user", ""))
        if person is None:
            return "sign in at the provider first", 401
        return server.create_authorization_response(grant_user=person)

    @app.post("/token")
    @app.post("/login/oauth/access_token")
    def token():
        return server.create_token_response()

    @app.get("/userinfo")
    @protect()
    def userinfo():
        person = current_token.user
        return jsonify(sub=person.name, preferred_username=person.name, groups=person.groups, **person.claims)

    @app.get("/api/v3/user")
    @protect()
    def github_user():
        person = current_token.user
        return jsonify(login=person.name, id=abs(hash(person.name)) % 10**6, name=person.name, email=None)

    @app.get("/api/v3/orgs/<org>/members/<name>")
    @protect()
    def github_member(org, name):
        person = provider.people.get(name)
        return ("", 204) if person and any(o == org for o, _ in person.teams) else ("", 404)

    @app.get("/api/v3/user/teams")
    @protect()
    def github_teams():
        person = current_token.user
        return jsonify([{"slug": team, "organization": {"login": org}} for org, team in person.teams])

    return app
