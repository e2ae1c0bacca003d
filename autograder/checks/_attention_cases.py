"""Kernel-side toolkit shared by the attention lessons' cases (02, 04, 08, ...).

Runs in the learner's kernel under ``grade`` (the sandbox image copies it): seeded inputs,
case descriptions, and the course's own kernels named for a ``Guard``. Nothing here knows an
answer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._modules import course_kernels as named_kernels

__all__ = ["COURSE_ATTENTION", "course_kernels", "describe", "randn"]

COURSE_ATTENTION = "the course's own attention (attnlab / autograder.reference)"


def course_kernels(label: str, *paths: str) -> list[tuple[str, Any]]:
    """``_modules.course_kernels`` under one label of our choosing: the course's own kernels
    named by their path in ``autograder.reference`` (``"SelfAttention.forward"``,
    ``"attention._attention_weights"``), resolved at run time for a Guard, so that several
    (the attention function and its private helper) read as "the course's own attention"."""
    return [(label, kernel) for _, kernel in named_kernels(*paths)]


def randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def describe(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> str:
    text = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    return text + (f", mask {tuple(mask.shape)}" if mask is not None else "")
