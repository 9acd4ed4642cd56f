"""A course's nbgrader gradebook as data: one row per submitted assignment (`coursehub course grades`)."""

from __future__ import annotations

import csv
import io
import os
import sqlite3
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import CoursehubError
from ..names import GRADES_CSV_COLUMNS

# The columns another tool (the LTI grade push) reads: keep them exactly.
COLUMNS = GRADES_CSV_COLUMNS

# nbgrader's own arithmetic (nbgrader/api.py): a grade is its manual score, else its automatic score, plus any
# extra credit; an assignment's maximum is the sum of its notebooks' grade and task cells' maxima.
QUERY = """
SELECT sa.student_id, a.name,
  (SELECT COALESCE(SUM(CASE
      WHEN g.manual_score IS NOT NULL THEN g.manual_score + COALESCE(g.extra_credit, 0)
      WHEN g.auto_score IS NOT NULL THEN g.auto_score + COALESCE(g.extra_credit, 0)
      ELSE 0 END), 0)
   FROM grade g JOIN submitted_notebook sn ON g.notebook_id = sn.id WHERE sn.assignment_id = sa.id),
  (SELECT COALESCE(SUM(gc.max_score), 0) FROM grade_cells gc JOIN base_cell bc ON gc.id = bc.id
     JOIN notebook n ON bc.notebook_id = n.id WHERE n.assignment_id = a.id)
  + (SELECT COALESCE(SUM(tc.max_score), 0) FROM task_cells tc JOIN base_cell bc ON tc.id = bc.id
     JOIN notebook n ON bc.notebook_id = n.id WHERE n.assignment_id = a.id)
FROM submitted_assignment sa JOIN assignment a ON sa.assignment_id = a.id
ORDER BY a.name, sa.student_id
"""


@dataclass(frozen=True)
class GradeRow:
    """One student's score on one assignment."""

    username: str
    assignment: str
    score: float
    max_score: float


def read_gradebook(path: Path, usernames: Mapping[str, str]) -> tuple[list[GradeRow], list[str]]:
    """The gradebook's rows (nbgrader's student ids mapped to hub usernames), and the ids not mapped.

    The file is in the course's staff folder, which staff may change: it is opened without following a
    symlink, read-only, and its schema trusted with nothing.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise CoursehubError(
            f"no gradebook yet at {path}: staff create it with nbgrader (formgrader)"
        ) from None
    except OSError as exc:
        raise CoursehubError(f"cannot open the gradebook {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CoursehubError(f"the gradebook {path} is not a regular file")
        connection = sqlite3.connect(f"file:/proc/self/fd/{fd}?mode=ro&immutable=1", uri=True, timeout=10)
        try:
            connection.execute("PRAGMA trusted_schema = OFF")
            found = connection.execute(QUERY).fetchall()
        except sqlite3.DatabaseError as exc:
            raise CoursehubError(f"the gradebook {path} cannot be read as nbgrader's: {exc}") from None
        finally:
            connection.close()
    finally:
        os.close(fd)
    rows, unmapped = [], []
    for student, assignment, score, max_score in found:
        if student not in usernames:
            unmapped.append(student)
        rows.append(GradeRow(usernames.get(student, student), assignment, float(score), float(max_score)))
    return rows, sorted(set(unmapped))


def grades_csv(rows: list[GradeRow]) -> str:
    """The rows as CSV with exactly COLUMNS."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([row.username, row.assignment, _number(row.score), _number(row.max_score)])
    return out.getvalue()


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)
