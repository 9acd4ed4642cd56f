"""An LTI 1.3 platform (the LMS side): third-party-initiated login, an OIDC authorization endpoint
answering with an id_token it signs with its own RSA key (form_post), and its public key set."""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"


@dataclass
class Launch:
    """One launch a person starts from an LMS course page."""

    user: str
    context_id: str
    context_label: str
    roles: list[str]
    custom: dict[str, str]


@dataclass
class Platform:
    """The platform's registration of the tool, its key, and launches in progress."""

    client_id: str
    deployment_id: str = "deployment-1"
    tool_login_url: str = ""
    redirect_uris: list[str] = field(default_factory=list)
    url: str = ""
    launches: dict[str, Launch] = field(default_factory=dict)
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))


def form_page(action: str, fields: dict[str, str]) -> str:
    """A page that posts `fields` to `action` (browsers submit it by script; tests parse it)."""
    inputs = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in fields.items()
    )
    return (
        f'<form id="f" method="post" action="{html.escape(action)}">{inputs}</form>'
        '<script>document.getElementById("f").submit()</script>'
    )


class FormReader(HTMLParser):
    """The action and fields of the first form of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.action, self.fields = "", {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and not self.action:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")


def read_form(page: str) -> tuple[str, dict[str, str]]:
    reader = FormReader()
    reader.feed(page)
    return reader.action, reader.fields


def make_app(platform: Platform) -> Flask:
    """The platform's web app."""
    app = Flask("test-lti13-platform")
    kid = "platform-key-1"

    @app.get("/jwks")
    def jwks():
        key = jwt.algorithms.RSAAlgorithm.to_jwk(platform.key.public_key(), as_dict=True)
        return jsonify(keys=[{**key, "kid": kid, "alg": "RS256", "use": "sig"}])

    @app.get("/course/launch")
    def start():
        """A person clicks the tool link in an LMS course: third-party-initiated login at the tool."""
        hint = secrets.token_urlsafe(12)
        platform.launches[hint] = Launch(
            user=request.args["user"],
            context_id=request.args["context_id"],
            context_label=request.args.get("context_label", request.args["context_id"]),
            roles=[r if ":" in r else ROLE + r for r in request.args.get("roles", "Learner").split(",")],
            custom={k[7:]: v for k, v in request.args.items() if k.startswith("custom_")},
        )
        return form_page(
            platform.tool_login_url,
            {
                "iss": platform.url,
                "login_hint": request.args["user"],
                "target_link_uri": platform.redirect_uris[0].split("/hub/")[0] + "/hub/",
                "lti_message_hint": hint,
                "client_id": platform.client_id,
                "lti_deployment_id": platform.deployment_id,
            },
        )

    @app.get("/authorize")
    def authorize():
        """OIDC authentication request from the tool: answer with a signed id_token (form_post)."""
        args = request.args
        launch = platform.launches.pop(args.get("lti_message_hint", ""), None)
        if (
            args.get("client_id") != platform.client_id
            or args.get("redirect_uri") not in platform.redirect_uris
        ):
            return "unknown client or redirect_uri", 400
        if launch is None or args.get("login_hint") != launch.user or not args.get("nonce"):
            return "no such launch", 400
        now = int(time.time())
        claims = {
            "iss": platform.url,
            "aud": platform.client_id,
            "sub": launch.user,
            "iat": now,
            "exp": now + 300,
            "nonce": args["nonce"],
            "email": f"{launch.user}@lms.example",
            LTI + "message_type": "LtiResourceLinkRequest",
            LTI + "version": "1.3.0",
            LTI + "deployment_id": platform.deployment_id,
            LTI + "target_link_uri": platform.redirect_uris[0],
            LTI + "resource_link": {"id": "link-1"},
            LTI + "roles": launch.roles,
            LTI + "context": {"id": launch.context_id, "label": launch.context_label, "title": "A course"},
            LTI + "custom": launch.custom,
        }
        token = jwt.encode(claims, platform.key, algorithm="RS256", headers={"kid": kid})
        return form_page(args["redirect_uri"], {"id_token": token, "state": args.get("state", "")})

    return app
