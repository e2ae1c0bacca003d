"""``python -m autograder check NOTEBOOK``: grade one learner's notebook, hidden tests included.

The learner's file is never touched and never run in place: a copy goes into a scratch
nbgrader course next to its lesson's source, and nbgrader's own ``generate_assignment``
and ``autograde`` grade it (locked cells and hidden tests restored from the source, exactly
as an instructor's run would). Scores come from nbgrader's gradebook; messages from the
outputs of the autograded notebook's test cells.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from .build import normalise
from .course import (
    Lesson,
    lesson_of_notebook,
    nbgrader_config,
    read_notebook,
    run_nbgrader,
    scratch_course,
)

STUDENT = "self"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class TestResult:
    id: str
    kind: str  # "auto" | "manual"
    points: float | None
    max_points: float
    passed: bool | None
    message: str


@dataclass
class Report:
    lesson: str
    score: float
    max_score: float
    tests: list[TestResult]

    def to_json(self) -> dict:
        return {"lesson": self.lesson, "score": self.score, "max_score": self.max_score,
                "tests": [asdict(t) for t in self.tests]}


def _message(cell) -> tuple[bool, str]:
    """Did a test cell pass, and what should the learner read about it?"""
    ok_lines, err = [], None
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            err = out
        elif out.output_type == "stream" and out.name == "stdout":
            ok_lines += [ln for ln in out.text.splitlines() if ln.startswith("\u2713")]
        elif out.output_type == "stream" and out.name == "stderr" and err is None:
            err = out
    if err is None:
        return True, "; ".join(ln.lstrip("\u2713 ") for ln in ok_lines) or "passed"
    if err.output_type == "stream":
        lines = [ln for ln in ANSI.sub("", err.text).splitlines() if ln.strip()]
        return False, "wrote to stderr: " + (lines[-1] if lines else "")
    if err.ename == "CheckFailed":
        return False, ANSI.sub("", err.evalue)
    if err.ename == "CellTimeoutError":
        return False, "this cell ran past the time limit (an endless loop?)"
    text = ANSI.sub("", f"{err.ename}: {err.evalue}").strip().rstrip(":")
    if err.ename == "NotImplementedError":
        text = "not answered yet (the exercise still raises NotImplementedError)"
    elif err.ename == "NameError":
        text += " (did you run, rename or delete the cell that defines it?)"
    return False, text


def grade_notebook(path: str | os.PathLike, lesson: Lesson | None = None) -> Report:
    """Grade one notebook through nbgrader in a scratch course; raise CourseError if it cannot."""
    nb = read_notebook(path)
    lesson = lesson or lesson_of_notebook(nb, Path(path).name)
    with tempfile.TemporaryDirectory(prefix="attnlab-check-") as tmp:
        root = Path(tmp)
        scratch_course(root, lesson)
        source = root / "solutions" / lesson.name / f"{lesson.name}.ipynb"
        nbformat.write(normalise(nbformat.read(source, as_version=4), lesson), source)
        submitted = root / "submitted" / STUDENT / lesson.name
        submitted.mkdir(parents=True)
        nbformat.write(nb, submitted / f"{lesson.name}.ipynb")
        config = nbgrader_config(root)
        run_nbgrader("generate_assignment", config, assignment_id=lesson.name, force=True,
                     create=True)
        previous = os.environ.get("ATTNLAB_GRADING")
        os.environ["ATTNLAB_GRADING"] = "1"  # the lesson's own self-check cell stays quiet
        try:
            run_nbgrader("autograde", config, assignment_id=lesson.name, student_id=STUDENT,
                         force=True, create=True)
        finally:
            if previous is None:
                os.environ.pop("ATTNLAB_GRADING", None)
            else:
                os.environ["ATTNLAB_GRADING"] = previous
        graded = nbformat.read(root / "autograded" / STUDENT / lesson.name /
                               f"{lesson.name}.ipynb", as_version=4)
        return _report(lesson, graded, root)


def _report(lesson: Lesson, graded, root: Path) -> Report:
    from nbgrader.api import Gradebook

    cells = {c.metadata.get("nbgrader", {}).get("grade_id"): c for c in graded.cells}
    tests: list[TestResult] = []
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(lesson.name, lesson.name, STUDENT)
        order = {c.name: i for i, c in enumerate(sub.notebook.grade_cells)}
        source_order = [c.metadata.get("nbgrader", {}).get("grade_id") for c in graded.cells]
        for grade in sorted(sub.grades, key=lambda g: (
                source_order.index(g.name) if g.name in source_order else order[g.name])):
            cell = cells.get(grade.name)
            if grade.cell.cell_type == "markdown" or grade.needs_manual_grade or \
                    grade.auto_score is None:
                tests.append(TestResult(grade.name, "manual", None, float(grade.max_score),
                                        None, "graded by an instructor (model answer and "
                                              "rubric in the solution notebook)"))
                continue
            passed, message = _message(cell) if cell is not None else (False, "cell missing")
            points = float(grade.auto_score)
            tests.append(TestResult(grade.name, "auto", points, float(grade.max_score),
                                    passed and points == grade.max_score, message))
    auto = [t for t in tests if t.kind == "auto"]
    return Report(lesson.name, sum(t.points for t in auto), sum(t.max_points for t in auto),
                  tests)


def format_report(report: Report, path: str) -> str:
    width = max([len(t.id) for t in report.tests] + [4])
    lines = [f"Attention Lab self-check: {report.lesson}  ({path})", ""]
    for t in report.tests:
        if t.kind == "manual":
            mark, pts = "\u2026", f"  -/{t.max_points:g}"
        else:
            mark = "\u2713" if t.passed else "\u2717"
            pts = f"{t.points:>3g}/{t.max_points:g}"
        lines.append(f"  {mark} {t.id:<{width}}  {pts:>6}  {t.message}")
    manual = sum(t.max_points for t in report.tests if t.kind == "manual")
    lines += ["", f"Score: {report.score:g} / {report.max_score:g} autograded points"
                  + (f" (plus {manual:g} points your instructor grades by hand)" if manual else "")]
    return "\n".join(lines)

