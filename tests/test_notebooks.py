"""Does every lesson grade as it should: solutions full marks, untouched lessons zero?

Each case runs a whole notebook through nbgrader (slow: marked `notebook`).
"""

from __future__ import annotations

import pytest

from autograder.selfcheck import grade_notebook

pytestmark = pytest.mark.notebook


def test_solution_scores_full_marks(lesson):
    """Does the instructor's solution earn every autograded point, with no failing cell?"""
    report = grade_notebook(lesson.source)
    failed = [f"{t.id}: {t.message}" for t in report.tests if t.kind == "auto" and not t.passed]
    assert not failed, failed
    assert report.max_score > 0 and report.score == report.max_score


def test_untouched_lesson_scores_zero_with_reasons(lesson):
    """Does the untouched release score zero, say why for every test, and never time out?"""
    report = grade_notebook(lesson.release)
    auto = [t for t in report.tests if t.kind == "auto"]
    assert auto and report.score == 0
    for t in auto:
        assert t.passed is False and t.message, t
        assert "time limit" not in t.message, f"{t.id} hung: {t.message}"
    for t in report.tests:
        if t.kind == "manual":  # free-text answers: listed for the instructor, never scored
            assert t.points is None and t.passed is None and t.max_points > 0


def _execute(path):
    """Run a notebook top to bottom as a learner would, errors and all; return its cells."""
    import tempfile

    import nbformat
    from nbclient import NotebookClient

    from autograder.kernels import KernelManager

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        NotebookClient(nb, timeout=300, allow_errors=True, resources={"metadata": {"path": tmp}},
                       extra_arguments=["--IPKernelApp.log_level=ERROR"],
                       kernel_manager_class=KernelManager).execute()  # autograder/kernels.py
    return nb.cells


UNANSWERED = ("not written yet", "not defined yet", "NotImplementedError")


def test_untouched_lesson_fails_only_where_exercises_are_unanswered(lesson):
    """Run top to bottom untouched, is every error an unanswered exercise (no knock-on
    NameError)?"""
    problems = []
    for i, cell in enumerate(_execute(lesson.release)):
        for out in cell.get("outputs", []):
            if out.output_type == "error" and not (
                    out.ename == "NotImplementedError"
                    or (out.ename == "CheckFailed" and any(s in out.evalue for s in UNANSWERED))):
                problems.append(f"cell {i}: {out.ename}: {out.evalue[:200]}")
            if out.output_type == "stream" and out.name == "stderr":
                problems.append(f"cell {i} wrote to stderr: {out.text[:200]}")
    assert not problems, "\n".join(problems)


def test_solution_runs_without_any_error_or_warning(lesson):
    """Does the solution notebook run top to bottom with no error and nothing on stderr?"""
    problems = [f"cell {i}: {out.get('ename', 'stderr')}: {out.get('evalue', out.get('text'))}"
                for i, cell in enumerate(_execute(lesson.source))
                for out in cell.get("outputs", [])
                if out.output_type == "error"
                or (out.output_type == "stream" and out.name == "stderr")]
    assert not problems, "\n".join(problems)
