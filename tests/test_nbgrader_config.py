"""Is the course's nbgrader configuration what the grading promises?"""

from __future__ import annotations

import re

from autograder.course import ROOT, nbgrader_config


def config():
    return nbgrader_config(ROOT / "scratch")


def test_course_folders_are_solutions_and_lessons():
    """Does nbgrader read the source from solutions/ and release into lessons/?"""
    c = config()
    assert c.CourseDirectory.source_directory == "solutions"
    assert c.CourseDirectory.release_directory == "lessons"


def test_warnings_on_stderr_are_ignored_but_errors_are_not():
    """Does IgnorePattern drop a warning (so it costs no points) but keep a real error?"""
    c = config()
    assert c.IgnorePattern.enabled
    pattern = re.compile(c.IgnorePattern.pattern)
    warning = ("/tmp/ipykernel_1/123.py:4: UserWarning: something odd\n"
               "  warnings.warn(\"something odd\")\n")
    two = warning + "/x/y.py:9: RuntimeWarning: overflow encountered in exp\n  e = np.exp(x)\n"
    assert pattern.search(warning) and pattern.search(two)
    for text in ("Traceback (most recent call last):\n  ...\nValueError: bad\n",
                 warning + "something else on stderr\n", "hello\n"):
        assert not pattern.search(text), text


def test_grading_has_a_cell_timeout_and_output_limit():
    """Does an endless loop end at a per-cell timeout, and a flood of output get cut?"""
    c = config()
    assert 0 < c.Execute.timeout <= 300 and c.Execute.interrupt_on_timeout
    assert c.LimitOutput.max_lines > 0
