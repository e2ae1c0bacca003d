"""Does `grade` give every hostile learner exactly the grade they earned, and nobody else less?

One run of ``python -m autograder grade`` over a class of lesson 01 submissions, one per way
to cheat or to break a grading run (tests/grading_fixtures/hostile.py lists them with their
expected scores): monkeypatched numpy/torch/checks/builtins, forged and duplicated records,
the course's reference imported or read, forbidden built-ins, attempts to read the gradebook,
the solutions and other learners' files or to reach the network, os._exit, sys.exit, endless
and unstoppable loops, a memory bomb, two fork bombs, a flood of output, a segfault, files that
are not notebooks, renamed, duplicated, deleted, edited or re-labelled cells, warnings, and a
learner printing the hidden tests. Two honest learners sit among them.
"""

from __future__ import annotations

import json
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import hostile, isolation_mode  # noqa: E402
from grading_fixtures.submissions import LESSON  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-adversarial")]

LEARNERS = sorted(hostile.cases(Path("/course"), 0))
HIDDEN_CHECKS = ("softmax.hidden", "attend.hidden", "attend.properties", "blanks.answers")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    if isolation_mode() == "none":
        pytest.skip("sandboxing kernels needs root or unprivileged user namespaces")
    root = tmp_path_factory.mktemp("adversarial")
    course = root / "course"
    course.mkdir()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    expected = hostile.write_class(root / "class", course, listener.getsockname()[1])
    solution_before = (ROOT / "solutions" / LESSON / f"{LESSON}.ipynb").read_bytes()
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(root / "class"), "--lesson", "01",
         "--course", str(course), "--out", str(course / "graded"), "--timeout", "8",
         "--notebook-timeout", "120", "--memory-mb", "1024", "--workers", "2",
         "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    listener.close()
    report = json.loads((course / "graded" / "report.json").read_text())
    return {"run": run, "course": course, "expected": expected, "report": report,
            "solution_before": solution_before}


def _said(graded, student: str) -> str:
    """Everything the run said about a learner: report notes and the verdicts."""
    result = graded["report"]["learner_results"][student]
    text = " ".join(result["notes"]) + " " + result.get("reason", "")
    path = graded["course"] / "autograded" / student / LESSON / f"{LESSON}.ipynb"
    if path.exists():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    text += " " + str(out.get("evalue", ""))
    return text


def test_the_run_grades_everyone(graded):
    """Does one run grade every learner, hostile or not, and end cleanly?"""
    run = graded["run"]
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = graded["report"]
    assert report["learners"] == report["graded"] == len(LEARNERS)
    assert report["failed"] == {}
    csv = (graded["course"] / "graded" / "grades.csv").read_text().splitlines()
    assert csv[0].startswith("assignment,duedate,timestamp,student_id,last_name")
    assert len(csv) == 1 + len(LEARNERS)


@pytest.mark.parametrize("student", LEARNERS)
def test_each_learner_gets_exactly_their_grade(graded, student):
    """Does this learner get the exact expected score, with the reason said out loud?"""
    score, phrase = graded["expected"][student]
    result = graded["report"]["learner_results"][student]
    assert result["status"] == "graded"
    assert result["score"] == score, (student, result)
    assert result["max_score"] == 8.0
    if phrase:
        assert phrase in _said(graded, student), (student, _said(graded, student))


def test_report_has_a_line_for_each_broken_run(graded):
    """Does report.txt name every learner whose run was cut short or repaired?"""
    text = (graded["course"] / "graded" / "report.txt").read_text()
    for student in ("os-exit", "unstoppable-loop", "endless-loop", "memory-bomb", "fork-bomb",
                    "output-flood", "segfault", "not-json", "empty-file", "no-cells",
                    "renamed", "two-notebooks", "deleted-cells", "duplicated-cells",
                    "edited-tests", "metadata-tamper"):
        assert re.search(rf"^  {re.escape(student)}: ", text, re.MULTILINE), student


def test_learner_code_reached_no_secret(graded):
    """Did nobody's code read or write the gradebook, the solutions or another learner?"""
    course = graded["course"]
    with sqlite3.connect(course / "gradebook.db") as con:
        worst = con.execute("SELECT max(auto_score) FROM grade").fetchone()[0]
    assert worst <= 2.0  # the largest test cell is worth 2 points; the thief tried 99
    assert (ROOT / "solutions" / LESSON / f"{LESSON}.ipynb").read_bytes() == \
        graded["solution_before"]
    for student in ("steal-secrets", "network"):
        nb = nbformat.read(course / "autograded" / student / LESSON / f"{LESSON}.ipynb", 4)
        printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                          for o in c.outputs if o.output_type == "stream")
        assert "leaks: []" in printed or "reached: []" in printed, printed[-500:]


def test_hidden_tests_never_reach_feedback(graded):
    """Is no hidden test in any feedback page, while failing hidden checks still explain?"""
    feedback = graded["course"] / "graded" / "feedback"
    pages = sorted(feedback.glob(f"*/{LESSON}/{LESSON}.html"))
    assert len(pages) == len(LEARNERS)
    for page in pages:
        html = page.read_text()
        leaked = [check for check in HIDDEN_CHECKS if check in html]
        assert not leaked, (page, leaked)
    html = (feedback / "hidden-fails" / LESSON / f"{LESSON}.html").read_text()
    assert "is not the word we are looking for" in html
    autograded = graded["course"] / "autograded" / "hidden-leak" / LESSON / f"{LESSON}.ipynb"
    assert "softmax.hidden" in autograded.read_text()  # the instructor's copy keeps them
