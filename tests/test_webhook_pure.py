"""Course updates by webhook and auto_update, as data: signatures, ls-remote output, coalescing, config."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import ValidationError

from coursehub.courses.access import may_update
from coursehub.courses.content import commit_id
from coursehub.courses.remote import commit_for_ref
from coursehub.hub.updates import CourseUpdater, upstream_moved
from coursehub.hub.webhook import event_name, push_concerns, push_is_signed
from coursehub.hubconfig import build
from coursehub.hubconfig.runtime import Runtime
from coursehub.paths import StatePaths
from coursehub.settings import Settings

# GitHub's documented test values ("Validating webhook deliveries").
GITHUB_SECRET = "It's a Secret to Everybody"
GITHUB_BODY = b"Hello, World!"
GITHUB_SIGNATURE = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"


def github(body: bytes, secret: str) -> dict[str, str]:
    return {"X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}


@pytest.mark.parametrize(
    ("headers", "body", "secret", "ok"),
    [
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_BODY, GITHUB_SECRET, True),
        (
            {"X-Hub-Signature-256": GITHUB_SIGNATURE.upper().replace("SHA256", "sha256")},
            GITHUB_BODY,
            GITHUB_SECRET,
            True,
        ),
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE}, b"Hello, World?", GITHUB_SECRET, False),  # body changed
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE}, GITHUB_BODY, "another secret", False),
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE[:-2]}, GITHUB_BODY, GITHUB_SECRET, False),  # truncated
        (
            {"X-Hub-Signature-256": GITHUB_SIGNATURE.replace("sha256", "sha1")},
            GITHUB_BODY,
            GITHUB_SECRET,
            False,
        ),
        ({"X-Hub-Signature-256": GITHUB_SIGNATURE[7:]}, GITHUB_BODY, GITHUB_SECRET, False),  # no 'sha256='
        ({"X-Hub-Signature-256": ""}, GITHUB_BODY, GITHUB_SECRET, False),
        (github(b"{}", "s3cret"), b"{}", "s3cret", True),
        ({"X-Gitlab-Token": "s3cret"}, b"{}", "s3cret", True),
        ({"X-Gitlab-Token": "s3cret "}, b"{}", "s3cret", False),
        ({"X-Gitlab-Token": "s3cre"}, b"{}", "s3cret", False),
        ({"X-Gitlab-Token": ""}, b"{}", "s3cret", False),
        ({"X-Gitlab-Token": "é"}, b"{}", "s3cret", False),  # non-ASCII: refused, not an error
        ({}, b"{}", "s3cret", False),  # unsigned
        ({"X-Gitlab-Token": ""}, b"{}", "", False),  # no secret: nothing passes
        ({"X-Hub-Signature": "sha1=" + "0" * 40}, b"{}", "s3cret", False),  # GitHub's old SHA-1 header
        # A wrong GitHub signature is not rescued by a right GitLab token beside it.
        ({"X-Hub-Signature-256": "sha256=" + "0" * 64, "X-Gitlab-Token": "s3cret"}, b"{}", "s3cret", False),
    ],
)
def test_push_signatures(headers, body, secret, ok):
    assert push_is_signed(headers, body, secret) is ok


def test_github_documented_example_is_what_hmac_gives():
    assert github(GITHUB_BODY, GITHUB_SECRET)["X-Hub-Signature-256"] == GITHUB_SIGNATURE


@pytest.mark.parametrize(
    ("headers", "event"),
    [
        ({"X-GitHub-Event": "push"}, "push"),
        ({"X-GitHub-Event": "ping"}, "ping"),
        ({"X-Gitlab-Event": "Push Hook"}, "Push Hook"),
        ({}, ""),
    ],
)
def test_event_names(headers, event):
    assert event_name(headers) == event


A = "a" * 40
B = "b" * 40
C = "c" * 40


@pytest.mark.parametrize(
    ("listing", "ref", "commit"),
    [
        (f"{A}\tHEAD\n{A}\trefs/heads/main\n", "HEAD", A),
        (f"{A}\trefs/heads/main\n{B}\trefs/heads/dev\n", "dev", B),
        (f"{A}\trefs/heads/main\n", "refs/heads/main", A),
        # An annotated tag: the tag object first, then the commit it points to (^{}): the commit.
        (f"{B}\trefs/tags/v1\n{C}\trefs/tags/v1^{{}}\n", "v1", C),
        (f"{B}\trefs/tags/v1\n", "v1", B),  # a lightweight tag
        (f"{A}\trefs/heads/main\n", "dev", None),
        ("", "HEAD", None),
        ("garbage\n", "HEAD", None),
    ],
)
def test_commit_for_ref(listing, ref, commit):
    assert commit_for_ref(listing, ref) == commit


@pytest.mark.parametrize(
    ("served", "upstream", "moved"),
    [(A, B, True), (A, A, False), (A, None, False), ("", B, False)],
)
def test_upstream_moved(served, upstream, moved):
    assert upstream_moved(served, upstream) is moved


@pytest.mark.parametrize(
    ("output", "commit"),
    [
        (A + "\n", A),
        (f"warning: x\n{B}\n", B),
        ("fatal: not a git repository\n", ""),
        ("", ""),
        ("a" * 39, ""),
    ],
)
def test_commit_id(output, commit):
    assert commit_id(output) == commit


class CountingUpdater(CourseUpdater):
    """The updater with its build replaced by a wait on a gate: only the coalescing is under test."""

    gate: asyncio.Event

    async def _build(self, name: str, why: str) -> None:
        await self.gate.wait()
        self.runs[name] = self.runs.get(name, 0) + 1


def test_pushes_during_an_update_coalesce_into_one_more_run(tmp_path):
    async def scenario() -> tuple[list[str], dict[str, int], bool]:
        settings = Settings(courses=[{"name": "bio", "repo": "/nowhere"}, {"name": "chem", "repo": "/x"}])
        updater = CountingUpdater(settings, StatePaths(tmp_path))
        updater.gate = asyncio.Event()
        states = [updater.request("bio", "push")]
        await asyncio.sleep(0)  # the update has begun (it waits in its build)
        states += [updater.request("bio", "push") for _ in range(49)]  # a flood meanwhile
        states.append(updater.request("chem", "push"))
        await asyncio.sleep(0)
        updater.gate.set()
        while updater.running:
            await asyncio.sleep(0.01)
        return states, updater.runs, bool(updater.again)

    states, runs, pending = asyncio.run(scenario())
    assert states[0] == "started" and set(states[1:50]) == {"queued"} and states[50] == "started"
    assert runs == {"bio": 2, "chem": 1}  # the first run, and one more for all the pushes during it
    assert not pending


def runtime(tmp_path: Path) -> Runtime:
    return Runtime(paths=StatePaths(tmp_path), proxy_command="chp", python="python3", user_env=Path("/"))


def test_config_hands_resolved_secrets_and_settings_to_the_hub(tmp_path):
    settings = Settings(
        courses=[
            {"name": "bio", "repo": "/r", "webhook_secret": "env:BIO_HOOK"},
            {"name": "chem", "repo": "/r", "auto_update": True},
            {"name": "art", "repo": "/r"},
        ]
    )
    seen = []

    def secrets(reference: str, where: str) -> str:
        seen.append((reference, where))
        return "resolved-" + reference

    updates = build(settings, runtime(tmp_path), secrets=secrets).Authenticator.course_updates
    assert updates["webhook_secrets"] == {"bio": "resolved-env:BIO_HOOK"}
    assert updates["state_dir"] == str(tmp_path)
    assert Settings.model_validate_json(updates["settings"]).courses[1].auto_update is True
    assert ("env:BIO_HOOK", "course 'bio' webhook_secret") in seen


def test_without_secrets_the_hub_still_builds_for_the_staff_button_but_has_no_webhook(tmp_path):
    settings = Settings(courses=[{"name": "art", "repo": "/r"}])
    updates = build(settings, runtime(tmp_path), secrets=lambda r, w: "-").Authenticator.course_updates
    assert updates["webhook_secrets"] == {} and updates["state_dir"] == str(tmp_path)


@dataclass
class Role:
    name: str


@dataclass
class User:
    name: str
    admin: bool = False
    roles: list = field(default_factory=list)
    groups: list = field(default_factory=list)


@dataclass
class Group:
    name: str
    roles: list = field(default_factory=list)


@pytest.mark.parametrize(
    ("user", "course", "allowed"),
    [
        (User("tess", roles=[Role("user"), Role("course-staff-bio")]), "bio", True),
        (User("tess", roles=[Role("user"), Role("course-staff-bio")]), "chem", False),
        (User("tess", roles=[Role("course-staff-bio-2")]), "bio", False),
        (User("ann", roles=[Role("user")]), "bio", False),
        (User("root", admin=True), "bio", True),
        (None, "bio", False),
        # An LTI TA: the staff role comes with the lti-<course>-staff group, not the user.
        (
            User("ta", roles=[Role("user")], groups=[Group("lti-bio-staff", [Role("course-staff-bio")])]),
            "bio",
            True,
        ),
        (User("ta", groups=[Group("lti-bio-staff", [Role("course-staff-bio")])]), "chem", False),
    ],
)
def test_who_may_update_a_course(user, course, allowed):
    assert may_update(user, course) is allowed


def test_a_secret_written_in_the_config_is_refused():
    with pytest.raises(ValidationError, match="secrets are never written in coursehub.yaml"):
        Settings(courses=[{"name": "bio", "repo": "/r", "webhook_secret": "hunter2"}])


def payload(ref, **extra) -> bytes:
    return json.dumps({"ref": ref, **extra}).encode()


@pytest.mark.parametrize(
    ("body", "course_ref", "concerns"),
    [
        (payload("refs/heads/main"), "main", True),
        (payload("refs/heads/dev"), "main", False),
        (payload("refs/tags/v1"), "v1", True),
        (payload("refs/heads/main", repository={"default_branch": "main"}), "HEAD", True),
        (payload("refs/heads/dev", repository={"default_branch": "main"}), "HEAD", False),
        (payload("refs/heads/dev", project={"default_branch": "dev"}), "HEAD", True),  # GitLab
        (payload("refs/heads/dev"), "HEAD", True),  # no default branch named: update
        (payload("refs/heads/dev", repository="x"), "HEAD", True),
        (payload(None), "main", True),
        (b"not json", "main", True),
        (b"[1, 2]", "main", True),
        (b"", "main", True),
        (b"\xff\xfe", "main", True),
        (b"[" * 100_000 + b"]" * 100_000, "main", True),  # too deep for the parser: updates, no crash
        (payload("refs/heads/main"), "0123456789abcdef0123456789abcdef01234567", False),  # pinned commit
    ],
)
def test_push_concerns_the_course_ref(body, course_ref, concerns):
    assert push_concerns(body, course_ref) is concerns
