"""`coursehub course lti-grades`: post a gradebook's scores to the LMS (LTI Advantage AGS), show outcomes."""

from __future__ import annotations

from pathlib import Path

import click

from coursehub.auth.ags_store import Post
from coursehub.cli.base import state
from coursehub.errors import CoursehubError

MARK = {"posted": "ok", "failed": "FAILED", "skipped": "skipped", "pending": "pending"}


@click.command("lti-grades")
@click.argument("course")
@click.option(
    "--csv",
    "csv_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Scores to post: username,assignment,score,max_score (as `course grades --csv` writes).",
)
@click.option("--assignment", default=None, help="Post only this assignment's scores.")
@click.pass_context
def lti_grades(ctx: click.Context, course: str, csv_file: Path | None, assignment: str | None) -> None:
    """Post COURSE's scores from --csv to the LMS line items of students' LTI 1.3 launches.

    Without --csv, list the last outcome of every post (failed and pending first). Failed posts were
    retried with backoff; run the command again to post them again. Exits 1 when any post failed.
    """
    from coursehub.auth.ags import read_grades
    from coursehub.auth.ags_store import posts

    st = state(ctx)
    if not any(c.name == course for c in st.settings.courses):
        raise CoursehubError(f"no course called '{course}' in the config: see `coursehub course list`")
    if csv_file is None:
        shown = posts(st.paths.lti_grades, course)
        for post in shown:
            _print(post)
        click.echo(f"{len(shown)} post(s) recorded for {course}." if shown else f"No posts for {course} yet.")
        return
    lti = st.settings.auth.lti13
    if st.settings.auth.type != "lti13" or lti is None or not lti.token_url:
        raise CoursehubError(
            "posting grades needs auth.type lti13 with auth.lti13.token_url (the platform's token endpoint)"
        )
    grades = read_grades(csv_file.read_text())
    if assignment is not None:
        grades = [g for g in grades if g.assignment == assignment]
    from coursehub.auth.tool_key import ensure_tool_key
    from coursehub.clients.ags import AgsClient, push_grades
    from coursehub.host.runtime import ensure_state_dir

    ensure_state_dir(st.paths)
    client = AgsClient(lti.token_url, ensure_tool_key(st.paths.lti_tool_key), lti.token_audience)
    outcomes = push_grades(st.paths.lti_grades, course, grades, client)
    for post in outcomes:
        _print(post)
    counts = {s: sum(p.status == s for p in outcomes) for s in ("posted", "failed", "skipped")}
    click.echo(", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
    if counts["failed"]:
        ctx.exit(1)


def _print(post: Post) -> None:
    line = f"{MARK[post.status]:8} {post.user:20} {post.assignment:20} {post.score:g}/{post.max_score:g}"
    if post.attempts > 1:
        line += f" ({post.attempts} attempts)"
    color = {"failed": "red", "skipped": "yellow"}.get(post.status)
    click.secho(line + (f"  {post.detail}" if post.detail else ""), fg=color)
