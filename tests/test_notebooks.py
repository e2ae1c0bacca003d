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
