"""The course folder: where lessons live, how to recognise one, and nbgrader's configuration."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parent.parent  # the repository root is the course root
SOLUTIONS = ROOT / "solutions"
LESSONS = ROOT / "lessons"
LESSON_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+$")
COURSE_FILES = ("START_HERE.ipynb", "GLOSSARY.md")  # course-wide pages copied beside the lessons


class CourseError(Exception):
    """A problem the user can fix, reported as one line."""


@dataclass(frozen=True, order=True)
class Lesson:
    name: str  # "01_attention_as_retrieval": folder, notebook and nbgrader assignment id

    @property
    def number(self) -> str:
        return self.name[:2]

    @property
    def source_dir(self) -> Path:
        return SOLUTIONS / self.name

    @property
    def source(self) -> Path:
        return self.source_dir / f"{self.name}.ipynb"

    @property
    def release(self) -> Path:
        return LESSONS / self.name / f"{self.name}.ipynb"


def lessons() -> list[Lesson]:
    """Every lesson in solutions/, in course order."""
    if not SOLUTIONS.is_dir():
        return []
    return sorted(Lesson(p.name) for p in SOLUTIONS.iterdir()
                  if p.is_dir() and LESSON_NAME.match(p.name) and (p / f"{p.name}.ipynb").exists())


def find_lesson(key: str) -> Lesson:
    """A lesson from its folder name (``03_multi_head_attention``) or number (``03``, ``3``)."""
    key = key.strip().rstrip("/")
    for lesson in lessons():
        if key in (lesson.name, lesson.number) or (key.isdigit()
                                                   and int(key) == int(lesson.number)):
            return lesson
    names = ", ".join(lesson.name for lesson in lessons())
    raise CourseError(f"unknown lesson {key!r}; the lessons are: {names}")


def lesson_of_notebook(nb: dict, filename: str) -> Lesson:
    """The lesson a learner's notebook belongs to: its metadata first, else its file name."""
    meta = nb.get("metadata", {}).get("attnlab", {})
    if isinstance(meta, dict) and isinstance(meta.get("lesson"), str):
        try:
            return find_lesson(meta["lesson"])
        except CourseError:
            pass
    stem = Path(filename).stem
    for lesson in lessons():
        if stem == lesson.name or stem.startswith(lesson.name):
            return lesson
    match = re.match(r"^(?:lesson[_ -]?)?(\d\d)(?:[_ -]|$)", stem)
    if match:
        return find_lesson(match.group(1))
    raise CourseError(f"{filename}: not an Attention Lab lesson (no lesson id in its metadata, "
                      f"and its name matches no lesson)")


def read_notebook(path: str | os.PathLike) -> dict:
    """Load a learner's notebook as a dict, or raise CourseError with a one-line reason."""
    import nbformat

    path = Path(path)
    if not path.exists():
        raise CourseError(f"{path}: no such file")
    if path.is_dir():
        raise CourseError(f"{path}: is a folder, not a notebook")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path}: cannot be read ({exc.__class__.__name__})") from None
    if not text.strip():
        raise CourseError(f"{path}: the file is empty")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CourseError(f"{path}: not a notebook (invalid JSON at line {exc.lineno})") from None
    if not isinstance(raw, dict) or "cells" not in raw:
        raise CourseError(f"{path}: not a notebook (no 'cells')")
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises a zoo of types for malformed notebooks
        raise CourseError(f"{path}: not a valid notebook ({str(exc).splitlines()[0]})") from None
    if not nb.cells:
        raise CourseError(f"{path}: the notebook has no cells")
    return nb


def nbgrader_config(root: Path, **overrides) -> Config:
    """The course's nbgrader_config.py, pointed at ``root`` (a scratch copy of the course)."""
    config = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT)).load_config()
    config.CourseDirectory.root = str(root)
    config.CourseDirectory.db_url = f"sqlite:///{root / 'gradebook.db'}"
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        setattr(getattr(config, section), name, value)
    return config


def scratch_course(root: Path, lesson: Lesson) -> None:
    """Lay out a throwaway course folder holding one lesson's source."""
    shutil.copytree(lesson.source_dir, root / "solutions" / lesson.name,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def run_nbgrader(app_name: str, config: Config, **kwargs) -> dict:
    """Run one of nbgrader's own apps through its API; raise CourseError with its log on failure."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    environment_on_path()
    coursedir = CourseDirectory(config=config)
    api = NbGraderAPI(coursedir=coursedir, config=config)
    result = getattr(api, app_name)(**kwargs)
    if not result.get("success"):
        log = (result.get("log") or "") + (result.get("error") or "")
        causes = [ln.strip() for ln in log.splitlines()
                  if re.match(r"^\s*[\w.]+(Error|Exception|Exit)\b", ln)
                  and "NbGraderException" not in ln]
        reason = causes[0] if causes else log.strip().splitlines()[-1] if log.strip() else "?"
        raise CourseError(f"nbgrader {app_name} failed: {reason}")
    return result


def without_iri_grammar() -> None:
    """Call before nbformat is imported, in a grading process (``cli.main``, ``grade``'s
    workers): nbformat's jsonschema compiles an RFC 3987 grammar at import when the optional
    ``rfc3987_syntax`` is installed, for "iri" string formats that no notebook or nbgrader
    schema uses (nbformat validates without format checks); the process goes without it."""
    sys.modules.setdefault("rfc3987_syntax", None)


def environment_on_path() -> None:
    """This environment's ``bin`` on PATH, unless it is there: nbgrader runs ``alembic`` from
    PATH (``run_nbgrader``, ``grade`` and its workers all call this one helper)."""
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
