"""What the lessons' test cells call: ``check("softmax.values", softmax)``.

Each ``lessonNN`` module registers its checks; see ``_core`` for how a check records the
learner's outputs and compares them with the reference kernels. A module that fails to
import costs only its own lesson's checks, never another lesson's.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import REGISTRY, CheckFailed, run

BROKEN: dict[str, str] = {}  # lesson module -> why it could not be imported

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("lesson"):
        try:
            importlib.import_module(f"{__name__}.{_module.name}")
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
