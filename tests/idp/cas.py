"""A CAS server (protocol 2 and 3): /login issues single-use service tickets bound to a service,
/serviceValidate and /p3/serviceValidate validate them and answer the CAS XML (with attributes on p3)."""

from __future__ import annotations

import secrets
from xml.sax.saxutils import escape

from flask import Flask, redirect, request, session

NS = 'xmlns:cas="http://www.yale.edu/tp/cas"'


def failure(code: str, message: str) -> tuple[str, int, dict]:
    body = (
        f'<cas:serviceResponse {NS}><cas:authenticationFailure code="{code}">{escape(message)}'
        "</cas:authenticationFailure></cas:serviceResponse>"
    )
    return body, 200, {"Content-Type": "application/xml"}


def success(user: str, attributes: dict[str, list[str]]) -> tuple[str, int, dict]:
    attrs = "".join(
        f"<cas:{name}>{escape(value)}</cas:{name}>" for name, values in attributes.items() for value in values
    )
    body = (
        f"<cas:serviceResponse {NS}><cas:authenticationSuccess><cas:user>{escape(user)}</cas:user>"
        f"{f'<cas:attributes>{attrs}</cas:attributes>' if attrs else ''}"
        "</cas:authenticationSuccess></cas:serviceResponse>"
    )
    return body, 200, {"Content-Type": "application/xml"}


def make_app(people: dict[str, dict[str, list[str]]]) -> Flask:
    """The CAS server of `people` (username -> attributes)."""
    app = Flask("test-cas")
    app.secret_key = secrets.token_hex(16)
    tickets: dict[str, tuple[str, str]] = {}  # ticket -> (service, user)

    @app.get("/cas/signin")
    def signin():
        """The CAS server's own sign-in (its password form in real life)."""
        if request.args.get("user") not in people:
            return "unknown user", 403
        session["user"] = request.args["user"]
        return "signed in"

    @app.get("/cas/login")
    def login():
        service, user = request.args.get("service", ""), session.get("user")
        if not service or user is None:
            return "sign in first", 401
        ticket = f"ST-{secrets.token_urlsafe(24)}"
        tickets[ticket] = (service, user)
        return redirect(f"{service}{'&' if '?' in service else '?'}ticket={ticket}")

    def validate(with_attributes: bool):
        ticket, service = request.args.get("ticket", ""), request.args.get("service", "")
        issued = tickets.pop(ticket, None)  # single use, even when the service does not match
        if issued is None:
            return failure("INVALID_TICKET", f"ticket {ticket[:12]} not recognized")
        if issued[0] != service:
            return failure("INVALID_SERVICE", "ticket was issued for another service")
        user = issued[1]
        return success(user, people[user] if with_attributes else {})

    app.add_url_rule("/cas/serviceValidate", "v2", lambda: validate(False))
    app.add_url_rule("/cas/p3/serviceValidate", "v3", lambda: validate(True))
    return app
