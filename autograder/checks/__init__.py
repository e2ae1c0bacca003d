"""What the lessons' test cells call: ``check("softmax.values", softmax)``.

Each ``lessonNN`` module registers its checks; see ``_core`` for how a check records the
learner's outputs and compares them with the reference kernels.
"""

from __future__ import annotations

import importlib
import pkgutil

from ._core import REGISTRY, CheckFailed, run

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("lesson"):
        importlib.import_module(f"{__name__}.{_module.name}")


def check(check_id: str, obj) -> None:
    """Run one check on the learner's function, class or answers; raise CheckFailed if wrong."""
    if check_id not in REGISTRY:
        raise KeyError(f"unknown check {check_id!r}")
    run(check_id, obj)


__all__ = ["REGISTRY", "CheckFailed", "check"]
