"""LTI Advantage Assignment and Grade Services, pure: what a launch allows, and the bodies posted."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from coursehub.errors import GradesError
from coursehub.names import GRADES_CSV_COLUMNS

AGS_CLAIM = "https://purl.imsglobal.org/spec/lti-ags/claim/endpoint"
DEPLOYMENT_CLAIM = "https://purl.imsglobal.org/spec/lti/claim/deployment_id"
SCOPE = "https://purl.imsglobal.org/spec/lti-ags/scope/"
SCOPE_LINEITEM = SCOPE + "lineitem"
SCOPE_LINEITEM_READ = SCOPE + "lineitem.readonly"
SCOPE_SCORE = SCOPE + "score"
SCORE_TYPE = "application/vnd.ims.lis.v1.score+json"
LINEITEM_TYPE = "application/vnd.ims.lis.v2.lineitem+json"
LINEITEMS_TYPE = "application/vnd.ims.lis.v2.lineitemcontainer+json"
CSV_COLUMNS = GRADES_CSV_COLUMNS  # what `coursehub course grades --csv` writes


@dataclass(frozen=True)
class AgsLaunch:
    """What posting a score for one user of one course needs, kept from their latest LTI 1.3 launch."""

    user: str
    course: str
    issuer: str
    client_id: str
    deployment_id: str
    sub: str  # the score's userId
    lineitems: str  # the context's line item container ('' when the platform gave none)
    lineitem: str  # the resource link's own line item ('' when none)
    scopes: tuple[str, ...]


def ags_launch(user: str, course: str, claims: Mapping[str, Any]) -> AgsLaunch | None:
    """The AGS part of a verified id_token's claims, or None when the launch offers no AGS."""
    endpoint = claims.get(AGS_CLAIM)
    if not isinstance(endpoint, Mapping):
        return None
    lineitems, lineitem = str(endpoint.get("lineitems") or ""), str(endpoint.get("lineitem") or "")
    scopes = tuple(str(s) for s in endpoint.get("scope") or [] if isinstance(s, str))
    if not (lineitems or lineitem) or SCOPE_SCORE not in scopes or not claims.get("sub"):
        return None
    aud = claims.get("aud")
    client_id = str(claims.get("azp") or (aud[0] if isinstance(aud, list) and aud else aud) or "")
    return AgsLaunch(
        user=user,
        course=course,
        issuer=str(claims.get("iss") or ""),
        client_id=client_id,
        deployment_id=str(claims.get(DEPLOYMENT_CLAIM) or ""),
        sub=str(claims["sub"]),
        lineitems=lineitems,
        lineitem=lineitem,
        scopes=scopes,
    )


def can_manage_lineitems(launch: AgsLaunch) -> bool:
    """Whether line items can be found and created per assignment (else only the launch's own)."""
    return bool(launch.lineitems) and SCOPE_LINEITEM in launch.scopes


def token_scopes(launch: AgsLaunch) -> list[str]:
    """The scopes to ask the token for: score, plus line item management when granted."""
    wanted = [SCOPE_SCORE, SCOPE_LINEITEM] if can_manage_lineitems(launch) else [SCOPE_SCORE]
    return [s for s in wanted if s in launch.scopes]


@dataclass(frozen=True)
class Grade:
    """One row of a gradebook export."""

    username: str
    assignment: str
    score: float
    max_score: float


def read_grades(text: str) -> list[Grade]:
    """Rows of a `username,assignment,score,max_score` CSV; a bad row names its line."""
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
        header = ",".join(CSV_COLUMNS)
        raise GradesError(f"the CSV's header must be exactly {header} (got {reader.fieldnames})")
    grades = []
    for row in reader:
        line = reader.line_num
        try:
            score, max_score = float(row["score"]), float(row["max_score"])
        except (TypeError, ValueError):
            raise GradesError(f"line {line}: score and max_score must be numbers") from None
        if not (math.isfinite(score) and math.isfinite(max_score)) or max_score <= 0 or score < 0:
            raise GradesError(f"line {line}: need 0 <= score and 0 < max_score")
        if not row["username"] or not row["assignment"]:
            raise GradesError(f"line {line}: username and assignment must not be empty")
        grades.append(Grade(row["username"], row["assignment"], score, max_score))
    return grades


def score_body(launch: AgsLaunch, grade: Grade, timestamp: str) -> dict[str, Any]:
    """The score posted to `<lineitem>/scores` (a completed, fully graded activity)."""
    return {
        "userId": launch.sub,
        "scoreGiven": grade.score,
        "scoreMaximum": grade.max_score,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": timestamp,
    }


def lineitem_body(course: str, assignment: str, max_score: float) -> dict[str, Any]:
    """A new line item for an assignment, found again later by its resourceId and tag."""
    return {"scoreMaximum": max_score, "label": assignment, "resourceId": assignment, "tag": course}


def find_lineitem(items: Iterable[Mapping[str, Any]], assignment: str) -> str | None:
    """The id (URL) of the line item whose resourceId is the assignment."""
    for item in items:
        if item.get("resourceId") == assignment and item.get("id"):
            return str(item["id"])
    return None


def scores_url(lineitem: str) -> str:
    """`<lineitem>/scores`, keeping the line item URL's query (the spec allows one)."""
    base, sep, query = lineitem.partition("?")
    return f"{base.rstrip('/')}/scores{sep}{query}"
