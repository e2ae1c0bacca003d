"""Every registered check, in every lesson, is exercised by the wrong-answer rows."""

from __future__ import annotations

import importlib
from pathlib import Path

from autograder.checks import BROKEN, REGISTRY

from .wrong_answers import Row

HERE = Path(__file__).resolve().parent


def all_rows() -> list[Row]:
    rows: list[Row] = []
    for path in sorted(HERE.glob("test_wrong_answers_lesson*.py")):
        module = importlib.import_module(f"tests.{path.stem}")
        rows += getattr(module, "ROWS", [])
    return rows


def test_no_check_module_is_broken():
    assert BROKEN == {}


def test_every_check_has_a_passing_row_and_a_mistake_row():
    """Is every check id shown both to accept a right answer and to name a wrong one?"""
    rows = all_rows()
    unknown = sorted({r.check_id for r in rows} - set(REGISTRY))
    assert not unknown, f"rows for checks nobody registers: {unknown}"
    passing = {r.check_id for r in rows if r.expect is None}
    failing = {r.check_id for r in rows if r.expect is not None}
    assert not sorted(set(REGISTRY) - passing), \
        f"checks with no passing row: {sorted(set(REGISTRY) - passing)}"
    assert not sorted(set(REGISTRY) - failing), \
        f"checks with no mistake row: {sorted(set(REGISTRY) - failing)}"
