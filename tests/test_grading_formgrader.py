"""After `grade`, do formgrader's manual grading and nbgrader's own commands still work?"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT, find_lesson

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-formgrader")]


def test_formgrader_feedback_and_export_after_grade(tmp_path):
    """Can an instructor grade the short answer by hand, then give feedback and export?"""
    lesson = find_lesson("02")
    course, folder = tmp_path / "course", tmp_path / "class"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)  # the course folder as instructors have it
    (folder / "full").mkdir(parents=True)
    (folder / "blank").mkdir()
    shutil.copy(lesson.source, folder / "full")
    shutil.copy(lesson.release, folder / "blank")
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "02",
         "--course", str(course), "--out", str(course / "graded"), "--workers", "2",
         "--no-progress", *isolation_flags()], cwd=ROOT, capture_output=True, text=True,
        timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]

    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from autograder.course import nbgrader_config

    config = nbgrader_config(course)
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    subs = {s["student"]: s for s in api.get_submissions(lesson.name)}  # formgrader's view
    assert set(subs) == {"full", "blank"}
    assert subs["full"]["needs_manual_grade"] and subs["full"]["autograded"]
    auto_max = subs["full"]["max_code_score"]
    assert subs["full"]["code_score"] == auto_max > 0 and subs["blank"]["code_score"] == 0

    with Gradebook(config.CourseDirectory.db_url, "attention-lab") as gb:  # formgrader's PUT
        grade = gb.find_grade("why_sqrt", lesson.name, lesson.name, "full")
        assert grade.needs_manual_grade and grade.max_score == 2
        grade.manual_score = 1.5
        gb.db.commit()

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    for command in (["generate_feedback", lesson.name, "--force"], ["export"]):
        done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *command],
                              cwd=course, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
    rows = {r["student_id"]: r for r in csv.DictReader((course / "grades.csv").open())}
    assert float(rows["full"]["score"]) == auto_max + 1.5
    html = (course / "graded" / "feedback" / "full" / lesson.name /
            f"{lesson.name}.html").read_text()  # the one feedback folder, grade's and nbgrader's
    assert "1.5 / 2.0" in html  # the manual grade reached the learner's feedback
    source = nbformat.read(lesson.source, as_version=4)
    hidden = [line.strip() for cell in source.cells for line in
              cell.source.split("### BEGIN HIDDEN TESTS", 1)[-1].split(
                  "### END HIDDEN TESTS", 1)[0].splitlines()
              if "BEGIN HIDDEN TESTS" in cell.source and line.strip().startswith("check(")]
    assert hidden and not [line for line in hidden if line.split('"')[1] in html]
