"""Course staff update content without root, on a real hub: signed push webhooks and auto_update."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from conftest import hub_root, wait_for

from coursehub.courses.catalog import load_catalog

pytestmark = [pytest.mark.hub]
SECRET = "course-staff-know-this"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit_file(repo: Path, name: str, text: str) -> str:
    (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", f"add {name}")
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def webhook_hub(make_hub_module):
    outside = hub_root()  # the repos and the secret file, made before the hub reads its config
    try:
        repos = {}
        for name in ("web101", "auto101"):
            repo = outside / name
            repo.mkdir()
            subprocess.run(["git", "init", "-q", str(repo)], check=True)
            commit_file(repo, "notes.md", "version 1\n")
            repos[name] = repo
        secret_file = outside / "web101.secret"
        secret_file.write_text(SECRET + "\n")
        os.chmod(secret_file, 0o600)
        hub = make_hub_module(
            courses=[
                {"name": "web101", "repo": str(repos["web101"]), "webhook_secret": f"file:{secret_file}"},
                {"name": "auto101", "repo": str(repos["auto101"]), "auto_update": True},
            ]
        )
        hub.cli("course", "build", "web101")
        hub.cli("course", "build", "auto101")
        yield hub, repos
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def catalog(hub):
    return load_catalog(hub.state_dir / "courses")


def push(hub, course: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(
        hub.url + f"hub/coursehub/webhook/{course}",
        data=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}"}


def update_lines(hub, course: str) -> int:
    return hub.log().count(f"course {course}: updating")


def test_signed_push_updates_the_course_and_keeps_student_edits(webhook_hub):
    hub, repos = webhook_hub
    (name,) = hub.create_accounts("hook", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="web101")
    notes = "import pathlib, os; p = pathlib.Path('web101/notes.md')"
    hub.run(name, token, notes + "; p.write_text('my own notes')", server="web101")
    before = catalog(hub)["web101"]
    head = commit_file(repos["web101"], "week2.md", "week 2\n")
    branch = git(repos["web101"], "branch", "--show-current")
    body = json.dumps({"ref": f"refs/heads/{branch}", "repository": {"default_branch": branch}}).encode()

    # Unsigned, wrongly signed, signed for another body, a wrong GitLab token: 403, nothing runs.
    for headers in (
        {},
        signed(body, "not-the-secret"),
        signed(b"{}"),
        {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "not-the-secret"},
    ):
        assert push(hub, "web101", body, headers).status_code == 403
    too_big = b" " * (25 * 2**20 + 1)
    assert push(hub, "web101", too_big, signed(too_big)).status_code == 413
    # A push to a branch the course does not follow (it follows the default branch): nothing.
    other = json.dumps({"ref": "refs/heads/elsewhere", "repository": {"default_branch": "main"}}).encode()
    answer = push(hub, "web101", other, signed(other))
    assert answer.status_code == 200 and answer.json()["update"] == "none"
    # A course without a secret, and no course at all: 404.
    assert push(hub, "auto101", body, signed(body)).status_code == 404
    assert push(hub, "nosuch", body, signed(body)).status_code == 404
    assert update_lines(hub, "web101") == 0
    assert catalog(hub)["web101"].built_at == before.built_at
    assert not (Path(before.content) / "week2.md").exists()

    response = push(hub, "web101", body, signed(body))
    assert response.status_code == 202, response.text
    assert response.json()["update"] == "started"  # nothing was running: the bad pushes started nothing
    wait_for(lambda: catalog(hub)["web101"].commit == head, timeout=300, what="the course update")
    record = catalog(hub)["web101"]
    assert (Path(record.content) / "week2.md").read_text() == "week 2\n"
    assert update_lines(hub, "web101") == 1

    # The student's next start merges the new file in and keeps their edit.
    hub.api().stop_server(name, "web101")
    wait_for(lambda: not hub.api().json("GET", f"users/{name}")["servers"], what="the stop")
    hub.spawn(name, token, server="web101")
    out = hub.run(
        name, token, notes + "; print(p.read_text(), os.path.exists('web101/week2.md'))", server="web101"
    )
    assert out.strip() == "my own notes True"


def test_gitlab_token_updates_and_a_ping_does_not(webhook_hub):
    hub, repos = webhook_hub
    runs = update_lines(hub, "web101")
    ping = push(hub, "web101", b"{}", {**signed(b"{}"), "X-GitHub-Event": "ping"})
    assert ping.status_code == 200 and ping.json()["update"] == "none"
    head = commit_file(repos["web101"], "week3.md", "week 3\n")
    response = push(hub, "web101", b"{}", {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET})
    assert response.status_code == 202, response.text
    wait_for(lambda: catalog(hub)["web101"].commit == head, timeout=300, what="the course update")
    assert (Path(catalog(hub)["web101"].content) / "week3.md").exists()
    assert update_lines(hub, "web101") == runs + 1  # the push's update; none for the ping


def test_auto_update_pulls_in_the_background_when_upstream_moved(webhook_hub):
    hub, repos = webhook_hub
    served = catalog(hub)["auto101"].commit
    assert served == git(repos["auto101"], "rev-parse", "HEAD")  # the build recorded its commit
    head = commit_file(repos["auto101"], "moved.md", "new\n")
    (name,) = hub.create_accounts("auto", 1)
    token = hub.token_for(name)
    hub.spawn(name, token, server="auto101")  # the start goes on with the content in service…
    # …and the course is updated behind it; the next start gets the new content.
    wait_for(lambda: catalog(hub)["auto101"].commit == head, timeout=300, what="the auto update")
    assert (Path(catalog(hub)["auto101"].content) / "moved.md").exists()
