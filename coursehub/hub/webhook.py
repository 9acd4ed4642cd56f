"""POST /hub/coursehub/webhook/<course>: a signed push from GitHub or GitLab updates the course.

Who can reach it: anyone, through the public proxy. Without the course's secret they get 403 and
nothing runs; a course without `webhook_secret` answers 404. A valid push starts the update in the
background (hub/updates.py: pushes during an update coalesce into one more run) and answers 202.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import Mapping

from jupyterhub.handlers import BaseHandler

from coursehub.hub.updates import CourseUpdater

WEBHOOK_ROUTE = r"/coursehub/webhook/([^/]+)"  # under /hub/
GITHUB_HEADER = "X-Hub-Signature-256"
GITLAB_HEADER = "X-Gitlab-Token"
# GitHub caps payloads at 25 MB; nothing larger is hashed.
MAX_BODY = 25 * 2**20
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


def push_concerns(body: bytes, course_ref: str) -> bool:
    """False only when a push payload names a ref the course does not follow (pure).

    GitHub and GitLab name it `ref` (refs/heads/<branch>, refs/tags/<tag>); a course at HEAD follows
    the repository's default branch (`repository.default_branch`, GitLab's `project.default_branch`).
    Anything this cannot read updates: a wasted build is better than a missed push.
    """
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return True
    pushed = payload.get("ref") if isinstance(payload, dict) else None
    if not isinstance(pushed, str) or not pushed.startswith("refs/"):
        return True
    wanted = course_ref or "HEAD"
    if wanted == "HEAD":
        repository = payload.get("repository") or payload.get("project") or {}
        wanted = repository.get("default_branch") if isinstance(repository, dict) else None
        if not isinstance(wanted, str) or not wanted:
            return True
    return pushed in (wanted, f"refs/heads/{wanted}", f"refs/tags/{wanted}")


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
        body = self.request.body
        if len(body) > MAX_BODY:
            self._answer(413, {"message": f"a push payload is at most {MAX_BODY // 2**20} MiB"})
            return
        # Off the event loop: the body can be megabytes, and anyone may send one.
        if not await asyncio.to_thread(push_is_signed, self.request.headers, body, secret):
            self.log.warning("course %s: webhook refused (bad or missing signature)", name)
            self._answer(403, {"message": "signature missing or wrong"})
            return
        event = event_name(self.request.headers)
        if event.lower() in QUIET_EVENTS:
            self._answer(200, {"course": name, "event": event, "update": "none"})
            return
        course = next((c for c in self.updater.settings.courses if c.name == name), None)
        if course is not None and not push_concerns(body, course.ref):
            self._answer(200, {"course": name, "event": event, "update": "none", "ref": course.ref})
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
