"""What the lessons' test cells call: ``check("softmax.values", softmax)``.

Each lesson's checks are a package ``lessonNN/`` of two files, on either side of the trust
boundary (docs/ARCHITECTURE.md):

* ``cases.py``: the fixed-seed cases and ``RECORDS``, ``{check id: record(obj)}``. Under
  ``grade`` it runs in the learner's kernel, so it holds nothing that gives an answer away.
* ``verdicts.py``: ``VERDICTS``, ``{check id: (title, compare(record))}``, the reference
  oracles and the mistake catalogue. It runs in the trusted process only.

Here both halves are paired by check id (``run`` does record then compare in one process, as
``check`` and Validate need). A lesson that fails to import costs only its own checks.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import REGISTRY, CheckFailed, register_lesson, run

BROKEN: dict[str, str] = {}  # lesson package -> why it could not be imported

for _module in pkgutil.iter_modules(__path__):
    if not (_module.ispkg and _module.name.startswith("lesson")):
        continue
    try:
        _cases = importlib.import_module(f"{__name__}.{_module.name}.cases")
        _verdicts = importlib.import_module(f"{__name__}.{_module.name}.verdicts")
        register_lesson(_module.name, _cases.RECORDS, _verdicts.VERDICTS)
    except Exception as exc:  # keep the other lessons gradable
        BROKEN[_module.name] = f"{type(exc).__name__}: {exc}"


def check(check_id: str, obj) -> None:
    """Run one check on the learner's function, class or answers; raise CheckFailed if wrong."""
    if check_id not in REGISTRY:
        why = "; ".join(f"{name}: {err}" for name, err in BROKEN.items())
        raise KeyError(f"unknown check {check_id!r}" + (f" (broken check modules: {why})"
                                                        if why else ""))
    run(check_id, obj)


__all__ = ["BROKEN", "REGISTRY", "CheckFailed", "check"]
