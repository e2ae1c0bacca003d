"""Does `check`'s fast path (cached gradebook, pre-imported kernel) grade exactly as nbgrader's
full generate_assignment + autograde does, and report written answers and syntax errors?"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time

import nbformat
import pytest

import autograder.selfcheck as selfcheck
from autograder.course import Lesson, find_lesson
from autograder.grading.model_answers import model_answers
from autograder.selfcheck import format_report, grade_notebook


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _code_answers(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("solution")
            and re.search(r"^(def|class) \w+", c.source, re.MULTILINE)]


def _tests(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and _meta(c).get("grade")
            and not _meta(c).get("solution")]


def with_mistakes(lesson: Lesson):
    """The solution with what learners do to a notebook: an exercise left as released, a
    syntax error in another, a test cell emptied (hidden tests and all), another deleted,
    a written answer written."""
    nb = nbformat.read(lesson.source, as_version=4)
    answers = _code_answers(nb)
    answers[0].source = re.sub(r"### BEGIN SOLUTION.*?### END SOLUTION",
                               "# YOUR CODE HERE\nraise NotImplementedError()",
                               answers[0].source, flags=re.DOTALL)
    if len(answers) > 1:
        answers[1].source += "\nbroken = (\n"
    tests = _tests(nb)
    tests[1 if len(tests) > 2 else 0].source = "pass"
    nb.cells.remove(tests[-1])
    for cell in nb.cells:
        if cell.cell_type == "markdown" and _meta(cell).get("solution"):
            cell.source = "Because one softmax gives one average per query."
    return nb


@pytest.fixture(scope="module", autouse=True)
def module_cache(tmp_path_factory):
    """One cache for this module's checks (never the user's own)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTNLAB_CACHE", str(tmp_path_factory.mktemp("check-cache")))
        yield


@pytest.mark.notebook
@pytest.mark.parametrize("which", ["solution", "untouched", "mistakes"])
def test_fast_path_grades_as_nbgrader_autograde(lesson, which, tmp_path):
    """Same scores, pass/fail, messages, written answers and unanswered list as nbgrader's
    own autograde, and the learner's file untouched."""
    if which == "mistakes":
        path = tmp_path / f"{lesson.name}.ipynb"
        nbformat.write(with_mistakes(lesson), path)
    else:
        path = lesson.source if which == "solution" else lesson.release
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    fast = grade_notebook(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert fast.to_json() == grade_notebook(path, reference=True).to_json()
    auto = [t for t in fast.tests if t.kind == "auto"]
    if which == "solution":
        assert fast.score == fast.max_score > 0 and not fast.unanswered
    elif which == "untouched":
        assert fast.score == 0 and all(t.passed is False for t in auto)
    else:
        assert fast.score < fast.max_score and any(t.passed is False for t in auto)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTNLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_cache_is_built_once_per_lesson_version(cache, course_copy):
    """Is the generated gradebook reused, rebuilt when the lesson changes, and an old
    version dropped once unused for a day?"""
    lesson = find_lesson("01")
    first = selfcheck.prepared(lesson)
    assert (first / "gradebook.db").exists() and selfcheck.prepared(lesson) == first
    a_day_ago = time.time() - selfcheck.PRUNE_AFTER_S - 60
    os.utime(first, (a_day_ago, a_day_ago))
    nb = nbformat.read(lesson.source, as_version=4)
    nb.cells[0].source += "\n\nA changed introduction."
    nbformat.write(nb, lesson.source)
    second = selfcheck.prepared(lesson)
    assert second != first and not first.exists()
    assert [p.name for p in (cache / "check").iterdir()] == [second.name]


def _answered_release(lesson: Lesson, text: str):
    nb = nbformat.read(lesson.release, as_version=4)
    written = [c for c in nb.cells if c.cell_type == "markdown" and _meta(c).get("solution")]
    written[0].source = text
    return nb, _meta(written[0])["grade_id"]


def test_written_answer_is_shown_beside_the_model_answer_once_written():
    """Untouched: today's line, listed as unanswered, no model answer. Written: the learner's
    text and the solution's model answer and rubric, in the report and its JSON."""
    lesson = find_lesson("03")
    answers = model_answers(nbformat.read(lesson.source, as_version=4))
    untouched = selfcheck._report(lesson, nbformat.read(lesson.release, as_version=4), answers)
    nb, grade_id = _answered_release(lesson, "Several heads can look at several places.")
    written = selfcheck._report(lesson, nb, answers)

    before = next(t for t in untouched.tests if t.id == grade_id)
    assert before.answered is False and before.model_answer is None and before.answer is None
    assert "model answer and rubric in the solution notebook" in before.message
    assert grade_id in untouched.unanswered
    assert "Still unanswered:" in format_report(untouched, "x.ipynb")
    assert "Model answer" not in format_report(untouched, "x.ipynb")

    after = next(t for t in written.tests if t.id == grade_id)
    source = nbformat.read(lesson.source, as_version=4)
    model = next(c.source for c in source.cells if _meta(c).get("grade_id") == grade_id)
    assert after.answered is True and after.answer == "Several heads can look at several places."
    assert after.model_answer and after.model_answer in model and "Rubric" in after.model_answer
    assert "BEGIN SOLUTION" not in after.model_answer
    assert grade_id not in written.unanswered
    text = format_report(written, "x.ipynb")
    assert text.index("Several heads can look") < text.index(after.model_answer.splitlines()[0])
    as_json = next(t for t in written.to_json()["tests"] if t["id"] == grade_id)
    assert as_json["answer"] == after.answer and as_json["model_answer"] == after.model_answer


def test_in_notebook_self_check_shows_the_model_answer(monkeypatch, capsys):
    """Does the lesson's last cell render a written answer beside the model answer?"""
    from IPython import display as ipd

    from attnlab.selfcheck import show_report

    lesson = find_lesson("03")
    answers = model_answers(nbformat.read(lesson.source, as_version=4))
    nb, grade_id = _answered_release(lesson, "My own answer.")
    report = json.loads(json.dumps(selfcheck._report(lesson, nb, answers).to_json()))
    shown = []
    monkeypatch.setattr(ipd, "display", lambda obj: shown.append(obj.data))
    show_report(report, "03.ipynb")
    out = capsys.readouterr().out
    assert "Score:" in out and "My own answer." not in out
    assert len(shown) == 1 and "> My own answer." in shown[0]
    assert answers[grade_id] in shown[0]


def test_syntax_error_named_instead_of_the_name_error_it_causes(cache):
    """A learner's unclosed bracket: the test cell says SyntaxError in the cell that defines
    the function, with its line, not "NameError: name ... is not defined"."""
    lesson = find_lesson("01")
    nb = nbformat.read(lesson.source, as_version=4)
    cell = next(c for c in nb.cells if _meta(c).get("grade_id") == "softmax")
    lines = cell.source.splitlines()
    at = next(i for i, ln in enumerate(lines) if "np.exp" in ln)
    lines[at] = lines[at].replace("np.exp(z)", "np.exp(z")
    cell.source = "\n".join(lines)
    path = os.path.join(str(cache.parent), f"{lesson.name}.ipynb")
    nbformat.write(nb, path)
    report = grade_notebook(path)
    tests = {t.id: t for t in report.tests}
    message = tests["softmax_values"].message
    assert message.startswith("SyntaxError in the cell that defines softmax, line ")
    assert "NameError" not in message
    line = int(re.search(r"line (\d+)", message).group(1))
    assert "np.exp(z" in lines[line - 1]
    assert tests["attend_values"].passed is False  # attend calls softmax
    assert tests["attend_values"].message == message
