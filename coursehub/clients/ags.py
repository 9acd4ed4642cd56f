"""Posting scores to an LMS through LTI Advantage Assignment and Grade Services.

A token by client credentials with the tool's signed assertion (RFC 7523), the assignment's line item
(found by resourceId, or created) and one score per student. Each HTTP call has a timeout; rate limits,
5xx answers and network errors are retried with bounded backoff; every outcome is recorded in the store
for the staff's page. Written here rather than with an LTI library: PyLTI1p3 and the like are built
around a web framework's launch request, and the three calls AGS needs are small.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from coursehub.auth.ags import (
    LINEITEM_TYPE,
    LINEITEMS_TYPE,
    SCORE_TYPE,
    AgsLaunch,
    Grade,
    can_manage_lineitems,
    find_lineitem,
    lineitem_body,
    score_body,
    scores_url,
    token_scopes,
)
from coursehub.auth.ags_store import Post, launches, record_post
from coursehub.auth.tool_key import ASSERTION_TYPE, client_assertion
from coursehub.errors import PlatformError

TIMEOUT = 20
DELAYS = (1.0, 2.0, 4.0)  # waits before the 2nd, 3rd, 4th attempt; then the post is recorded failed
MAX_RETRY_AFTER = 30.0
RETRIED = {429, 500, 502, 503, 504}


def _reason(response: requests.Response) -> str:
    """The platform's own words for an error answer, short."""
    try:
        data = response.json()
        text = (
            str(data.get("error_description") or data.get("error") or data) if isinstance(data, dict) else ""
        )
    except ValueError:
        text = response.text
    return f"{response.status_code} {response.reason or ''}".strip() + (f": {text[:200]}" if text else "")


@dataclass
class AgsClient:
    """One platform's token endpoint, and the tool's key that signs requests to it."""

    token_url: str
    key: rsa.RSAPrivateKey
    audience: str = ""  # the assertion's aud; token_url when empty
    delays: Sequence[float] = DELAYS
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    _tokens: dict[tuple[str, tuple[str, ...]], tuple[str, float]] = field(default_factory=dict)
    _lineitems: dict[tuple[str, str], str] = field(default_factory=dict)
    # Failures kept for the run: a refused registration or a platform that is down fails every other
    # student at once with the same message, instead of retrying (and waiting) once per student.
    _failed: dict[tuple[str, ...], PlatformError] = field(default_factory=dict)

    def call(self, method: str, url: str, what: str, **kwargs: Any) -> tuple[requests.Response, int]:
        """One HTTP call, retried on 429, 5xx and network errors; the answer and the attempts made."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.session.request(method, url, timeout=TIMEOUT, **kwargs)
            except requests.RequestException as exc:
                problem, wait = f"{what}: no answer from {url} ({type(exc).__name__})", None
            else:
                if response.status_code < 400:
                    return response, attempt
                problem = f"{what}: the platform answered {_reason(response)}"
                if response.status_code not in RETRIED:
                    raise PlatformError(problem, attempt)
                wait = _retry_after(response)
            if attempt > len(self.delays):
                raise PlatformError(f"{problem} (gave up after {attempt} attempts)", attempt)
            self.sleep(min(wait if wait is not None else self.delays[attempt - 1], MAX_RETRY_AFTER))

    def token(self, launch: AgsLaunch) -> str:
        """An access token for this launch's client id and scopes (kept until shortly before expiry)."""
        scopes = tuple(token_scopes(launch))
        cached = self._tokens.get((launch.client_id, scopes))
        if cached and cached[1] > time.time() + 30:
            return cached[0]
        if (failed := self._failed.get(("token", launch.client_id, *scopes))) is not None:
            raise PlatformError(str(failed), 0)
        try:
            return self._new_token(launch, scopes)
        except PlatformError as exc:
            self._failed[("token", launch.client_id, *scopes)] = exc
            raise

    def _new_token(self, launch: AgsLaunch, scopes: tuple[str, ...]) -> str:
        form = {
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(self.key, launch.client_id, self.audience or self.token_url),
            "scope": " ".join(scopes),
        }
        try:
            response, _ = self.call("POST", self.token_url, "token request", data=form)
        except PlatformError as exc:
            raise PlatformError(
                f"{exc} — check that the LMS's tool registration (client id {launch.client_id}) uses "
                "this hub's key set, <hub>/hub/lti13/jwks, and grants the AGS scopes",
                exc.attempts,
            ) from None
        data = _json(response, "token request")
        if not data.get("access_token"):
            raise PlatformError("token request: the platform's answer has no access_token", 1)
        expires = time.time() + float(data.get("expires_in") or 300)
        self._tokens[(launch.client_id, scopes)] = (str(data["access_token"]), expires)
        return str(data["access_token"])

    def _auth(self, launch: AgsLaunch, accept: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(launch)}", "Accept": accept}

    def lineitem(self, launch: AgsLaunch, course: str, grade: Grade) -> str:
        """The line item of the grade's assignment in the launch's context: found, else created."""
        if not can_manage_lineitems(launch):
            return launch.lineitem
        cache = (launch.lineitems, grade.assignment)
        if cache in self._lineitems:
            return self._lineitems[cache]
        if (failed := self._failed.get(("lineitem", *cache))) is not None:
            raise PlatformError(str(failed), 0)
        try:
            self._lineitems[cache] = self._find_or_create(launch, course, grade)
        except PlatformError as exc:
            self._failed[("lineitem", *cache)] = exc
            raise
        return self._lineitems[cache]

    def _find_or_create(self, launch: AgsLaunch, course: str, grade: Grade) -> str:
        headers = self._auth(launch, LINEITEMS_TYPE)
        params = {"resource_id": grade.assignment}
        response, _ = self.call("GET", launch.lineitems, "listing line items", headers=headers, params=params)
        items = _json(response, "listing line items")
        found = find_lineitem(items if isinstance(items, list) else [], grade.assignment)
        if found is None:
            body = lineitem_body(course, grade.assignment, grade.max_score)
            headers = {**self._auth(launch, LINEITEM_TYPE), "Content-Type": LINEITEM_TYPE}
            made, _ = self.call("POST", launch.lineitems, "creating a line item", headers=headers, json=body)
            found = str(_json(made, "creating a line item").get("id") or "")
            if not found:
                raise PlatformError("creating a line item: the platform's answer has no id", 1)
        return found

    def post_score(self, launch: AgsLaunch, lineitem: str, grade: Grade) -> int:
        """POST the score to `<lineitem>/scores`; the attempts it took."""
        stamp = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        headers = {"Authorization": f"Bearer {self.token(launch)}", "Content-Type": SCORE_TYPE}
        body = score_body(launch, grade, stamp)
        _, attempts = self.call("POST", scores_url(lineitem), "posting a score", headers=headers, json=body)
        return attempts


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise PlatformError(f"{what}: the platform's answer is not JSON", 1) from None


def _retry_after(response: requests.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def skip_reason(launch: AgsLaunch | None, assignments: int) -> str | None:
    """Why a grade cannot be posted for this user, or None."""
    if launch is None:
        return "no LTI 1.3 launch of this course with grade services: the student must open it from the LMS"
    if not can_manage_lineitems(launch) and assignments > 1:
        return (
            "the launch gave one line item and no line item management: push one assignment at a "
            "time (--assignment) from the LMS link of that assignment"
        )
    return None


def push_grades(
    store: Path, course: str, grades: Iterable[Grade], client: AgsClient, now: Callable[[], float] = time.time
) -> list[Post]:
    """Post each grade; record (and return) every outcome: posted, failed (with why) or skipped."""
    grades = list(grades)
    known = launches(store, course)
    assignments = len({g.assignment for g in grades})
    outcomes = []
    for grade in grades:
        launch = known.get(grade.username)
        post = Post(
            course,
            grade.username,
            grade.assignment,
            grade.score,
            grade.max_score,
            "pending",
            0,
            "",
            "",
            now(),
        )
        reason = skip_reason(launch, assignments)
        if reason is not None or launch is None:
            post = replace(post, status="skipped", detail=reason or "")
        else:
            record_post(store, post)
            try:
                lineitem = client.lineitem(launch, course, grade)
                post = replace(post, lineitem=lineitem)
                attempts = client.post_score(launch, lineitem, grade)
                post = replace(post, status="posted", attempts=attempts)
            except PlatformError as exc:
                post = replace(post, status="failed", attempts=exc.attempts, detail=str(exc))
        post = replace(post, updated=now())
        record_post(store, post)
        outcomes.append(post)
    return outcomes
