"""Lesson 03's cases and record halves (run in the learner's kernel: no answers here).

For the class, ``record`` builds the learner's module, overwrites its four linear maps
(``q_proj, k_proj, v_proj, out_proj``) with fixed-seed weights and records what ``forward``
returns, with the grader's stand-ins for split_heads and merge_heads (one mistake costs once).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from .._core import Guard, Outcome, call, stand_ins
from .._modules import course_kernels


def to_np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# --------------------------------------------------------------------------- stand-ins

# One mistake costs once (issue 12): a check of merge_heads (the round trip) or of
# MultiHeadAttention runs the learner's code with these known-good split_heads and
# merge_heads in place of theirs, so a wrong split_heads costs only split_heads' own checks.
# Both are forbidden in split_heads' and merge_heads' own checks: no learner can call them as
# their answer.


def stand_in_split_heads(x, n_heads):
    """(B, L, d_model) -> (B, H, L, d_head), from reshape and transpose."""
    B, L, d_model = x.shape
    return x.reshape(B, L, n_heads, d_model // n_heads).transpose(1, 2)


def stand_in_merge_heads(x):
    """(B, H, L, d_head) -> (B, L, H * d_head), from transpose and reshape."""
    B, H, L, d_head = x.shape
    return x.transpose(1, 2).reshape(B, L, H * d_head)


STAND_IN_SPLIT = ("the grader's stand-in split_heads", stand_in_split_heads)
STAND_IN_MERGE = ("the grader's stand-in merge_heads", stand_in_merge_heads)
HEADS = {"split_heads": stand_in_split_heads, "merge_heads": stand_in_merge_heads}


# --------------------------------------------------------------------------- split_heads


def heads_guard() -> Guard:
    """split_heads' and merge_heads' own checks: no existing split or merge, ours included."""
    return Guard((), [STAND_IN_SPLIT, STAND_IN_MERGE], course=["split_heads", "merge_heads"])


def split_cases(hidden: bool) -> list[tuple[str, torch.Tensor, int]]:
    """(description, x of shape (B, L, d_model), n_heads): fixed seeds, nothing stored."""
    g = torch.Generator().manual_seed(7301 if hidden else 301)
    if not hidden:
        return [
            ("B=1, L=3, d_model=8, 2 heads", torch.randn(1, 3, 8, generator=g), 2),
            ("B=2, L=5, d_model=12, 3 heads", torch.randn(2, 5, 12, generator=g), 3),
        ]
    return [
        ("B=3, L=4, d_model=16, 4 heads (L = H = d_head)", torch.randn(3, 4, 16, generator=g), 4),
        ("B=2, L=6, d_model=24, 6 heads", torch.randn(2, 6, 24, generator=g), 6),
        ("one head", torch.randn(2, 3, 5, generator=g), 1),
        ("d_head = 1", torch.randn(1, 4, 6, generator=g), 6),
        ("a non-contiguous input (B=3, L=7, d_model=12, 3 heads, made by a transpose)",
         torch.randn(7, 3, 12, generator=g).transpose(0, 1), 3),
        ("a non-contiguous input (B=2, L=5, d_model=10, 2 heads, features strided)",
         torch.randn(2, 10, 5, generator=g).transpose(1, 2), 2),
    ]


def record_split(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, x, H, guard=heads_guard()) for desc, x, H in split_cases(hidden)}
    return record


# --------------------------------------------------------------------------- merge_heads


def merge_cases(hidden: bool) -> list[tuple[str, torch.Tensor]]:
    """(description, y of shape (B, H, L, d_head))."""
    g = torch.Generator().manual_seed(7302 if hidden else 302)
    if not hidden:
        return [
            ("B=1, H=2, L=3, d_head=4", torch.randn(1, 2, 3, 4, generator=g)),
            ("B=2, H=3, L=5, d_head=2", torch.randn(2, 3, 5, 2, generator=g)),
        ]
    return [
        ("B=3, H=4, L=4, d_head=4 (L = H = d_head)", torch.randn(3, 4, 4, 4, generator=g)),
        ("one head", torch.randn(2, 1, 6, 5, generator=g)),
        ("d_head = 1", torch.randn(2, 6, 3, 1, generator=g)),
        ("a non-contiguous input (made by a transpose)",
         torch.randn(2, 7, 3, 4, generator=g).transpose(1, 2)),
    ]


def record_merge(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, y, guard=heads_guard()) for desc, y in merge_cases(hidden)}
    return record


def round_trip_cases() -> list[tuple[str, str, torch.Tensor, int]]:
    """(description, direction, tensor, n_heads)."""
    g = torch.Generator().manual_seed(7303)
    return [
        ("merge_heads(split_heads(x, 3)), x of shape (2, 5, 12)", "merge(split)",
         torch.randn(2, 5, 12, generator=g), 3),
        ("merge_heads(split_heads(x, 4)), a non-contiguous x of shape (3, 6, 8)", "merge(split)",
         torch.randn(6, 3, 8, generator=g).transpose(0, 1), 4),
        ("split_heads(merge_heads(y), 2), y of shape (2, 2, 7, 3)", "split(merge)",
         torch.randn(2, 2, 7, 3, generator=g), 2),
    ]


def round_trip_guard() -> Guard:
    """The round trip judges merge_heads: the stand-in split_heads is ours to call there."""
    return Guard((), [STAND_IN_MERGE], course=["split_heads", "merge_heads"])


def record_round_trip(pair) -> dict:
    """merge_heads against split_heads, in both directions. The check sits in merge_heads'
    test cell, so it judges merge_heads alone: the learner's split_heads (judged by its own
    checks) is replaced by the stand-in."""
    rec: dict = {}
    try:
        _, merge_fn = pair
    except (TypeError, ValueError):
        return {"_bad": True}
    with stand_ins(merge_fn, {"split_heads": stand_in_split_heads}):
        for desc, direction, t, H in round_trip_cases():
            if direction == "merge(split)":
                fn: Callable = lambda x, H=H: merge_fn(stand_in_split_heads(x, H))
            else:
                fn = lambda y, H=H: stand_in_split_heads(merge_fn(y), H)
            rec[desc] = call(fn, t, guard=round_trip_guard())
    return rec


# --------------------------------------------------------------------------- MultiHeadAttention

NAMES = ("q_proj", "k_proj", "v_proj", "out_proj")


def mha_guard() -> Guard:
    """No built-in attention, and not the course's own module (its methods, by name)."""
    return Guard(["attention"], course_kernels("MultiHeadAttention.forward",
                                               "MultiHeadAttention.attend",
                                               "MultiHeadAttention.project"))


@dataclass(frozen=True)
class MhaCase:
    desc: str
    d_model: int
    n_heads: int
    B: int
    Lq: int
    Lk: int
    seed: int
    cross: bool = False  # query differs from key/value (and key differs from value)
    bias: bool = True
    mask: str = ""  # "", "random", "padding", "causal", "per_head", "padding_causal"


def mha_params(case: MhaCase) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    g = torch.Generator().manual_seed(case.seed)
    d = case.d_model
    out = {}
    for name in NAMES:
        w = torch.randn(d, d, generator=g) / math.sqrt(d) * 1.5
        b = 0.3 * torch.randn(d, generator=g)
        out[name] = (w, b if case.bias else None)
    return out


def _mask(case: MhaCase, g: torch.Generator) -> torch.Tensor | None:
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    rows = torch.arange(Lq)
    if case.mask in ("random", "per_head"):
        shape = (Lq, Lk) if case.mask == "random" else (B, H, Lq, Lk)
        m = torch.rand(shape, generator=g) < 0.5
        yes = torch.randint(0, Lk, shape[:-1], generator=g)  # one allowed key per row
        no = (yes + 1 + torch.randint(0, Lk - 1, shape[:-1], generator=g)) % Lk  # one blocked
        m = m | torch.nn.functional.one_hot(yes, Lk).bool()
        return m & ~torch.nn.functional.one_hot(no, Lk).bool()
    if case.mask == "padding":
        lengths = torch.tensor([Lk - 2, 2, Lk - 1, 3][:B])
        return (torch.arange(Lk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)
    causal = torch.arange(Lk)[None, :] <= rows[:, None]  # (Lq, Lk)
    if case.mask == "causal":
        return causal
    if case.mask == "padding_causal":
        lengths = torch.tensor([Lk, Lk - 2, Lk - 1][:B])
        pad = (torch.arange(Lk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)
        return pad & causal  # (B, 1, Lq, Lk)
    return None


def mha_inputs(case: MhaCase):
    """(query, key, value, mask) for the case; self-attention passes one tensor three times."""
    g = torch.Generator().manual_seed(case.seed + 1)
    d = case.d_model
    x = torch.randn(case.B, case.Lq, d, generator=g)
    if case.cross:
        key = torch.randn(case.B, case.Lk, d, generator=g)
        value = torch.randn(case.B, case.Lk, d, generator=g)
    else:
        key = value = x
    return x, key, value, _mask(case, g)


# ----- recording: build the learner's module, load fixed-seed weights, call forward


def build_mha(cls, case: MhaCase, with_bias_arg: bool) -> tuple[object, dict]:
    """The learner's module with the case's weights loaded, and what we saw while loading."""
    holder: dict = {}

    def construct():
        with torch.random.fork_rng():  # their init may draw from the global stream: restore it
            if with_bias_arg:
                holder["m"] = cls(case.d_model, case.n_heads, bias=case.bias)
            else:
                holder["m"] = cls(case.d_model, case.n_heads)

    info: dict = {"construct": call(construct, guard=mha_guard()), "attrs": {}}
    module = holder.get("m")
    if module is None:
        return None, info
    try:
        if hasattr(module, "eval"):
            module.eval()
    except Exception:  # a learner's odd eval() never crashes the check
        pass
    for name, (w, b) in mha_params(case).items():
        try:
            lin = getattr(module, name, None)
        except Exception:
            lin = None
        if lin is None:
            info["attrs"][name] = {"missing": True}
            continue
        weight = getattr(lin, "weight", None)
        bias = getattr(lin, "bias", None)
        seen = {"missing": False, "kind": type(lin).__name__,
                "weight_shape": tuple(weight.shape) if isinstance(weight, torch.Tensor) else None,
                "has_bias": isinstance(bias, torch.Tensor),
                "bias_shape": tuple(bias.shape) if isinstance(bias, torch.Tensor) else None}
        try:
            with torch.no_grad():
                if seen["weight_shape"] == tuple(w.shape):
                    weight.copy_(w)
                if b is not None and seen["bias_shape"] == tuple(b.shape):
                    bias.copy_(b)
        except Exception as exc:  # e.g. a weight that is not a tensor leaf
            seen["load_error"] = f"{type(exc).__name__}: {exc}"
        info["attrs"][name] = seen
    return module, info


def forward_mha(module, case: MhaCase) -> Outcome:
    query, key, value, mask = mha_inputs(case)
    if mask is None:
        return call(module, query, key, value, guard=mha_guard())
    return call(module, query, key, value, mask, guard=mha_guard())


def record_mha(cases: list[MhaCase], with_bias_arg: bool = False):
    def record(cls) -> dict:
        rec = {}
        with stand_ins(cls, HEADS):  # their split_heads/merge_heads are judged on their own
            for case in cases:
                module, info = build_mha(cls, case, with_bias_arg)
                info["forward"] = forward_mha(module, case) if module is not None else None
                rec[case.desc] = info
        return rec
    return record


SHAPE_CASES = [
    MhaCase("self-attention, B=2, L=5, d_model=12, 3 heads", 12, 3, 2, 5, 5, seed=311),
    MhaCase("cross-attention, B=3, Lq=2, Lk=7, d_model=16, 4 heads", 16, 4, 3, 2, 7, seed=312,
            cross=True),
]
SELF_CASES = [MhaCase("self-attention, B=2, L=5, d_model=12, 3 heads", 12, 3, 2, 5, 5, seed=313)]
CROSS_CASES = [MhaCase("cross-attention, B=2, Lq=3, Lk=6, d_model=16, 4 heads, key != value",
                       16, 4, 2, 3, 6, seed=314, cross=True)]
HIDDEN_CASES = [
    MhaCase("one head, B=1, L=4, d_model=8", 8, 1, 1, 4, 4, seed=7311),
    MhaCase("cross-attention, B=3, Lq=7, Lk=2, d_model=24, 6 heads", 24, 6, 3, 7, 2, seed=7312,
            cross=True),
    MhaCase("self-attention, B=2, L=9, d_model=32, 4 heads", 32, 4, 2, 9, 9, seed=7313),
    MhaCase("a single query, B=1, Lq=1, Lk=5, d_model=6, 2 heads", 6, 2, 1, 1, 5, seed=7314,
            cross=True),
    MhaCase("d_head=2, B=2, Lq=5, Lk=3, d_model=16, 8 heads", 16, 8, 2, 5, 3, seed=7315,
            cross=True),
]
MASK_CASES = [
    MhaCase("self-attention with a random (L, L) mask, B=2, L=5, d_model=12, 3 heads",
            12, 3, 2, 5, 5, seed=315, mask="random"),
    MhaCase("cross-attention with a padding mask of shape (B, 1, 1, Lk), B=2, Lq=3, Lk=6",
            16, 4, 2, 3, 6, seed=316, cross=True, mask="padding"),
]
MASK_HIDDEN_CASES = [
    MhaCase("a causal (L, L) mask, B=2, L=6, d_model=16, 4 heads", 16, 4, 2, 6, 6,
            seed=7316, mask="causal"),
    MhaCase("a per-head (B, H, Lq, Lk) mask, B=2, Lq=4, Lk=5, 3 heads", 12, 3, 2, 4, 5,
            seed=7317, cross=True, mask="per_head"),
    MhaCase("padding & causal, mask (B, 1, L, L), B=3, L=5, 2 heads", 8, 2, 3, 5, 5,
            seed=7318, mask="padding_causal"),
]
NO_BIAS_CASES = [
    MhaCase("bias=False, self-attention, B=2, L=4, d_model=12, 4 heads", 12, 4, 2, 4, 4,
            seed=317, bias=False),
    MhaCase("bias=False, cross-attention, B=1, Lq=3, Lk=5, d_model=8, 2 heads", 8, 2, 1, 3, 5,
            seed=318, cross=True, bias=False),
]


# --------------------------------------------------------------------------- properties

PROP_CASE = MhaCase("cross-attention, B=2, Lq=5, Lk=7, d_model=16, 4 heads", 16, 4, 2, 5, 7,
                    seed=7320, cross=True)


def prop_perms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key permutation, query permutation, and a perturbation of head 0's query rows."""
    g = torch.Generator().manual_seed(7321)
    dh = PROP_CASE.d_model // PROP_CASE.n_heads
    return (torch.randperm(PROP_CASE.Lk, generator=g), torch.randperm(PROP_CASE.Lq, generator=g),
            torch.randn(dh, PROP_CASE.d_model, generator=g))


def record_properties(cls) -> dict:
    with stand_ins(cls, HEADS):  # their split_heads/merge_heads are judged on their own
        return _record_properties(cls)


def _record_properties(cls) -> dict:
    case = PROP_CASE
    module, info = build_mha(cls, case, with_bias_arg=False)
    info["forward"] = None
    if module is None:
        return info
    query, key, value, _ = mha_inputs(case)
    kperm, qperm, delta = prop_perms()
    guard = mha_guard
    info["forward"] = call(module, query, key, value, guard=guard())
    info["keys_permuted"] = call(module, query, key[:, kperm], value[:, kperm], guard=guard())
    info["queries_permuted"] = call(module, query[:, qperm], key, value, guard=guard())
    info["first_item"] = call(module, query[:1], key[:1], value[:1], guard=guard())
    try:
        with torch.no_grad():
            module.q_proj.weight[: delta.shape[0]] += delta  # head 0's query features only
        info["head0_changed"] = call(module, query, key, value, guard=guard())
    except Exception:  # an attribute problem: reported by the verdict
        info["head0_changed"] = None
    return info


RECORDS = {
    "split_heads.values": record_split(False),
    "split_heads.hidden": record_split(True),
    "merge_heads.values": record_merge(False),
    "merge_heads.hidden": record_merge(True),
    "heads.round_trip": record_round_trip,
    "mha.shapes": record_mha(SHAPE_CASES),
    "mha.self_attention": record_mha(SELF_CASES),
    "mha.cross_attention": record_mha(CROSS_CASES),
    "mha.hidden": record_mha(HIDDEN_CASES),
    "mha.mask": record_mha(MASK_CASES),
    "mha.mask_hidden": record_mha(MASK_HIDDEN_CASES),
    "mha.no_bias": record_mha(NO_BIAS_CASES, True),
    "mha.properties": record_properties,
}
