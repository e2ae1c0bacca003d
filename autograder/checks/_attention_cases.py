"""Kernel-side toolkit shared by the attention lessons' cases (02, 04, 08, ...).

Runs in the learner's kernel under ``grade`` (the sandbox image copies it): seeded inputs,
case descriptions, and the course's own kernels named for a ``Guard``. Nothing here knows an
answer.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import Tensor

__all__ = ["COURSE_ATTENTION", "course_kernels", "describe", "randn"]

COURSE_ATTENTION = "the course's own attention (attnlab / autograder.reference)"


def course_kernels(label: str, *paths: str) -> list[tuple[str, Any]]:
    """``(label, kernel)`` for the course's own kernels, named by their path in
    ``autograder.reference`` (``"SelfAttention.forward"``, ``"attention._attention_weights"``)
    and found at run time, for a Guard: a record module never imports a kernel of its own
    lesson (under ``grade`` it is a stub that raises, whose code object is caught alike)."""
    found = []
    for path in paths:
        obj: Any = importlib.import_module("autograder.reference")
        try:
            for part in path.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        found.append((label, obj))
    return found


def randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def describe(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> str:
    text = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    return text + (f", mask {tuple(mask.shape)}" if mask is not None else "")
