"""What a lesson's cells compute from the course's own code alone, whatever a learner wrote.

The class grader (``grade``) calls :func:`lesson` once per run in its fork server, before it
forks a kernel per learner, so each learner's kernel starts with these results cached: the
values the cells would compute (pure functions of seeded generators; the global random
streams are left as they were), computed once per class instead of once per learner. The
self-check does not call it: there it would only move the same work from a cell to the
kernel's start.
"""

from __future__ import annotations

import importlib

# lesson number -> the module whose warm() fills the caches its cells use
WARM = {"06": "attnlab.explore.norms"}


def lesson(number: str) -> None:
    """Warm what lesson ``number`` ("06") computes with the course's code (if anything)."""
    name = WARM.get(number)
    if name is not None:
        importlib.import_module(name).warm()
