"""POST /hub/coursehub/webhook/<course>: a signed push from GitHub or GitLab updates the course.

Who can reach it: anyone, through the public proxy. Without the course's secret they get 403 and
nothing runs; a course without `webhook_secret` answers 404. A valid push starts the update in the
background (hub/updates.py: pushes during an update coalesce into one more run) and answers 202.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping

from jupyterhub.handlers import BaseHandler

from coursehub.hub.updates import CourseUpdater

WEBHOOK_ROUTE = r"/coursehub/webhook/([^/]+)"  # under /hub/
GITHUB_HEADER = "X-Hub-Signature-256"
GITLAB_HEADER = "X-Gitlab-Token"
# Events that carry no new commits: verified, answered, and nothing runs.
QUIET_EVENTS = {"ping"}


def push_is_signed(headers: Mapping[str, str], body: bytes, secret: str) -> bool:
    """True when GitHub's HMAC of `body` or GitLab's token matches `secret` (constant-time, pure).

    GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body, keyed by the secret>`.
    GitLab: `X-Gitlab-Token: <the secret>` (GitLab signs nothing; the token is compared as given).
    """
    if not secret:
        return False
    signature = headers.get(GITHUB_HEADER)
    if signature is not None:
        algorithm, _, digest = signature.strip().partition("=")
        if algorithm != "sha256":
            return False
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(digest.lower().encode(), expected.encode())
    token = headers.get(GITLAB_HEADER)
    if token is not None:
        return hmac.compare_digest(token.encode(), secret.encode())
    return False


def event_name(headers: Mapping[str, str]) -> str:
    """The event GitHub or GitLab names ('push', 'ping', 'Push Hook', …); '' when none is named (pure)."""
    return (headers.get("X-GitHub-Event") or headers.get("X-Gitlab-Event") or "").strip()


class CourseWebhookHandler(BaseHandler):
    """202 and an update for a signed push; 403 when unsigned or wrongly signed; 404 without a secret."""

    def initialize(self, secrets: dict[str, str], updater: CourseUpdater) -> None:
        self.secrets, self.updater = secrets, updater

    def check_xsrf_cookie(self) -> None:
        """GitHub and GitLab send no cookie: the signature is the check."""

    async def post(self, name: str) -> None:
        secret = self.secrets.get(name, "")
        if not secret:
            self._answer(404, {"message": f"no webhook for course '{name[:60]}'"})
            return
        if not push_is_signed(self.request.headers, self.request.body, secret):
            self.log.warning("course %s: webhook refused (bad or missing signature)", name)
            self._answer(403, {"message": "signature missing or wrong"})
            return
        event = event_name(self.request.headers)
        if event.lower() in QUIET_EVENTS:
            self._answer(200, {"course": name, "event": event, "update": "none"})
            return
        state = self.updater.request(name, f"webhook {event or 'push'}")
        self._answer(202, {"course": name, "event": event, "update": state})

    def _answer(self, status: int, body: dict) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))


def webhook_handlers(course_updates: dict) -> list[tuple[str, type, dict]]:
    """The route under /hub/, when a course has a webhook secret (and the hub builds courses itself)."""
    from coursehub.hub.updates import configure_updater

    secrets = dict(course_updates.get("webhook_secrets") or {})
    updater = configure_updater(course_updates)
    if not secrets or updater is None:
        return []
    return [(WEBHOOK_ROUTE, CourseWebhookHandler, {"secrets": secrets, "updater": updater})]
