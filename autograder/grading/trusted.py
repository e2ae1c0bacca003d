"""The grader's own copy of the checks, loaded so that one broken lesson cannot break another.

``autograder.checks`` imports every ``lessonNN`` package when it is imported; a lesson with
a syntax error (half-written, say) would take every other lesson's grading down with it. The
trusted side therefore loads ``_core`` and the graded lesson's ``cases`` and ``verdicts``
into a private package (the same files, executed once, without the package's
``__init__``), then the other lessons' only if a test cell asks for a check none of those
registered.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path

import autograder

PACKAGE = "_attnlab_trusted_checks"
CHECKS_DIR = Path(autograder.__file__).resolve().parent / "checks"
_loaded: set[str] = set()


def _package() -> types.ModuleType:
    if PACKAGE not in sys.modules:
        package = types.ModuleType(PACKAGE)
        package.__path__ = [str(CHECKS_DIR)]
        package.__package__ = PACKAGE
        sys.modules[PACKAGE] = package
    return sys.modules[PACKAGE]


def core() -> types.ModuleType:
    _package()
    return importlib.import_module(f"{PACKAGE}._core")


def load(lesson_number: str | None = None, everything: bool = False) -> dict:
    """The registry with the graded lesson's checks (or every lesson's that imports)."""
    registry = core().REGISTRY
    names = sorted(p.name for p in CHECKS_DIR.glob("lesson*") if (p / "cases.py").exists())
    wanted = names if everything or lesson_number is None else [
        n for n in names if n == f"lesson{lesson_number}"]
    for name in wanted:
        if name in _loaded:
            continue
        _loaded.add(name)
        try:  # cases.py + verdicts.py, paired by check id
            cases = importlib.import_module(f"{PACKAGE}.{name}.cases")
            verdicts = importlib.import_module(f"{PACKAGE}.{name}.verdicts")
            core().register_lesson(name, cases.RECORDS, verdicts.VERDICTS)
        except Exception:  # another lesson's broken module: grade this one regardless
            if name == f"lesson{lesson_number}":
                raise
    return registry
