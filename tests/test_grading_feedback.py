"""What every learner reads: `grade`'s feedback for each lesson, read as HTML.

For every lesson a class of two is graded: the solution (everything answered) and the
untouched release (nothing answered). Their feedback pages must show no traceback from a
cell the course wrote (the solution's page none at all), no server path, every figure as an
image (never the bare "<Figure size ...>" text), and each test's diagnosis as wrapped,
rendered text rather than a one-line traceback box.
"""

from __future__ import annotations

import html as htmllib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-feedback")]

TRACEBACK = re.compile(r"(\w+)\s+Traceback \(most recent call last\)")
SERVER_PATH = re.compile(r"/\S*(?:site|dist)-packages/|/\.grading/")  # relative ones are fine


def _text(page: str) -> str:
    return htmllib.unescape(re.sub(r"<[^>]+>", "", page))


def _figures_expected(lesson) -> bool:
    source = "\n".join(c.source for c in nbformat.read(lesson.source, as_version=4).cells
                       if c.cell_type == "code")
    return bool(re.search(r"\bplt\.|\bplots\.|matplotlib|\.plot\(|imshow", source))


def test_feedback_reads_well(lesson, tmp_path):  # conftest: one run per lesson
    course, folder = tmp_path / "course", tmp_path / "class"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    for student, path in (("solution", lesson.source), ("release", lesson.release)):
        (folder / student).mkdir(parents=True)
        shutil.copy(path, folder / student)
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", lesson.name,
         "--course", str(course), "--workers", "2", "--no-progress", *isolation_flags()],
        cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((course / "graded" / lesson.name / "report.json").read_text())
    solution = report["learner_results"]["solution"]
    assert solution["score"] == solution["max_score"] > 0, solution

    pages = {s: (course / "graded" / "feedback" / s / lesson.name /
                 f"{lesson.name}.html").read_text(encoding="utf-8")
             for s in ("solution", "release")}
    for student, page in pages.items():
        text = _text(page)
        assert str(course) not in text and str(ROOT) not in text, student
        assert not SERVER_PATH.search(text), (student, SERVER_PATH.search(text))
        assert "<Figure size" not in text, f"{student}: a figure lost its image"
        # a diagnosis is rendered HTML (wraps), never inside a <pre> box
        for pre in re.findall(r"<pre>.*?</pre>", page, flags=re.S):
            assert "Not yet" not in pre, f"{student}: a diagnosis in a traceback box"
    errors = TRACEBACK.findall(_text(pages["solution"]))
    assert not errors, f"the solution's feedback shows tracebacks: {errors}"
    assert "Not yet" not in pages["solution"]
    if _figures_expected(lesson):
        assert "<img" in pages["solution"], "no figure in the solution's feedback"
    # untouched: only the learner's own unanswered exercises fail, never a course cell
    wrong = [e for e in TRACEBACK.findall(_text(pages["release"]))
             if e not in ("NotImplementedError",)]
    assert not wrong, f"the untouched release's feedback shows {wrong}"
    assert "Not yet" in pages["release"]
