"""Does `grade` take the zip a Canvas or Moodle download gives, learners' names included?"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402
from grading_fixtures.submissions import HONEST, LESSON, notebook  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-lms")]


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def _grade(archive: Path, course: Path) -> tuple[dict, dict]:
    course.mkdir()
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(archive), "--course", str(course),
         "--out", str(course / "graded"), "--workers", "2", "--no-progress", *isolation_flags()],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = {r["student_id"]: r for r in csv.DictReader(
        (course / "graded" / "grades.csv").open())}
    return rows, json.loads((course / "graded" / "report.json").read_text())


def test_canvas_zip(tmp_path):
    """Is a Canvas download (late, renamed, no notebook at all) graded per learner id?"""
    good = nbformat.writes(notebook({}))
    overflow = nbformat.writes(notebook(HONEST["softmax_overflows"][0]))
    archive = _zip(tmp_path / "submissions.zip", {
        f"doejohn_12345_678901_{LESSON}.ipynb": good,
        f"smithjane_LATE_23456_678902_{LESSON}-1.ipynb": overflow,
        "leeann_34567_678903_my_answers.pdf": "%PDF-1.4 not a notebook",
    })
    rows, report = _grade(archive, tmp_path / "course")  # the lesson is read from metadata
    assert {s: float(r["score"]) for s, r in rows.items()} == {
        "12345": 8.0, "23456": 7.0, "34567": 0.0}
    # Canvas's file name runs the sortable name together: no first or last name in it
    assert (rows["12345"]["first_name"], rows["12345"]["last_name"]) == ("", "")
    assert report["learner_results"]["12345"]["lms_name"] == "doejohn"
    assert list(rows) == sorted(rows)  # one row per learner, sorted by id
    assert rows["23456"]["timestamp"]  # the zip's file time, as nbgrader's timestamp
    assert report["learner_results"]["23456"]["late"]
    notes = {s: " ".join(r["notes"]) for s, r in report["learner_results"].items()}
    assert "marked late by the LMS" in notes["23456"]
    assert f"renamed {LESSON}-1.ipynb" in notes["23456"]
    assert "no notebook submitted" in notes["34567"]


def test_moodle_zip(tmp_path):
    """Is a Moodle download (a folder per learner, full names) graded per participant?"""
    wrong_blanks = nbformat.writes(notebook(HONEST["blanks_wrong"][0]))
    archive = _zip(tmp_path / "moodle.zip", {
        f"Jane Doe_111111_assignsubmission_file_/{LESSON}.ipynb": nbformat.writes(notebook({})),
        "Ann Lee_222222_assignsubmission_file_/my lesson (1).ipynb": wrong_blanks,
    })
    rows, report = _grade(archive, tmp_path / "course")
    assert {s: float(r["score"]) for s, r in rows.items()} == {"111111": 8.0, "222222": 6.5}
    assert (rows["111111"]["first_name"], rows["111111"]["last_name"]) == ("Jane", "Doe")
    assert "renamed my lesson (1).ipynb" in " ".join(report["learner_results"]["222222"]
                                                     ["notes"])
