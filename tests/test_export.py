"""Does `export` write the file each LMS imports? Layouts are checked against the rules of
the LMS's own importer (Canvas: app/models/gradebook_importer.rb; Moodle: the gradebook's
grade/import/csv and the assignment's feedback/offline worksheet), on a gradebook built
with nbgrader's API, then end to end from a Canvas zip and a Moodle zip through `grade`."""

from __future__ import annotations

import csv
import datetime as dt
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT, CourseError
from autograder.export import export

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402
from grading_fixtures.submissions import HONEST, LESSON, notebook  # noqa: E402
from test_grading_postgres import postgres  # noqa: E402, F401  (the fixture)

DUE = dt.datetime(2026, 3, 1, 12, 0, 0)
# student -> (code points of 6, written points of 2 or None if ungraded, submitted at)
CLASS = {
    "12345": (6.0, 2.0, DUE - dt.timedelta(hours=5)),
    "23456": (4.5, 1.0, DUE + dt.timedelta(hours=3)),  # late
    "34567": (3.0, None, DUE - dt.timedelta(days=1)),  # written answer not graded yet
}
NAMES = {"12345": ("John", "Doe"), "23456": ("Jane", "Smith"), "34567": ("Ann", "Lee"),
         "45678": ("Bo", "Kim")}


def _course(tmp_path: Path, db_url: str | None = None) -> Path:
    """A course whose gradebook holds lesson 01 for three learners and one without it."""
    from nbgrader.api import Gradebook

    course = tmp_path / "course"
    course.mkdir(parents=True)
    with Gradebook(db_url or f"sqlite:///{course / 'gradebook.db'}", "attention-lab") as gb:
        gb.add_assignment(LESSON, duedate=DUE)
        gb.add_notebook(LESSON, LESSON)
        gb.add_grade_cell("code", LESSON, LESSON, max_score=6, cell_type="code")
        gb.add_grade_cell("written", LESSON, LESSON, max_score=2, cell_type="markdown")
        for student, (first, last) in NAMES.items():
            gb.update_or_create_student(student, first_name=first, last_name=last,
                                        email=f"{first.lower()}@example.org")
        for student, (code, written, when) in CLASS.items():
            gb.add_submission(LESSON, student, timestamp=when)
            grade = gb.find_grade("code", LESSON, LESSON, student)
            grade.auto_score, grade.needs_manual_grade = code, False  # as autograde leaves it
            grade = gb.find_grade("written", LESSON, LESSON, student)
            grade.manual_score = written
            grade.needs_manual_grade = written is None
        gb.db.commit()
    return course


def _read(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def _canvas_header_ok(row: list[str]) -> bool:
    """Canvas's importer: Student, ID, then SIS User ID, SIS Login ID, Section."""
    return (row[0] == "Student" and re.search("ID", row[1]) is not None
            and re.search(r"SIS\s+User\s+ID", row[2]) is not None
            and re.search(r"SIS\s+Login\s+ID", row[3]) is not None
            and re.search("Section", row[4]) is not None)


def test_canvas_layout(tmp_path):
    """Is it Canvas's gradebook CSV: header, points row, ids, scores, missing left empty?"""
    course = _course(tmp_path)
    out = export("canvas", [LESSON], course=course, to=tmp_path / "c.csv",
                 assignment="Lesson 01 (4242)", echo=lambda *_: None)
    rows = _read(out)
    assert _canvas_header_ok(rows[0]) and rows[0][5:] == ["Lesson 01 (4242)"]
    assert "Points Possible" in rows[1][0] and rows[1][5] == "8"
    body = {r[1]: r for r in rows[2:]}
    assert set(body) == set(NAMES)
    assert body["12345"][0] == "Doe, John"
    assert body["12345"][5] == "8" and body["23456"][5] == "5.5" and body["34567"][5] == "3"
    assert body["45678"][5] == ""  # no submission: empty, which Canvas leaves unchanged


def test_canvas_only_complete_and_roster(tmp_path):
    """With Canvas's own export as roster: its column, its SIS ids, its extra learner?"""
    course = _course(tmp_path)
    roster = tmp_path / "canvas_export.csv"
    with roster.open("w", newline="") as fh:
        csv.writer(fh).writerows([
            ["Student", "ID", "SIS User ID", "SIS Login ID", "Section",
             "Lesson 01: attention as retrieval (777)", "Current Score"],
            ["    Points Possible", "", "", "", "", "8", ""],
            ["Doe, John", "12345", "S1", "jdoe", "A", "", ""],
            ["Smith, Jane", "23456", "S2", "jsmith", "A", "", ""],
            ["Lee, Ann", "34567", "S3", "alee", "B", "", ""],
            ["Park, Sam", "99999", "S9", "spark", "B", "", ""]])
    lines: list[str] = []
    out = export("canvas", [LESSON], course=course, to=tmp_path / "c.csv", roster=roster,
                 only_complete=True, echo=lines.append)
    rows = _read(out)
    assert rows[0][5:] == ["Lesson 01: attention as retrieval (777)"]
    body = {r[1]: r for r in rows[2:]}
    assert body["12345"][2:6] == ["S1", "jdoe", "A", "8"]
    assert body["34567"][5] == ""  # written answer still ungraded, --only-complete
    assert body["99999"][5] == "" and body["99999"][0] == "Park, Sam"  # never submitted
    assert body["45678"][5] == ""  # in the gradebook, not in the roster: still exported
    text = "\n".join(lines)
    assert "written answers still to grade (formgrader) for 1: 34567" in text
    assert "late: 23456 (submitted 2026-03-01T15:00:00Z, 3.0 h after the due date)" in text


def test_canvas_needs_an_id(tmp_path):
    """Are learners without a Canvas id refused, by name, before anything is written?"""
    course = _course(tmp_path)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "attention-lab") as gb:
        gb.update_or_create_student("alice")
    with pytest.raises(CourseError, match="no Canvas ID for alice"):
        export("canvas", [LESSON], course=course, to=tmp_path / "c.csv", echo=lambda *_: None)
    assert not (tmp_path / "c.csv").exists()


def test_moodle_gradebook_layout(tmp_path):
    """Is it Moodle's grade import: a user field, a grade column, '-' for no grade?"""
    course = _course(tmp_path)
    out = export("moodle", [LESSON], course=course, to=tmp_path / "m.csv",
                 echo=lambda *_: None)
    rows = _read(out)
    assert rows[0] == ["Email address", "First name", "Last name", LESSON]
    grades = {r[0]: r[3] for r in rows[1:]}
    assert grades == {"john@example.org": "8", "jane@example.org": "5.5",
                      "ann@example.org": "3", "bo@example.org": "-"}


def test_moodle_gradebook_keyed_through_the_worksheet(tmp_path):
    """Does Moodle's own worksheet, as roster, pair each participant with its address?"""
    course = _course(tmp_path)
    roster = tmp_path / "worksheet.csv"
    roster.write_text("Identifier,Full name,Email address,Status,Grade\n"
                      "Participant 12345,John Doe,jd@uni.example,,\n"
                      "Participant 23456,Jane Smith,js@uni.example,,\n"
                      "Participant 34567,Ann Lee,al@uni.example,,\n"
                      "Participant 45678,Bo Kim,bk@uni.example,,\n")
    rows = _read(export("moodle", [LESSON], course=course, to=tmp_path / "m.csv",
                        roster=roster, echo=lambda *_: None))
    assert {r[0]: r[3] for r in rows[1:]} == {"jd@uni.example": "8", "js@uni.example": "5.5",
                                              "al@uni.example": "3", "bk@uni.example": "-"}


def test_moodle_worksheet_layout(tmp_path):
    """Is it the assignment's grading worksheet: Participant N, Grade, Last modified?"""
    course = _course(tmp_path)
    out = export("moodle-worksheet", [LESSON], course=course, to=tmp_path / "w.csv",
                 echo=lambda *_: None)
    rows = _read(out)
    head = rows[0]
    for column in ("Identifier", "Grade", "Last modified (grade)"):  # what the importer reads
        assert column in head
    body = {r[head.index("Identifier")]: dict(zip(head, r, strict=True)) for r in rows[1:]}
    assert set(body) == {f"Participant {s}" for s in NAMES}
    assert body["Participant 12345"]["Grade"] == "8"
    assert body["Participant 45678"]["Grade"] == ""  # empty: the worksheet import skips it
    assert body["Participant 23456"]["Last modified (submission)"] == "2026-03-01T15:00:00Z"
    dt.datetime.fromisoformat(body["Participant 12345"]["Last modified (grade)"])


def test_csv_has_late_and_manual_details(tmp_path):
    """Does the plain CSV say what is missing, late and still to grade?"""
    course = _course(tmp_path)
    rows = _read(export("csv", None, course=course, to=tmp_path / "g.csv",
                        echo=lambda *_: None))
    body = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert body["23456"]["late"] == "yes" and body["23456"]["seconds_late"] == "10800"
    assert body["34567"]["status"] == "written answers to grade"
    assert body["45678"]["status"] == "missing" and body["45678"]["score"] == ""
    assert (body["12345"]["auto_score"], body["12345"]["manual_score"]) == ("6", "2")


@pytest.mark.notebook
def test_postgres_gradebook_exports_the_same(tmp_path, postgres):  # noqa: F811
    """Does a PostgreSQL gradebook give the very file a SQLite one gives?"""
    from autograder.grading.db import normalize_url

    sqlite = export("canvas", [LESSON], course=_course(tmp_path / "a"), to=tmp_path / "a.csv",
                    echo=lambda *_: None)
    pg = export("canvas", [LESSON], db_url=normalize_url(postgres),
                course=_course(tmp_path / "b", normalize_url(postgres)),
                to=tmp_path / "b.csv", echo=lambda *_: None)
    assert _read(pg) == _read(sqlite) and len(_read(pg)) == 2 + len(NAMES)


# ----------------------------------------------------------------------------- round trips


def _grade_zip(tmp_path: Path, files: dict[str, str]) -> Path:
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    course = tmp_path / "course"
    course.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(archive), "--course", str(course),
         "--lesson", "01", "--workers", "2", "--no-progress", "--out",
         str(course / "graded" / LESSON), *isolation_flags()],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return course


def _export(course: Path, *args: str) -> str:
    run = subprocess.run([sys.executable, "-m", "autograder", "export", "--course",
                          str(course), *args], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return run.stdout


@pytest.mark.notebook
def test_canvas_zip_round_trip(tmp_path):
    """From a Canvas download to Canvas's import: each row keyed by the zip's user id?"""
    course = _grade_zip(tmp_path, {
        f"doejohn_12345_678901_{LESSON}.ipynb": nbformat.writes(notebook({})),
        f"smithjane_LATE_23456_678902_{LESSON}-1.ipynb": nbformat.writes(
            notebook(HONEST["softmax_overflows"][0]))})
    roster = tmp_path / "roster.csv"
    roster.write_text("Student,ID,SIS User ID,SIS Login ID,Section\n"
                      "\"Doe, John\",12345,,,\n\"Smith, Jane\",23456,,,\n\"Lee, Ann\",34567,,,\n")
    stdout = _export(course, "--format", "canvas", "--lesson", "01", "--roster", str(roster),
                     "--assignment", "Lesson 01 (55)")
    rows = _read(course / "graded" / LESSON / "grades-canvas.csv")
    assert _canvas_header_ok(rows[0])
    assert {r[1]: r[5] for r in rows[2:]} == {"12345": "8", "23456": "7", "34567": ""}
    assert "marked late by the LMS" in stdout and "late: 23456" in stdout


@pytest.mark.notebook
def test_moodle_zip_round_trip(tmp_path):
    """From a Moodle download to its grading worksheet: Participant N as in the zip?"""
    course = _grade_zip(tmp_path, {
        f"Jane Doe_111111_assignsubmission_file_/{LESSON}.ipynb":
            nbformat.writes(notebook({})),
        "Ann Lee_222222_assignsubmission_file_/my lesson (1).ipynb":
            nbformat.writes(notebook(HONEST["blanks_wrong"][0]))})
    _export(course, "--format", "moodle-worksheet", "--lesson", "01")
    rows = _read(course / "graded" / LESSON / "grades-moodle-worksheet.csv")
    head = rows[0]
    body = {r[0]: dict(zip(head, r, strict=True)) for r in rows[1:]}
    assert {k: v["Grade"] for k, v in body.items()} == {"Participant 111111": "8",
                                                       "Participant 222222": "6.5"}
    assert body["Participant 111111"]["Full name"] == "Jane Doe"
    assert body["Participant 222222"]["Maximum Grade"] == "8"


def test_no_gradebook_is_one_line_and_creates_nothing(tmp_path):
    """Is a course without a gradebook refused in one line, with no empty gradebook left?"""
    with pytest.raises(CourseError, match="no gradebook at"):
        export("csv", None, course=tmp_path, to=tmp_path / "g.csv", echo=lambda *_: None)
    assert list(tmp_path.iterdir()) == []
