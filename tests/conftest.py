"""Shared fixtures: the lessons, and a scratch copy of the course for tests that write."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from autograder.course import ROOT, lessons

# nbgrader runs `alembic` from PATH: make it this environment's, however pytest was started
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

LESSONS = lessons()


def pytest_generate_tests(metafunc):
    if "lesson" in metafunc.fixturenames:
        metafunc.parametrize("lesson", LESSONS, ids=[lesson.name for lesson in LESSONS])


@pytest.fixture
def course_copy(tmp_path, monkeypatch):
    """solutions/ and lessons/ copied to a scratch folder, with the course pointed at it."""
    import shutil

    import autograder.build as build
    import autograder.course as course

    for name in ("solutions", "lessons"):
        shutil.copytree(ROOT / name, tmp_path / name)
    for module in (build, course):
        monkeypatch.setattr(module, "SOLUTIONS", tmp_path / "solutions", raising=False)
        monkeypatch.setattr(module, "LESSONS", tmp_path / "lessons", raising=False)
    return tmp_path
