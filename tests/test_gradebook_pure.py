"""The gradebook export without a hub: nbgrader's arithmetic over its tables, the CSV's exact columns."""

from __future__ import annotations

import os
import sqlite3

import pytest

from coursehub.courses.gradebook import COLUMNS, GradeRow, grades_csv, read_gradebook
from coursehub.errors import CoursehubError

# The part of nbgrader 0.9's schema (nbgrader/api.py) the export reads.
SCHEMA = """
CREATE TABLE assignment (id TEXT PRIMARY KEY, name TEXT);
CREATE TABLE notebook (id TEXT PRIMARY KEY, name TEXT, assignment_id TEXT);
CREATE TABLE base_cell (id TEXT PRIMARY KEY, name TEXT, notebook_id TEXT, type TEXT);
CREATE TABLE grade_cells (id TEXT PRIMARY KEY, max_score REAL, cell_type TEXT);
CREATE TABLE task_cells (id TEXT PRIMARY KEY, max_score REAL, cell_type TEXT);
CREATE TABLE submitted_assignment (id TEXT PRIMARY KEY, assignment_id TEXT, student_id TEXT);
CREATE TABLE submitted_notebook (id TEXT PRIMARY KEY, assignment_id TEXT, notebook_id TEXT);
CREATE TABLE grade (id TEXT PRIMARY KEY, notebook_id TEXT, cell_id TEXT, auto_score REAL, manual_score REAL,
                    extra_credit REAL);
INSERT INTO assignment VALUES ('a1', 'ps1'), ('a2', 'ps2');
INSERT INTO notebook VALUES ('n1', 'ps1', 'a1'), ('n2', 'ps2', 'a2');
INSERT INTO base_cell VALUES ('c1', 't1', 'n1', 'GradeCell'), ('c2', 't2', 'n1', 'TaskCell'),
                             ('c3', 't3', 'n2', 'GradeCell');
INSERT INTO grade_cells VALUES ('c1', 2, 'code'), ('c3', 5, 'code');
INSERT INTO task_cells VALUES ('c2', 3, 'markdown');
INSERT INTO submitted_assignment VALUES ('s1', 'a1', 'ch-ann'), ('s2', 'a1', 'ch-bob'),
                                        ('s3', 'a2', 'ch-zed');
INSERT INTO submitted_notebook VALUES ('sn1', 's1', 'n1'), ('sn2', 's2', 'n1'), ('sn3', 's3', 'n2');
-- ann: auto 2, task graded by hand 1.5 with 0.5 extra; bob: auto 0, manual override 1; zed: nothing graded
INSERT INTO grade VALUES ('g1', 'sn1', 'c1', 2, NULL, NULL), ('g2', 'sn1', 'c2', NULL, 1.5, 0.5),
                         ('g3', 'sn2', 'c1', 0, 1, NULL), ('g4', 'sn2', 'c2', NULL, NULL, NULL);
"""


@pytest.fixture
def gradebook(tmp_path):
    path = tmp_path / "gradebook.db"
    with sqlite3.connect(path) as connection:
        connection.executescript(SCHEMA)
    return path


def test_scores_follow_nbgraders_arithmetic_and_ids_map_to_hub_names(gradebook):
    rows, unmapped = read_gradebook(gradebook, {"ch-ann": "ann", "ch-bob": "bob@uni.example"})
    assert rows == [
        GradeRow("ann", "ps1", 4.0, 5.0),
        GradeRow("bob@uni.example", "ps1", 1.0, 5.0),
        GradeRow("ch-zed", "ps2", 0.0, 5.0),
    ]
    assert unmapped == ["ch-zed"]


def test_the_csv_has_exactly_the_columns_the_grade_push_reads(gradebook):
    rows, _ = read_gradebook(gradebook, {"ch-ann": "ann", "ch-bob": "b,ob"})
    assert COLUMNS == ("username", "assignment", "score", "max_score")
    assert (
        grades_csv(rows)
        == 'username,assignment,score,max_score\nann,ps1,4,5\n"b,ob",ps1,1,5\nch-zed,ps2,0,5\n'
    )
    assert grades_csv([GradeRow("ann", "ps1", 1.25, 2.0)]).splitlines()[1] == "ann,ps1,1.25,2"


def test_a_symlinked_missing_or_foreign_gradebook_is_a_clear_error(gradebook, tmp_path):
    link = tmp_path / "link.db"
    os.symlink(gradebook, link)
    with pytest.raises(CoursehubError, match="cannot open"):
        read_gradebook(link, {})
    with pytest.raises(CoursehubError, match="no gradebook yet"):
        read_gradebook(tmp_path / "none.db", {})
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as connection:
        connection.execute("CREATE TABLE t (x)")
    with pytest.raises(CoursehubError, match="cannot be read as nbgrader's"):
        read_gradebook(other, {})
