"""The one harness for every lesson's wrong-answer tests: rows of data, run the same way.

A lesson's ``tests/test_wrong_answers_lessonNN.py`` lists ``ROWS``: each row is an answer (a
function, a class, a dict of written answers), the check id it is run against, and what must
happen: ``passes(...)`` for an answer that must earn the check, ``fails(...)`` for a realistic
mistake that must fail it with the message written for it (a regular expression). The file
ends with ``test_row = row_test(ROWS)``; extra tests a lesson needs (properties of a whole
model, a panel of leaks) stay beside it as ordinary tests.

``tests/test_check_catalogue.py`` reads every lesson's ``ROWS`` and requires each registered
check id to have a passing row and at least one mistake row. Every row is run with the global
random streams (torch, numpy, random) compared before and after: a check must not move them.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from autograder.checks import CheckFailed, check


@dataclass(frozen=True)
class Row:
    answer: Any  # what the learner's cell defines: a function, a class, a dict of answers
    check_id: str
    expect: str | None  # None: the answer earns the check; else a regex its message matches
    name: str = ""  # the test id; defaults to the answer's __name__


def passes(answer: Any, *check_ids: str, name: str = "") -> list[Row]:
    """Rows saying this (correct, or partly correct) answer earns each of ``check_ids``."""
    return [Row(answer, check_id, None, name) for check_id in check_ids]


def fails(answer: Any, check_id: str, message: str, name: str = "") -> Row:
    """A row saying this mistake fails ``check_id`` with a message matching ``message``."""
    return Row(answer, check_id, message, name)


def row_id(row: Row) -> str:
    label = row.name or getattr(row.answer, "__name__", None) or type(row.answer).__name__
    return f"{label}-{row.check_id}-{'passes' if row.expect is None else 'fails'}"


def _streams() -> tuple:
    return (torch.get_rng_state(), np.random.get_state()[1].copy(),
            np.random.get_state()[2], random.getstate())


def _same(a: tuple, b: tuple) -> bool:
    return (torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
            and a[3] == b[3])


def run_row(row: Row, capsys: pytest.CaptureFixture | None = None) -> None:
    """Run one row: the check's verdict and message, and the random streams left untouched."""
    before = _streams()
    if row.expect is None:
        check(row.check_id, row.answer)
        if capsys is not None:  # a passing check tells the learner so
            assert capsys.readouterr().out.startswith("\u2713 ")
    else:
        with pytest.raises(CheckFailed) as failed:
            check(row.check_id, row.answer)
        message = str(failed.value)
        assert re.search(row.expect, message), (
            f"{row.check_id} failed with the wrong message for {row_id(row)}:\n  {message}\n"
            f"expected it to match: {row.expect}")
    assert _same(before, _streams()), f"{row.check_id} moved the global random stream"


def row_test(rows: Iterable[Row]):
    """The parametrised test a lesson's file binds as ``test_row``."""
    rows = list(rows)

    @pytest.mark.parametrize("row", rows, ids=[row_id(r) for r in rows])
    def test_row(row: Row, capsys: pytest.CaptureFixture) -> None:
        """Does this answer earn the check (or fail it with the message for its mistake)?"""
        run_row(row, capsys)

    return test_row
