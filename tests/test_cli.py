"""Does `python -m autograder check` behave on good, bad and hostile input?"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import nbformat
import pytest

from autograder.course import ROOT, lessons

LESSON = lessons()[0]


def run_cli(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("content, reason", [
    (None, "no such file"),
    ("", "empty"),
    ("{not json", "invalid JSON"),
    ('{"hello": 1}', "no 'cells'"),
    ('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "no cells"),
])
def test_unusable_input_gets_one_line_and_nonzero_exit(tmp_path, content, reason):
    """Does a missing, empty or broken file get a one-line reason, never a traceback?"""
    path = tmp_path / "lesson.ipynb"
    if content is not None:
        path.write_text(content)
    result = run_cli("check", str(path))
    assert result.returncode != 0
    assert reason in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    as_json = run_cli("check", str(path), "--json")
    assert as_json.returncode != 0
    assert reason in json.loads(as_json.stdout)["error"]


def test_grade_keeps_its_exit_code_and_message(tmp_path):
    """grade ends with os._exit once it is done: does a bad class folder still get its
    one-line error, everything printed, and exit code 2?"""
    result = run_cli("grade", str(tmp_path / "nowhere"), "--lesson", "01",
                     "--course", str(tmp_path / "course"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such file or folder"


def test_unrelated_notebook_is_refused(tmp_path):
    """Is a notebook from another course refused as 'not an Attention Lab lesson'?"""
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(1)")])
    path = tmp_path / "homework.ipynb"
    nbformat.write(nb, path)
    result = run_cli("check", str(path), "--json")
    assert result.returncode != 0
    assert "not an Attention Lab lesson" in json.loads(result.stdout)["error"]


@pytest.mark.notebook
def test_renamed_download_is_graded_without_touching_it(tmp_path):
    """Is a renamed copy outside the repo recognised by its metadata, and left untouched?"""
    path = tmp_path / "my download (1).ipynb"
    shutil.copy(LESSON.source, path)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    result = run_cli("check", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["lesson"] == LESSON.name and report["score"] == report["max_score"] > 0
    assert {"id", "kind", "points", "max_points", "passed", "message"} <= set(report["tests"][0])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.notebook
def test_typical_mistake_gets_its_message_end_to_end(tmp_path):
    """Does a learner's overflowing softmax lose the stability points, with the advice for it?"""
    nb = nbformat.read(lessons()[0].release, as_version=4)
    answers = {
        "softmax": "def softmax(x, axis=-1):\n    e = np.exp(x)\n"
                   "    return e / e.sum(axis=axis, keepdims=True)",
        "attend": "def attend(query, keys, values):\n    w = softmax(keys @ query)\n"
                  "    return w @ values, w",
    }
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            cell.source = answers[grade_id]
    path = tmp_path / f"{LESSON.name}.ipynb"
    nbformat.write(nb, path)
    report = json.loads(run_cli("check", str(path), "--json").stdout)
    tests = {t["id"]: t for t in report["tests"]}
    assert tests["softmax_stable"]["passed"] is False
    assert "Subtract the largest score" in tests["softmax_stable"]["message"]
    assert tests["softmax_values"]["passed"] is True
    assert tests["attend_values"]["passed"] is True
    assert 0 < report["score"] < report["max_score"]


@pytest.mark.notebook
def test_written_answer_gets_its_model_answer_only_once_written(tmp_path):
    """Text report: the learner's written answer beside the solution's model answer and
    rubric, the exercises still unanswered listed; nothing of a model answer before."""
    lesson = next(les for les in lessons() if les.number == "03")
    nb = nbformat.read(lesson.release, as_version=4)
    written = next(c for c in nb.cells if c.cell_type == "markdown"
                   and c.metadata.get("nbgrader", {}).get("solution"))
    grade_id = written.metadata["nbgrader"]["grade_id"]
    written.source = "One head averages once; several heads look at several places."
    path = tmp_path / f"{lesson.name}.ipynb"
    nbformat.write(nb, path)
    result = run_cli("check", str(path))
    assert result.returncode == 0, result.stderr
    source = nbformat.read(lesson.source, as_version=4)
    model = next(c.source for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
    rubric = next(ln for ln in model.splitlines() if ln.startswith("- 1 point"))
    out = result.stdout
    assert f"{grade_id}: your answer" in out and "several heads look at several" in out
    assert rubric in out and out.index("several heads look") < out.index(rubric)
    unanswered = next(ln for ln in out.splitlines() if ln.startswith("Still unanswered:"))
    assert "split_heads" in unanswered and grade_id not in unanswered
