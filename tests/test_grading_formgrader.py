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
    page = course / "graded" / "feedback" / "full" / lesson.name / f"{lesson.name}.html"
    assert "Still to be graded by your instructor" in page.read_text()

    with Gradebook(config.CourseDirectory.db_url, "attention-lab") as gb:  # formgrader's PUT
        grade = gb.find_grade("why_sqrt", lesson.name, lesson.name, "full")
        assert grade.needs_manual_grade and grade.max_score == 2
        grade.manual_score, grade.needs_manual_grade = 1.5, False
        gb.db.commit()

    refresh = subprocess.run([sys.executable, "-m", "autograder", "feedback", "--lesson", "02",
                              "--course", str(course)], cwd=ROOT, capture_output=True,
                             text=True, timeout=600)
    assert refresh.returncode == 0, refresh.stderr[-2000:]
    html = page.read_text()
    assert "1.5 / 2.0" in html and "Still to be graded" not in html
    ours = {r["student_id"]: r for r in csv.DictReader(  # where that grade run put it (--out)
        (course / "graded" / "grades.csv").open())}
    assert float(ours["full"]["score"]) == auto_max + 1.5

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


def test_course_config_gives_formgrader_an_exchange_and_an_absolute_root():
    """No "exchange directory does not exist" banner, no "root '.' is not absolute"."""
    from traitlets.config.loader import PyFileConfigLoader

    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    assert Path(config.CourseDirectory.root) == ROOT
    exchange = Path(config.Exchange.root)
    assert exchange.is_absolute() and exchange.is_dir() and exchange.parent == ROOT


def test_formgrader_loads_mathjax_from_the_server():
    """Does formgrader's page (rendered as `make instructor` sets it up) load MathJax from
    the Jupyter server (jupyter-server-mathjax), not a CDN an offline machine cannot reach?"""
    import jupyter_server_mathjax

    assert (Path(jupyter_server_mathjax.__file__).parent / "static" / "MathJax.js").exists()
    script = (
        "import nbformat, re\n"
        "from nbconvert import HTMLExporter\n"
        "import nbgrader.server_extensions.formgrader.handlers as h\n"
        "nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('$x^2$')])\n"
        "e = HTMLExporter(template_name='formgrade', extra_template_basedirs=[h.template_path])\n"
        "r = dict(base_url='/b', student='s', last_name='', first_name='', index=0, total=1,\n"
        "         notebook_id='n', assignment_id='a', submission_id='x', notebook_path='p')\n"
        "page = e.from_notebook_node(nb, resources=r)[0]\n"
        "print(re.findall(r'<script src=\"([^\"]*)\"', page))\n")
    env = {**os.environ, "JUPYTER_PATH": str(ROOT / "etc" / "jupyter" / "instructor" / "data")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "../../static/jupyter_server_mathjax/MathJax.js" in done.stdout
    assert "cdnjs" not in done.stdout


def test_plain_nbgrader_autograde_works_on_a_fresh_clone(tmp_path):
    """README's "grade with nbgrader as usual": does `nbgrader autograde` grade a submission
    in a course folder whose gradebook has never seen the lesson (no generate_assignment
    first), without the "root '.' is not absolute" warning?"""
    lesson = find_lesson("01")
    course = tmp_path / "course"
    shutil.copytree(lesson.source_dir, course / "solutions" / lesson.name)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    submitted = course / "submitted" / "ana" / lesson.name
    submitted.mkdir(parents=True)
    shutil.copy(lesson.release, submitted)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde",
                           lesson.name], cwd=course, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (course / "autograded" / "ana" / lesson.name / f"{lesson.name}.ipynb").exists()
    assert "is not absolute" not in done.stderr and "Unwritable" not in done.stderr
