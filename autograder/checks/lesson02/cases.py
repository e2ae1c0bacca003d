"""Lesson 02's cases and record halves (run in the learner's kernel: no answers here)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._attention_cases import COURSE_ATTENTION, course_kernels, describe, randn
from .._core import Guard, Outcome, call, stand_ins

# ------------------------------------------------------------------- scaled_dot_product_attention


def stand_in_sdpa(q, k, v, mask=None, *args, **kwargs):
    """Known-good scaled_dot_product_attention for the checks of ``SelfAttention`` (which calls
    the learner's): one mistake costs once. Forbidden in the sdpa checks themselves."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., Lq, Lk)
    return weights @ v, weights


STAND_INS = {"scaled_dot_product_attention": stand_in_sdpa}


def sdpa_guard() -> Guard:
    return Guard(["attention"], [
        *course_kernels(COURSE_ATTENTION, "scaled_dot_product_attention",
                        "attention._attention_weights"),
        ("the grader's stand-in scaled_dot_product_attention", stand_in_sdpa)])


def random_mask(g: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """Random bool mask in which every query row has an allowed key and a blocked one."""
    mask = torch.rand(shape, generator=g) > 0.5
    Lq, Lk = shape[-2], shape[-1]
    for i in range(Lq):
        mask[..., i, i % Lk] = True
        mask[..., i, (i + 1) % Lk] = False
    return mask


def padding(lengths: list[int], Lk: int, extra_axes: int) -> Tensor:
    mask = torch.arange(Lk)[None, :] < torch.tensor(lengths)[:, None]  # (B, Lk)
    return mask.reshape(len(lengths), *([1] * extra_axes), Lk)


Case = tuple[str, Tensor, Tensor, Tensor, "Tensor | None"]


def value_cases(hidden: bool) -> list[Case]:
    """(description, q, k, v, None): 3-D and 4-D (plus, hidden, 2-D and 5-D); Lq != Lk."""
    g = torch.Generator().manual_seed(7201 if hidden else 201)
    shapes = [((2,), 3, 5, 4, 6), ((2, 3), 4, 6, 8, 5)]
    if hidden:
        shapes = [((3,), 5, 2, 8, 8), ((), 4, 7, 6, 3), ((1,), 1, 9, 16, 4),
                  ((2, 4), 5, 7, 64, 32), ((2, 2, 2), 3, 4, 4, 2)]
    cases = []
    for lead, Lq, Lk, d_k, d_v in shapes:
        q, k, v = randn(g, *lead, Lq, d_k), randn(g, *lead, Lk, d_k), randn(g, *lead, Lk, d_v)
        cases.append((describe(q, k, v), q, k, v, None))
    return cases


def mask_cases(hidden: bool) -> list[Case]:
    """Masks of several broadcastable shapes; every row keeps an allowed and a blocked key."""
    g = torch.Generator().manual_seed(7202 if hidden else 202)
    if not hidden:
        specs = [((2,), 4, 6, 8, 3, lambda: random_mask(g, (4, 6)))]
    else:
        specs = [
            ((2,), 5, 5, 4, 4, lambda: torch.ones(5, 5, dtype=torch.bool).tril()),
            ((3,), 4, 6, 8, 2, lambda: padding([5, 4, 1], 6, 1)),
            ((2,), 3, 7, 5, 6, lambda: random_mask(g, (2, 3, 7))),
            ((2, 2), 4, 5, 8, 8, lambda: padding([4, 2], 5, 2)),
            ((2, 3), 4, 4, 6, 3, lambda: random_mask(g, (1, 1, 4, 4))),
        ]
    cases = []
    for lead, Lq, Lk, d_k, d_v, make_mask in specs:
        q, k, v = randn(g, *lead, Lq, d_k), randn(g, *lead, Lk, d_k), randn(g, *lead, Lk, d_v)
        mask = make_mask()
        cases.append((describe(q, k, v, mask), q, k, v, mask))
    return cases


def call_sdpa(fn, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Outcome:
    args = (q.clone(), k.clone(), v.clone()) + (() if mask is None else (mask.clone(),))
    return call(fn, *args, guard=sdpa_guard())


def record_sdpa(cases):
    def record(fn) -> dict:
        return {"cases": [call_sdpa(fn, q, k, v, m) for _, q, k, v, m in cases()]}
    return record


def property_inputs():
    g = torch.Generator().manual_seed(7203)
    q, k, v = randn(g, 3, 4, 8), randn(g, 3, 6, 8), randn(g, 3, 6, 5)
    perm = torch.randperm(6, generator=g)
    sharp = (randn(g, 2, 3, 16) * 100, randn(g, 2, 5, 16), randn(g, 2, 5, 4))
    return q, k, v, perm, sharp


def record_properties(fn) -> dict:
    q, k, v, perm, sharp = property_inputs()
    guard = sdpa_guard
    return {
        "base": call(fn, q.clone(), k.clone(), v.clone(), guard=guard()),
        "permuted": call(fn, q.clone(), k[:, perm].clone(), v[:, perm].clone(), guard=guard()),
        "single": [call(fn, q[b:b + 1].clone(), k[b:b + 1].clone(), v[b:b + 1].clone(),
                        guard=guard()) for b in range(q.size(0))],
        "sharp": call(fn, *(t.clone() for t in sharp), guard=guard()),
    }


# --------------------------------------------------------------------------- SelfAttention

NAMES = ("W_q", "W_k", "W_v")


def head_guard() -> Guard:
    return Guard(["attention"], course_kernels(
        "the course's own SelfAttention (attnlab / autograder.reference)",
        "SelfAttention.forward"))


def head_weights(d_model: int, d_k: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: randn(g, d_k, d_model) / math.sqrt(d_model) for n in NAMES}  # (d_k, d_model)


def build(cls, d_model: int, d_k: int, seed: int) -> tuple[object, Outcome | None]:
    """The learner's module, built without touching the global stream, weights from a seed."""
    try:
        with torch.random.fork_rng():
            module = cls(d_model, d_k)
    except Exception as exc:
        return None, Outcome(error=f"{type(exc).__name__}: {exc}".strip().rstrip(":"),
                             error_type=type(exc).__name__)
    with torch.no_grad():
        for name, weight in head_weights(d_model, d_k, seed).items():
            linear = getattr(module, name, None)
            param = getattr(linear, "weight", None)
            if isinstance(param, Tensor) and tuple(param.shape) == tuple(weight.shape):
                param.copy_(weight)
            bias = getattr(linear, "bias", None)
            if isinstance(bias, Tensor):
                bias.zero_()  # the layout check takes the point for a bias; values still count
    return module, None


def layout(module) -> dict:
    """What the learner's W_q, W_k, W_v are, as plain data."""
    found = {"_module": isinstance(module, torch.nn.Module)}
    for name in NAMES:
        obj = getattr(module, name, None)
        weight = getattr(obj, "weight", None)
        found[name] = None if obj is None else {
            "type": type(obj).__name__,
            "linear": isinstance(obj, torch.nn.Linear),
            "weight_shape": tuple(weight.shape) if isinstance(weight, Tensor) else None,
            "bias": isinstance(getattr(obj, "bias", None), Tensor),
        }
    return found


def head_cases(kind: str) -> list[tuple[int, int, int, int, str]]:
    """(B, L, d_model, d_k, mask kind) for each case of a check."""
    if kind == "values":
        return [(2, 5, 12, 4, "")]
    if kind == "hidden":
        return [(1, 7, 8, 8, ""), (3, 4, 6, 10, ""), (2, 1, 5, 3, ""), (2, 6, 16, 16, "")]
    return [(2, 5, 12, 4, "causal"), (2, 5, 12, 4, "padding")]


def head_inputs(B: int, L: int, d_model: int, d_k: int, mask_kind: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = randn(g, B, L, d_model)  # (B, L, d_model)
    mask = None
    if mask_kind == "causal":
        mask = torch.ones(L, L, dtype=torch.bool).tril()  # (L, L)
    elif mask_kind == "padding":
        mask = padding([L, 3], L, 1)  # (B, 1, L)
    return x, mask


def seed(kind: str, i: int) -> int:
    return {"values": 211, "hidden": 7211, "mask": 212}[kind] * 10 + i


def record_head(kind: str):
    def record(cls) -> dict:
        rec: dict = {"cases": []}
        with stand_ins(cls, STAND_INS):  # their SelfAttention judged alone, not their sdpa
            for i, (B, L, d_model, d_k, mask_kind) in enumerate(head_cases(kind)):
                module, failed = build(cls, d_model, d_k, seed(kind, i))
                if failed is not None:
                    rec["cases"].append({"build": failed})
                    continue
                x, mask = head_inputs(B, L, d_model, d_k, mask_kind, seed(kind, i))
                args = (x,) if mask is None else (x, mask)
                rec["cases"].append({"layout": layout(module),
                                     "out": call(module, *args, guard=head_guard())})
        return rec
    return record


def record_layout(cls) -> dict:
    module, failed = build(cls, 12, 4, 0)
    return {"build": failed} if failed is not None else {"layout": layout(module)}


def grad_probe(module, x: Tensor, g_out: Tensor, g_w: Tensor) -> dict:
    """Backpropagate a fixed loss through a head; return each weight's gradient."""
    out, w = module(x)
    ((out * g_out).sum() + (w * g_w).sum()).backward()
    return {n: getattr(module, n).weight.grad for n in NAMES}


def grad_inputs():
    g = torch.Generator().manual_seed(7213)
    return randn(g, 2, 5, 12), randn(g, 2, 5, 4), randn(g, 2, 5, 5)


def record_grad(cls) -> dict:
    with stand_ins(cls, STAND_INS):
        module, failed = build(cls, 12, 4, 7213)
        if failed is not None:
            return {"build": failed}
        x, g_out, g_w = grad_inputs()
        return {"layout": layout(module),
                "grads": call(grad_probe, module, x, g_out, g_w, guard=head_guard())}


RECORDS = {
    "sdpa.values": record_sdpa(lambda: value_cases(False)),
    "sdpa.hidden": record_sdpa(lambda: value_cases(True)),
    "sdpa.mask": record_sdpa(lambda: mask_cases(False)),
    "sdpa.mask_hidden": record_sdpa(lambda: mask_cases(True)),
    "sdpa.properties": record_properties,
    "selfattn.layout": record_layout,
    "selfattn.values": record_head("values"),
    "selfattn.hidden": record_head("hidden"),
    "selfattn.grad": record_grad,
    "selfattn.mask": record_head("mask"),
}
