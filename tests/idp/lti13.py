"""An LTI 1.3 platform (the LMS side): third-party-initiated login, an OIDC authorization endpoint
answering with an id_token it signs with its own RSA key (form_post), and its public key set; LTI
Advantage's Assignment and Grade Services: a token endpoint that checks the tool's signed client
assertion against the tool's published JWKS, line items and scores that record what they get."""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask, jsonify, request

LTI = "https://purl.imsglobal.org/spec/lti/claim/"
ROLE = "http://purl.imsglobal.org/vocab/lis/v2/membership#"
AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
AGS_SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


@dataclass
class Launch:
    """One launch a person starts from an LMS course page."""

    user: str
    context_id: str
    context_label: str
    roles: list[str]
    custom: dict[str, str]
    ags: str = "full"  # full: lineitems + lineitem; lineitem: the link's line item only; none: no AGS claim
    deep_link: bool = False  # an LtiDeepLinkingRequest (an instructor adds a link) instead of a launch


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
    tool_jwks_url: str = ""  # where the tool publishes its key set (AGS token requests)
    tokens: dict[str, set[str]] = field(default_factory=dict)  # access token -> scopes
    refused: list[str] = field(default_factory=list)  # why token requests were refused
    lineitems: dict[str, list[dict]] = field(default_factory=dict)  # context id -> line items
    scores: dict[str, list[dict]] = field(default_factory=dict)  # line item id -> scores posted
    score_failures: list[int] = field(default_factory=list)  # statuses the next score posts get
    deep_link_data: set[str] = field(default_factory=set)  # `data` of deep linking requests sent
    deep_links: list[dict] = field(default_factory=list)  # content items deep linking responses returned

    def lineitem(self, context_id: str, resource_id: str) -> dict | None:
        """The context's line item of this resourceId."""
        return next((i for i in self.lineitems.get(context_id, []) if i["resourceId"] == resource_id), None)


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
            ags=request.args.get("ags", "full"),
            deep_link=request.args.get("deep_link") == "1",
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
        if launch.deep_link:
            data = secrets.token_urlsafe(8)
            platform.deep_link_data.add(data)
            del claims[LTI + "resource_link"]
            claims[LTI + "message_type"] = "LtiDeepLinkingRequest"
            # ltiauthenticator 1.6 requires these of deep linking requests (Canvas and Moodle send them).
            claims["azp"] = platform.client_id
            claims[LTI + "tool_platform"] = {"guid": "test-platform", "name": "test LMS"}
            claims[LTI + "launch_presentation"] = {"document_target": "window"}
            claims[DL + "deep_linking_settings"] = {
                "deep_link_return_url": f"{platform.url}/deeplink/return",
                "accept_types": ["ltiResourceLink"],
                "accept_presentation_document_targets": ["window"],
                "data": data,
            }
        elif launch.ags != "none":
            base = f"{platform.url}/ags/{launch.context_id}/lineitems"
            link_item = f"{base}/link-1"
            endpoint: dict = {"scope": [AGS_SCOPE + "score", AGS_SCOPE + "result.readonly"]}
            endpoint["lineitem"] = link_item
            if launch.ags == "full":
                endpoint["lineitems"] = base
                endpoint["scope"] += [AGS_SCOPE + "lineitem", AGS_SCOPE + "lineitem.readonly"]
            claims[AGS_CLAIM] = endpoint
        token = jwt.encode(claims, platform.key, algorithm="RS256", headers={"kid": kid})
        return form_page(args["redirect_uri"], {"id_token": token, "state": args.get("state", "")})

    @app.post("/token")
    def token():
        """Client credentials with a JWT assertion the tool signed with the key its JWKS publishes."""
        form = request.form
        grant = form.get("grant_type"), form.get("client_assertion_type")
        if grant != ("client_credentials", ASSERTION_TYPE):
            platform.refused.append("grant")
            return jsonify(error="unsupported_grant_type"), 400
        assertion = form.get("client_assertion", "")
        try:
            header = jwt.get_unverified_header(assertion)
            keys = requests.get(platform.tool_jwks_url, timeout=10).json()["keys"]
            jwk = next(k for k in keys if k.get("kid") == header.get("kid"))
            public = jwt.algorithms.RSAAlgorithm.from_jwk(jwk)
            claims = jwt.decode(
                assertion,
                public,
                algorithms=["RS256"],
                audience=f"{platform.url}/token",
                options={"require": ["iss", "sub", "aud", "exp", "iat", "jti"]},
            )
        except (jwt.PyJWTError, StopIteration, KeyError, ValueError, requests.RequestException) as exc:
            platform.refused.append(f"assertion: {type(exc).__name__}: {exc}")
            return jsonify(error="invalid_client", error_description=f"bad client assertion: {exc}"), 401
        if claims["iss"] != platform.client_id or claims["sub"] != platform.client_id:
            platform.refused.append("client id")
            return jsonify(error="invalid_client", error_description="unknown client"), 401
        granted = {s for s in form.get("scope", "").split() if s.startswith(AGS_SCOPE)}
        access = secrets.token_urlsafe(16)
        platform.tokens[access] = granted
        return jsonify(access_token=access, token_type="Bearer", expires_in=3600, scope=" ".join(granted))

    def tool_claims(token: str, audience: str) -> dict:
        """A JWT's claims once its signature checks against the key set the tool publishes."""
        header = jwt.get_unverified_header(token)
        keys = requests.get(platform.tool_jwks_url, timeout=10).json()["keys"]
        jwk = next(k for k in keys if k.get("kid") == header.get("kid"))
        return jwt.decode(
            token, jwt.algorithms.RSAAlgorithm.from_jwk(jwk), algorithms=["RS256"], audience=audience
        )

    @app.post("/deeplink/return")
    def deep_link_return():
        """The tool's LtiDeepLinkingResponse: signed by the tool, for a request this platform sent."""
        try:
            claims = tool_claims(request.form.get("JWT", ""), platform.url)
        except (jwt.PyJWTError, StopIteration, KeyError, ValueError, requests.RequestException) as exc:
            platform.refused.append(f"deep link: {type(exc).__name__}: {exc}")
            return f"bad deep linking response: {exc}", 400
        data = claims.get(DL + "data")
        if claims.get("iss") != platform.client_id or data not in platform.deep_link_data:
            platform.refused.append("deep link: issuer or data")
            return "unknown tool or request", 400
        if claims.get(LTI + "message_type") != "LtiDeepLinkingResponse":
            return "not a deep linking response", 400
        platform.deep_link_data.discard(data)
        platform.deep_links.extend(claims.get(DL + "content_items") or [])
        return "link added"

    def bearer(scope: str) -> bool:
        """Whether the request carries an access token granted this scope."""
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and AGS_SCOPE + scope in platform.tokens.get(auth[7:], set())

    @app.route("/ags/<context>/lineitems", methods=["GET", "POST"])
    def lineitems(context):
        items = platform.lineitems.setdefault(context, [])
        if request.method == "GET":
            if not (bearer("lineitem") or bearer("lineitem.readonly")):
                return jsonify(error="unauthorized"), 401
            wanted = request.args.get("resource_id")
            return jsonify([i for i in items if wanted is None or i["resourceId"] == wanted])
        if not bearer("lineitem"):
            return jsonify(error="unauthorized"), 401
        if request.content_type != "application/vnd.ims.lis.v2.lineitem+json":
            return jsonify(error="bad content type"), 415
        body = request.get_json(force=True)
        if not body.get("label") or not float(body.get("scoreMaximum", 0)) > 0:
            return jsonify(error="label and scoreMaximum > 0 are required"), 400
        item = {**body, "id": f"{platform.url}/ags/{context}/lineitems/{len(items) + 1}"}
        items.append(item)
        return jsonify(item), 201

    @app.post("/ags/<context>/lineitems/<item>/scores")
    def scores(context, item):
        if not bearer("score"):
            return jsonify(error="unauthorized"), 401
        if platform.score_failures:
            return jsonify(error="unavailable"), platform.score_failures.pop(0)
        if request.content_type != "application/vnd.ims.lis.v1.score+json":
            return jsonify(error="bad content type"), 415
        body = request.get_json(force=True)
        needed = ("userId", "scoreGiven", "scoreMaximum", "activityProgress", "gradingProgress", "timestamp")
        if any(k not in body for k in needed):
            return jsonify(error=f"a score needs {needed}"), 400
        platform.scores.setdefault(f"{platform.url}/ags/{context}/lineitems/{item}", []).append(body)
        return "", 204

    return app
