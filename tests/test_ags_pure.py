"""LTI Advantage grade posting, pure: the AGS claim of a launch, the CSV, the bodies and who is skipped."""

from __future__ import annotations

import pytest

from coursehub.auth.ags import (
    AGS_CLAIM,
    SCOPE_LINEITEM,
    SCOPE_SCORE,
    Grade,
    GradesError,
    ags_launch,
    read_grades,
    score_body,
    scores_url,
    token_scopes,
)
from coursehub.clients.ags import skip_reason

CLAIMS = {
    "iss": "https://lms.example",
    "aud": ["tool-1"],
    "sub": "u-42",
    "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "d1",
    AGS_CLAIM: {"lineitems": "https://lms.example/li", "scope": [SCOPE_SCORE, SCOPE_LINEITEM]},
}


def test_a_launch_keeps_what_posting_needs():
    launch = ags_launch("ann", "bio101", CLAIMS)
    assert launch is not None
    assert (launch.client_id, launch.sub, launch.deployment_id) == ("tool-1", "u-42", "d1")
    assert token_scopes(launch) == [SCOPE_SCORE, SCOPE_LINEITEM]


@pytest.mark.parametrize(
    "endpoint",
    [None, {"lineitems": "https://lms.example/li", "scope": [SCOPE_LINEITEM]}, {"scope": [SCOPE_SCORE]}],
)
def test_launches_without_score_posting_keep_nothing(endpoint):
    claims = {k: v for k, v in CLAIMS.items() if k != AGS_CLAIM}
    if endpoint is not None:
        claims[AGS_CLAIM] = endpoint
    assert ags_launch("ann", "bio101", claims) is None


def test_a_launch_with_one_line_item_posts_one_assignment_at_a_time():
    claims = {**CLAIMS, AGS_CLAIM: {"lineitem": "https://lms.example/li/7", "scope": [SCOPE_SCORE]}}
    launch = ags_launch("ann", "bio101", claims)
    assert token_scopes(launch) == [SCOPE_SCORE]
    assert skip_reason(launch, 1) is None
    assert "--assignment" in skip_reason(launch, 2)
    assert "open it from the LMS" in skip_reason(None, 1)


def test_the_score_body_names_the_lti_user():
    launch = ags_launch("ann", "bio101", CLAIMS)
    body = score_body(launch, Grade("ann", "hw1", 7.5, 10), "2026-01-01T00:00:00.000Z")
    assert body["userId"] == "u-42" and body["scoreGiven"] == 7.5 and body["scoreMaximum"] == 10
    assert scores_url("https://lms.example/li/7?type=x") == "https://lms.example/li/7/scores?type=x"


@pytest.mark.parametrize(
    "text, message",
    [
        ("user,assignment,score,max_score\n", "header must be exactly"),
        ("username,assignment,score,max_score\nann,hw1,seven,10\n", "line 2: score and max_score"),
        ("username,assignment,score,max_score\nann,hw1,1,0\n", "line 2: need 0 <= score"),
        ("username,assignment,score,max_score\nann,hw1,nan,10\n", "line 2: need"),
        ("username,assignment,score,max_score\n,hw1,1,10\n", "must not be empty"),
    ],
)
def test_bad_csv_rows_are_named(text, message):
    with pytest.raises(GradesError, match=message):
        read_grades(text)


def test_a_good_csv_reads():
    grades = read_grades("username,assignment,score,max_score\nann,hw1,7,10\nbob,hw1,0,10\n")
    assert grades == [Grade("ann", "hw1", 7.0, 10.0), Grade("bob", "hw1", 0.0, 10.0)]


def test_deep_linking_lists_only_the_courses_own_notebooks(tmp_path):
    from coursehub.auth.deep_linking import list_notebooks

    (tmp_path / "week1").mkdir()
    (tmp_path / "week1" / "intro.ipynb").write_text("{}")
    (tmp_path / "a.ipynb").write_text("{}")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.ipynb").write_text("{}")
    (tmp_path / "notes.md").write_text("")
    (tmp_path / "link.ipynb").symlink_to("/etc/passwd")
    (tmp_path / "out").symlink_to("/etc", target_is_directory=True)
    assert list_notebooks(tmp_path) == ["a.ipynb", "week1/intro.ipynb"]


def test_a_deep_linking_request_needs_a_return_url_and_resource_links():
    from coursehub.auth.deep_linking import DL, LTI, deep_link_request, response_claims

    claims = {**CLAIMS, LTI + "message_type": "LtiDeepLinkingRequest"}
    with pytest.raises(ValueError, match="deep_link_return_url"):
        deep_link_request("ann", "bio101", claims)
    settings = {"deep_link_return_url": "https://lms.example/dl", "accept_types": ["file"]}
    with pytest.raises(ValueError, match="ltiResourceLink"):
        deep_link_request("ann", "bio101", {**claims, DL + "deep_linking_settings": settings})
    settings = {**settings, "accept_types": ["ltiResourceLink"], "data": "op-1"}
    request = deep_link_request("ann", "bio101", {**claims, DL + "deep_linking_settings": settings})
    answer = response_claims(request, [], 1000)
    assert (answer["iss"], answer["aud"], answer[DL + "data"]) == ("tool-1", "https://lms.example", "op-1")
    assert deep_link_request("ann", "bio101", CLAIMS) is None  # a resource link launch
