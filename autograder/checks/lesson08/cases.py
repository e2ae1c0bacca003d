"""Lesson 08's cases and record halves (run in the learner's kernel: no answers here).

No stand-ins here: none of lesson 08's exercises is handed another of the learner's (the
feature map linear_attention uses by default, elu_plus_one, is the course's, handed out in
the lesson's first cell).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from autograder.reference import elu_plus_one

from .._attention_cases import COURSE_ATTENTION, course_kernels, describe, randn
from .._core import Guard, call

OURS = "the course's own {} (attnlab / autograder.reference)"


class ShapeRecorder(TorchDispatchMode):
    """Records (shape, dtype) of every tensor any torch operation creates inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[tuple[int, ...], str]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, Tensor):
                self.seen.add((tuple(t.shape), str(t.dtype).replace("torch.", "")))
        return out


def call_recording(fn, *args, guard: Guard, **kwargs) -> dict:
    """call(...) under a ShapeRecorder: the outcome and every (shape, dtype) created."""
    recorder = ShapeRecorder()
    with recorder:
        out = call(fn, *args, guard=guard, **kwargs)
    return {"out": out, "shapes": sorted(recorder.seen)}


# --------------------------------------------------------------------------- tiled_attention


@dataclass(frozen=True)
class TiledCase:
    desc: str
    q: Tensor
    k: Tensor
    v: Tensor
    block_size: int
    causal: bool
    pass_causal: bool  # pass causal=... explicitly (the default is tested when False)
    large: bool = False  # scores in the hundreds


def tiled_case(g: torch.Generator, lead: tuple, Lq: int, Lk: int, d: int, d_v: int, bs: int,
                causal: bool = False, explicit: bool | None = None,
                scale: float = 1.0) -> TiledCase:
    q, k, v = (randn(g, *lead, Lq, d) * scale, randn(g, *lead, Lk, d) * scale,
               randn(g, *lead, Lk, d_v))
    explicit = causal if explicit is None else explicit
    desc = f"{describe(q, k, v)}, block_size={bs}" + (f", causal={causal}" if explicit else "")
    if scale != 1.0:
        largest = float((q @ k.transpose(-2, -1)).abs().max() / math.sqrt(d))
        desc += f", scores up to about {largest:.0f}"
    return TiledCase(desc, q, k, v, bs, causal, explicit, scale != 1.0)


def tiled_value_cases(hidden: bool) -> list[TiledCase]:
    """Non-causal: blocks that divide L and blocks that do not, block >= L, Lq != Lk."""
    g = torch.Generator().manual_seed(8811 if hidden else 811)
    if not hidden:
        return [tiled_case(g, (2,), 12, 12, 8, 8, 4),
                tiled_case(g, (2,), 10, 10, 8, 6, 4),
                tiled_case(g, (1,), 7, 13, 8, 5, 16)]
    return [tiled_case(g, (2, 3), 9, 14, 4, 6, 5, explicit=True),
            tiled_case(g, (), 6, 11, 8, 8, 3),
            tiled_case(g, (2,), 6, 6, 4, 4, 1),
            tiled_case(g, (1,), 1, 17, 8, 3, 4),
            tiled_case(g, (2,), 20, 3, 8, 8, 7),
            tiled_case(g, (1, 2), 33, 33, 16, 16, 8)]


def tiled_causal_cases(hidden: bool) -> list[TiledCase]:
    """Causal (top-left): blocks that divide L and blocks that do not, Lq != Lk."""
    g = torch.Generator().manual_seed(8812 if hidden else 812)
    if not hidden:
        return [tiled_case(g, (2,), 10, 10, 8, 8, 4, causal=True),
                tiled_case(g, (2,), 12, 12, 8, 4, 3, causal=True),
                tiled_case(g, (1,), 6, 9, 8, 5, 4, causal=True)]
    return [tiled_case(g, (2,), 11, 5, 8, 6, 2, causal=True),
            tiled_case(g, (2, 2), 17, 17, 8, 8, 5, causal=True),
            tiled_case(g, (1,), 7, 7, 4, 4, 8, causal=True),
            tiled_case(g, (), 6, 6, 4, 3, 1, causal=True),
            tiled_case(g, (2,), 3, 12, 8, 8, 2, causal=True),
            tiled_case(g, (2,), 9, 9, 8, 8, 3, causal=False, explicit=True)]


def tiled_memory_cases(hidden: bool) -> list[TiledCase]:
    """Lq and Lk well above block_size, d much smaller than both."""
    g = torch.Generator().manual_seed(8813 if hidden else 813)
    if not hidden:
        return [tiled_case(g, (2,), 40, 33, 8, 4, 8)]
    return [tiled_case(g, (2,), 36, 36, 8, 8, 16, causal=True),
            tiled_case(g, (2, 2), 24, 40, 4, 4, 6),
            tiled_case(g, (1,), 30, 21, 8, 4, 4, causal=True)]


def tiled_large_cases() -> list[TiledCase]:
    g = torch.Generator().manual_seed(814)
    return [tiled_case(g, (2,), 20, 20, 8, 8, 8, scale=12.0),
            tiled_case(g, (1,), 15, 15, 8, 4, 4, causal=True, scale=12.0)]


def tiled_guard() -> Guard:
    return Guard(["attention"], [
        *course_kernels(OURS.format("tiled_attention"), "tiled_attention",
                        "efficient._online_softmax_rows"),
        *course_kernels(COURSE_ATTENTION, "scaled_dot_product_attention", "masked_attention",
                        "attention._attention_weights")])


def call_tiled(fn, case: TiledCase) -> dict:
    args = (case.q.clone(), case.k.clone(), case.v.clone(), case.block_size)
    kwargs = {"causal": case.causal} if case.pass_causal else {}
    return call_recording(fn, *args, guard=tiled_guard(), **kwargs)


def record_tiled(cases: Callable[[], list[TiledCase]]):
    def record(fn) -> dict:
        return {"cases": [call_tiled(fn, case) for case in cases()]}
    return record


# ----------------------------------------------------------------------- sliding_window_mask


def window_cases(kind: str) -> list[tuple[int, int]]:
    """(L, window) pairs."""
    return {"values": [(6, 3), (5, 2)],
            "hidden": [(9, 4), (16, 5), (3, 2), (12, 7)],
            "edges": [(5, 1), (4, 4), (6, 10), (1, 3), (7, 6)]}[kind]


def window_guard() -> Guard:
    return Guard((), course=["sliding_window_mask"])


def record_window(kind: str):
    def record(fn) -> dict:
        return {"cases": [call(fn, L, w, guard=window_guard()) for L, w in window_cases(kind)]}
    return record


# --------------------------------------------------------------------------- linear_attention


def relu_map(x: Tensor) -> Tensor:
    """relu(x) + 0.1: positive, and zero gradient below 0 (another valid feature map)."""
    return F.relu(x) + 0.1


FEATURE_MAPS: dict[str, Callable[[Tensor], Tensor] | None] = {
    "default": None, "elu+1": elu_plus_one, "exp": torch.exp, "relu+0.1": relu_map}


@dataclass(frozen=True)
class LinearCase:
    desc: str
    q: Tensor
    k: Tensor
    v: Tensor
    feature_map: str  # a key of FEATURE_MAPS; "default" passes none

    @property
    def phi(self) -> Callable[[Tensor], Tensor]:
        return FEATURE_MAPS[self.feature_map] or elu_plus_one


def linear_case(g: torch.Generator, lead: tuple, Lq: int, Lk: int, d: int, d_v: int,
                 feature_map: str = "default") -> LinearCase:
    q, k, v = randn(g, *lead, Lq, d), randn(g, *lead, Lk, d), randn(g, *lead, Lk, d_v)
    desc = describe(q, k, v)
    if feature_map != "default":
        desc += f", feature_map={feature_map}"
    return LinearCase(desc, q, k, v, feature_map)


def linear_cases(kind: str) -> list[LinearCase]:
    if kind == "values":
        g = torch.Generator().manual_seed(821)
        return [linear_case(g, (1, 2), 5, 5, 8, 5), linear_case(g, (2,), 6, 8, 4, 3)]
    if kind == "hidden":
        g = torch.Generator().manual_seed(8821)
        return [linear_case(g, (2, 3), 7, 4, 6, 6), linear_case(g, (), 9, 12, 8, 9),
                linear_case(g, (2,), 1, 6, 4, 2), linear_case(g, (3,), 10, 10, 16, 8),
                linear_case(g, (2,), 4, 4, 5, 3, "elu+1")]
    if kind == "feature_map":
        g = torch.Generator().manual_seed(822)
        return [linear_case(g, (2,), 6, 9, 4, 3, "exp"),
                linear_case(g, (1, 2), 5, 7, 8, 4, "relu+0.1")]
    g = torch.Generator().manual_seed(8822)  # "linear": long enough to spot an (Lq, Lk) matrix
    return [linear_case(g, (2,), 40, 36, 4, 3), linear_case(g, (1,), 30, 30, 4, 4, "exp")]


def linear_guard() -> Guard:
    return Guard((), course=["linear_attention"])


def call_linear(fn, case: LinearCase) -> dict:
    args = (case.q.clone(), case.k.clone(), case.v.clone())
    fmap = FEATURE_MAPS[case.feature_map]
    if fmap is not None:
        args = (*args, fmap)
    return call_recording(fn, *args, guard=linear_guard())


def record_linear(kind: str):
    def record(fn) -> dict:
        return {"cases": [call_linear(fn, case) for case in linear_cases(kind)]}
    return record


RECORDS = {
    "tiled_attention.values": record_tiled(lambda: tiled_value_cases(False)),
    "tiled_attention.hidden": record_tiled(lambda: tiled_value_cases(True)),
    "tiled_attention.causal": record_tiled(lambda: tiled_causal_cases(False)),
    "tiled_attention.causal_hidden": record_tiled(lambda: tiled_causal_cases(True)),
    "tiled_attention.never_full": record_tiled(lambda: tiled_memory_cases(False)),
    "tiled_attention.never_full_hidden": record_tiled(lambda: tiled_memory_cases(True)),
    "tiled_attention.large_scores": record_tiled(tiled_large_cases),
    "sliding_window.values": record_window("values"),
    "sliding_window.hidden": record_window("hidden"),
    "sliding_window.edges": record_window("edges"),
    "linear_attention.values": record_linear("values"),
    "linear_attention.hidden": record_linear("hidden"),
    "linear_attention.feature_map": record_linear("feature_map"),
    "linear_attention.linear": record_linear("linear"),
}
