"""``python -m autograder build [--check]``: lessons/ is what nbgrader makes of solutions/.

The solution notebooks are the single source. ``build`` first normalises them (no outputs,
no execution counts, deterministic cell ids, only the metadata we keep), then runs
nbgrader's own ``generate_assignment`` on each in a scratch course folder and writes the
learner release to ``lessons/``. ``--check`` does the same in memory and names every file
that differs, writing nothing.
"""

from __future__ import annotations

import filecmp
import re
import shutil
import tempfile
from pathlib import Path

import nbformat

from .course import (
    COURSE_FILES,
    LESSONS,
    SOLUTIONS,
    CourseError,
    Lesson,
    lessons,
    nbgrader_config,
    run_nbgrader,
    scratch_course,
)

KEEP_CELL_METADATA = ("nbgrader",)
KEEP_NB_METADATA = ("kernelspec", "language_info", "attnlab")
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _cell_id(cell, index: int, lesson: Lesson, seen: set[str]) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    base = re.sub(r"[^A-Za-z0-9_-]", "-", grade_id)[:64] if grade_id else \
        f"l{lesson.number}-c{index:03d}"
    cell_id, n = base, 1
    while cell_id in seen:
        n += 1
        cell_id = f"{base[:60]}-{n}"
    seen.add(cell_id)
    return cell_id


def normalise(nb, lesson: Lesson):
    """The canonical form of a solution notebook: what git stores."""
    nb.nbformat, nb.nbformat_minor = 4, 5
    meta = {k: v for k, v in nb.metadata.items() if k in KEEP_NB_METADATA}
    meta["kernelspec"] = dict(KERNELSPEC)
    meta["language_info"] = {"name": "python"}
    attn = dict(meta.get("attnlab", {}))
    attn["lesson"] = lesson.name
    attn.setdefault("version", "1")
    meta["attnlab"] = attn
    nb.metadata = nbformat.from_dict(meta)
    seen: set[str] = set()
    for index, cell in enumerate(nb.cells):
        cell.metadata = nbformat.from_dict(
            {k: v for k, v in cell.metadata.items() if k in KEEP_CELL_METADATA})
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.id = _cell_id(cell, index, lesson, seen)
    return nb


def _canonical_text(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _normalised_source(lesson: Lesson) -> str:
    nb = nbformat.read(lesson.source, as_version=4)
    return _canonical_text(normalise(nb, lesson))


def _generate(lesson: Lesson, out: Path) -> Path:
    """Run nbgrader generate_assignment for one lesson; return the released folder."""
    scratch = out / "course"
    scratch_course(scratch, lesson)
    source = scratch / "solutions" / lesson.name / f"{lesson.name}.ipynb"
    source.write_text(_normalised_source(lesson), encoding="utf-8")
    config = nbgrader_config(scratch)
    run_nbgrader("generate_assignment", config, assignment_id=lesson.name, force=True,
                 create=True)
    return scratch / "lessons" / lesson.name


def _tree_diff(want: Path, have: Path) -> list[str]:
    """Relative paths that differ between two folders (missing, extra or changed)."""
    names = {p.relative_to(want) for p in want.rglob("*") if p.is_file()}
    names |= {p.relative_to(have) for p in have.rglob("*") if p.is_file()} if have.exists() \
        else set()
    return sorted(str(n) for n in names
                  if not (want / n).exists() or not (have / n).exists()
                  or not filecmp.cmp(want / n, have / n, shallow=False))


def build(check: bool = False, only: list[Lesson] | None = None) -> list[str]:
    """Regenerate lessons/ (or, with check, list what is stale). Returns stale paths.

    ``only`` limits the work to some lessons (course-wide files and stray folders are then
    left alone).
    """
    all_lessons = lessons()
    if not all_lessons:
        raise CourseError(f"no lessons found in {SOLUTIONS}")
    chosen = only or all_lessons
    stale: list[str] = []
    with tempfile.TemporaryDirectory(prefix="attnlab-build-") as tmp:
        for lesson in chosen:
            text = _normalised_source(lesson)
            if lesson.source.read_text(encoding="utf-8") != text:
                stale.append(str(lesson.source.relative_to(SOLUTIONS.parent)))
                if not check:
                    lesson.source.write_text(text, encoding="utf-8")
            released = _generate(lesson, Path(tmp) / lesson.name)
            target = LESSONS / lesson.name
            diff = _tree_diff(released, target)
            stale += [f"lessons/{lesson.name}/{d}" for d in diff]
            if diff and not check:
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(released, target)
        if only:
            return stale
        for name in COURSE_FILES:
            src, dst = SOLUTIONS / name, LESSONS / name
            if src.exists() and (not dst.exists() or not filecmp.cmp(src, dst, shallow=False)):
                stale.append(f"lessons/{name}")
                if not check:
                    shutil.copyfile(src, dst)
        known = {lesson.name for lesson in all_lessons} | set(COURSE_FILES)
        for extra in sorted(LESSONS.iterdir()) if LESSONS.exists() else []:
            if extra.name not in known:
                stale.append(f"lessons/{extra.name} (not in solutions/)")
                if not check:
                    shutil.rmtree(extra) if extra.is_dir() else extra.unlink()
    return stale
