"""The hub's record of LTI 1.3 launches (what AGS needs per user and course) and of score posts.

One SQLite file in the state folder, created 0600 and root's: the hub writes launches at login, the CLI
reads them and records posts, the staff's page reads posts. Not JupyterHub's auth_state: that is one
blob per user (launches are per user *and* course) and needs a crypt key coursehub does not manage;
nothing here is secret, but it must not be writable by students, and it is not.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from .ags import AgsLaunch

SCHEMA = """
CREATE TABLE IF NOT EXISTS launches (
    user TEXT NOT NULL, course TEXT NOT NULL, issuer TEXT NOT NULL, client_id TEXT NOT NULL,
    deployment_id TEXT NOT NULL, sub TEXT NOT NULL, lineitems TEXT NOT NULL, lineitem TEXT NOT NULL,
    scopes TEXT NOT NULL, launched REAL NOT NULL, PRIMARY KEY (user, course));
CREATE TABLE IF NOT EXISTS posts (
    course TEXT NOT NULL, user TEXT NOT NULL, assignment TEXT NOT NULL, score REAL NOT NULL,
    max_score REAL NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL, detail TEXT NOT NULL,
    lineitem TEXT NOT NULL, updated REAL NOT NULL, PRIMARY KEY (course, user, assignment));
"""
STATUSES = ("pending", "posted", "failed", "skipped")


@dataclass(frozen=True)
class Post:
    """The latest attempt to post one user's score of one assignment."""

    course: str
    user: str
    assignment: str
    score: float
    max_score: float
    status: str  # one of STATUSES
    attempts: int
    detail: str  # why it failed or was skipped
    lineitem: str
    updated: float


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """The store, created private on first use; one transaction per `with`."""
    if not path.exists():
        # SQLite keeps the mode of an existing file: create it 0600 before SQLite opens it.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, timeout=10)
    try:
        db.executescript(SCHEMA)
        with db:
            yield db
    finally:
        db.close()


def save_launch(path: Path, launch: AgsLaunch) -> None:
    """Keep this launch as the user's latest of the course."""
    with connect(path) as db:
        db.execute(
            "INSERT OR REPLACE INTO launches VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                launch.user,
                launch.course,
                launch.issuer,
                launch.client_id,
                launch.deployment_id,
                launch.sub,
                launch.lineitems,
                launch.lineitem,
                json.dumps(list(launch.scopes)),
                time.time(),
            ),
        )


def launches(path: Path, course: str) -> dict[str, AgsLaunch]:
    """The course's users' latest launches, by username."""
    if not path.exists():
        return {}
    with connect(path) as db:
        rows = db.execute(
            "SELECT user, course, issuer, client_id, deployment_id, sub, lineitems, lineitem, scopes "
            "FROM launches WHERE course = ?",
            (course,),
        ).fetchall()
    return {
        user: AgsLaunch(user, course, iss, client, deployment, sub, items, item, tuple(json.loads(scopes)))
        for user, course, iss, client, deployment, sub, items, item, scopes in rows
    }


def record_post(path: Path, post: Post) -> None:
    """Record the outcome of one post (replacing the previous one of that user and assignment)."""
    with connect(path) as db:
        db.execute(
            "INSERT OR REPLACE INTO posts VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                post.course,
                post.user,
                post.assignment,
                post.score,
                post.max_score,
                post.status,
                post.attempts,
                post.detail,
                post.lineitem,
                post.updated,
            ),
        )


def posts(path: Path, course: str) -> list[Post]:
    """The course's posts: failed and pending first, then by assignment and user."""
    if not path.exists():
        return []
    with connect(path) as db:
        rows = db.execute("SELECT * FROM posts WHERE course = ?", (course,)).fetchall()
    order = {"failed": 0, "pending": 1, "skipped": 2, "posted": 3}
    return sorted((Post(*r) for r in rows), key=lambda p: (order.get(p.status, 9), p.assignment, p.user))
