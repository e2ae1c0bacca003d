"""Formgrader shows the model answer and rubric under each written answer it asks to grade.

nbgrader's formgrader renders a learner's autograded notebook through an ``HTMLExporter``;
``nbgrader_config.py`` adds :class:`ShowModelAnswers` to that exporter's preprocessors. The
instructor then reads, under the learner's answer, the solution's model answer and rubric
(from the lesson's source notebook), in a box marked as theirs alone.

Feedback must never show it, and the same ``HTMLExporter`` class renders nbgrader's
feedback. So the preprocessor acts only on formgrader's page (its resources name a
``submission_id`` and carry no nbgrader converter state) and does nothing anywhere else;
``nbgrader_config.py`` also empties the list for ``GenerateFeedback`` explicitly.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor

from ..course import lessons

SOLUTION_MARKERS = re.compile(r"^\s*#*\s*(BEGIN|END) SOLUTION\s*$", re.MULTILINE)
MARK = "attnlab_model_answer"


def _on_formgrader_page(resources: dict) -> bool:
    return "submission_id" in resources and "index" in resources and "nbgrader" not in resources


def _source_notebook(assignment: str, notebook: str) -> Path | None:
    for lesson in lessons():
        if lesson.name == assignment and lesson.source.stem == notebook:
            return lesson.source
    return None


def model_answers(source: Path | nbformat.NotebookNode) -> dict[str, str]:
    """grade id -> model answer and rubric, for each written answer of a source notebook
    (also what ``check`` shows a learner beside their own written answer)."""
    nb = source if isinstance(source, nbformat.NotebookNode) else \
        nbformat.read(source, as_version=4)
    answers = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("solution") and meta.get("grade"):
            answers[meta["grade_id"]] = SOLUTION_MARKERS.sub("", cell.source).strip()
    return answers


class ShowModelAnswers(Preprocessor):
    """Insert, after each written answer, the model answer and rubric (formgrader only)."""

    def preprocess(self, nb, resources):
        if not _on_formgrader_page(resources or {}):
            return nb, resources
        source = _source_notebook(str(resources.get("assignment_id")),
                                  str(resources.get("notebook_id")))
        answers = model_answers(source) if source else {}
        cells = []
        for cell in nb.cells:
            cells.append(cell)
            grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "markdown" and grade_id in answers:
                box = nbformat.v4.new_markdown_cell(
                    '<div style="border-left: 4px solid #8a6d3b; background: #fcf8e3; '
                    'padding: 0.5em 1em;"><strong>Model answer and rubric</strong> '
                    '<em>(for the instructor: from the lesson\'s solution; learners never '
                    'see this box)</em></div>\n\n' + answers[grade_id])
                box.metadata[MARK] = grade_id
                cells.append(box)
        nb.cells = cells
        return nb, resources


__all__ = ["ShowModelAnswers", "model_answers"]
