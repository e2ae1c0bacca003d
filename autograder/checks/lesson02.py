"""Checks for lesson 02, scaled dot-product attention: the function and one self-attention head."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from autograder.reference import SelfAttention as RefSelfAttention
from autograder.reference import scaled_dot_product_attention as ref_sdpa
from autograder.reference.attention import _attention_weights

from ._core import (
    Guard,
    Outcome,
    TensorRecord,
    call,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
    register,
    unpack_pair,
)

SDPA = "Your scaled_dot_product_attention"
HEAD = "Your SelfAttention"

TRANSPOSE_HINT = (
    "To transpose the keys, swap only the last two axes: k.transpose(-2, -1) (or k.mT). On a "
    "3-D tensor k.T reverses ALL the axes, (B, Lk, d_k) -> (d_k, Lk, B), and a fixed pair such "
    "as transpose(1, 2) breaks when the number of batch axes changes.")

MASK_HINT = (
    "Boolean indexing (scores[~mask] = ...) needs a mask of exactly the scores' shape, but masks "
    "here only broadcast to it. Use scores.masked_fill(~mask, float('-inf')) or torch.where(mask, "
    "scores, float('-inf')), which broadcast the mask for you.")

# ------------------------------------------------------------------ messages for known mistakes

M_NO_SCALE = ("It matches attention without the 1/sqrt(d_k) scaling: divide the scores "
              "q @ k^T by math.sqrt(d_k), where d_k = q.size(-1).")
M_BY_DK = ("It matches scores divided by d_k instead of sqrt(d_k). A dot product's variance "
           "grows like d_k, so its spread grows like sqrt(d_k): divide by math.sqrt(d_k).")
M_TIMES = "It matches scores multiplied by sqrt(d_k): divide by it instead."
M_BY_DV = ("It matches scores divided by sqrt(d_v), the width of the values. The scale comes "
           "from the width of the queries and keys, d_k = q.size(-1).")
M_QUERY_AXIS = ("Its weights are a softmax over the query axis (dim=-2), so each column sums "
                "to 1 instead of each row. Take the softmax over the key axis, dim=-1: each "
                "query's weights must sum to 1.")
M_KEYS_OUT = ("The output matches weights @ k. The output is a weighted average of the "
              "VALUES: weights @ v.")
M_AFTER = ("It looks like the mask was applied after the softmax (weights zeroed after "
           "normalising), so the remaining weights no longer sum to 1. Set the masked scores "
           "to -inf BEFORE the softmax; the softmax then shares all the weight among the keys "
           "that are allowed.")
M_INVERTED = ("It matches attention with the mask inverted. Here True means the query MAY "
              "attend to that key (as in F.scaled_dot_product_attention; "
              "nn.MultiheadAttention's bool masks mean the opposite). Fill the scores where "
              "the mask is False: scores.masked_fill(~mask, float('-inf')).")
M_MULTIPLY = ("It matches scores multiplied by the mask. That makes masked scores 0, not "
              "-inf, and e^0 = 1 still gets weight. Use scores.masked_fill(~mask, "
              "float('-inf')) or torch.where(mask, scores, float('-inf')).")


def _scale_mistakes(q: Tensor, k: Tensor, v: Tensor) -> dict[str, float]:
    """Wrong scale factors a learner might use, each with its message (first one wins)."""
    d_k, d_v = q.size(-1), v.size(-1)
    options = {
        M_NO_SCALE: 1.0,
        M_BY_DK: 1.0 / d_k,
        M_TIMES: math.sqrt(d_k),
        M_BY_DV: 1.0 / math.sqrt(d_v),
        f"It matches scores divided by sqrt({k.size(-2)}) = sqrt(Lk), the number of keys. "
        "d_k is the width of each key, the LAST axis: q.size(-1).": 1.0 / math.sqrt(k.size(-2)),
    }
    if k.dim() >= 3:
        options[f"It matches scores divided by sqrt({k.size(1)}), the size of axis 1. d_k is "
                "the LAST axis, q.size(-1), whatever the number of batch axes."] = \
            1.0 / math.sqrt(k.size(1))
    right = 1.0 / math.sqrt(d_k)
    chosen: dict[str, float] = {}
    for message, scale in options.items():
        if not math.isclose(scale, right) and not any(
                math.isclose(scale, s) for s in chosen.values()):
            chosen[message] = scale
    return chosen


def _variant(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None,
             scale: float | None = None, dim: int = -1, mask_mode: str = "before",
             keys_out: bool = False) -> tuple[np.ndarray | None, np.ndarray]:
    """Attention with one deliberate mistake: (output or None if shapes clash, weights)."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    scores = q @ k.transpose(-2, -1) * scale  # (..., Lq, Lk)
    if mask is not None:
        if mask_mode == "before":
            scores = scores.masked_fill(~mask, float("-inf"))
        elif mask_mode == "inverted":
            scores = scores.masked_fill(mask, float("-inf"))
        elif mask_mode == "multiply":
            scores = scores * mask
    weights = torch.softmax(scores, dim=dim)
    if mask is not None and mask_mode == "after":
        weights = weights * mask
    source = k if keys_out else v
    out = (weights @ source).numpy() if source.size(-2) == weights.size(-1) else None
    return out, weights.numpy()


def _mistakes(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None):
    """{message: (output, weights)} for the catalogued mistakes on this case."""
    found = {msg: _variant(q, k, v, mask, scale=s) for msg, s in _scale_mistakes(q, k, v).items()}
    found[M_QUERY_AXIS] = _variant(q, k, v, mask, dim=-2)
    found[M_KEYS_OUT] = _variant(q, k, v, mask, keys_out=True)
    if mask is not None:
        for mode, message in (("after", M_AFTER), ("inverted", M_INVERTED),
                              ("multiply", M_MULTIPLY)):
            found[message] = _variant(q, k, v, mask, mask_mode=mode)
    return found


# ------------------------------------------------------------------------------- helpers


def _sdpa_guard() -> Guard:
    label = "the course's own attention (attnlab / autograder.reference)"
    return Guard(["attention"], [(label, ref_sdpa), (label, _attention_weights)])


def _looks_like_shape_error(error: str) -> bool:
    text = error.lower()
    return any(w in text for w in ("size", "shape", "dimension", "dims", "multipl", "match"))


def _outcome(out: Outcome, what: str, case: str, hint: str) -> object:
    """check_outcome, with a hint for shape errors (the usual cause: the wrong transpose)."""
    if (out.error and not out.forbidden and out.error_type != "NotImplementedError"
            and _looks_like_shape_error(out.error)):
        fail(f"{what} raised {out.error} ({case}). "
             f"{MASK_HINT if 'mask' in out.error.lower() else hint}")
    return check_outcome(out, what, case)


def _pair(value, what: str, case: str) -> tuple[np.ndarray, np.ndarray]:
    out, w = unpack_pair(value, what, case=case)
    if not all(isinstance(x, TensorRecord) for x in value):
        fail(f"{what} should return torch tensors (output, weights), not numpy arrays or "
             f"lists ({case}). Stay in torch so gradients can flow.")
    return out, w


def _randn(g: torch.Generator, *shape: int) -> Tensor:
    return torch.randn(*shape, generator=g)


def _random_mask(g: torch.Generator, shape: tuple[int, ...]) -> Tensor:
    """Random bool mask in which every query row has an allowed key and a blocked one."""
    mask = torch.rand(shape, generator=g) > 0.5
    Lq, Lk = shape[-2], shape[-1]
    for i in range(Lq):
        mask[..., i, i % Lk] = True
        mask[..., i, (i + 1) % Lk] = False
    return mask


def _padding(lengths: list[int], Lk: int, extra_axes: int) -> Tensor:
    mask = torch.arange(Lk)[None, :] < torch.tensor(lengths)[:, None]  # (B, Lk)
    return mask.reshape(len(lengths), *([1] * extra_axes), Lk)


def _describe(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> str:
    text = f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}"
    return text + (f", mask {tuple(mask.shape)}" if mask is not None else "")


# ------------------------------------------------------------------- scaled_dot_product_attention

Case = tuple[str, Tensor, Tensor, Tensor, "Tensor | None"]


def _value_cases(hidden: bool) -> list[Case]:
    """(description, q, k, v, None): 3-D and 4-D (plus, hidden, 2-D and 5-D); Lq != Lk."""
    g = torch.Generator().manual_seed(7201 if hidden else 201)
    shapes = [((2,), 3, 5, 4, 6), ((2, 3), 4, 6, 8, 5)]
    if hidden:
        shapes = [((3,), 5, 2, 8, 8), ((), 4, 7, 6, 3), ((1,), 1, 9, 16, 4),
                  ((2, 4), 5, 7, 64, 32), ((2, 2, 2), 3, 4, 4, 2)]
    cases = []
    for lead, Lq, Lk, d_k, d_v in shapes:
        q, k, v = _randn(g, *lead, Lq, d_k), _randn(g, *lead, Lk, d_k), _randn(g, *lead, Lk, d_v)
        cases.append((_describe(q, k, v), q, k, v, None))
    return cases


def _mask_cases(hidden: bool) -> list[Case]:
    """Masks of several broadcastable shapes; every row keeps an allowed and a blocked key."""
    g = torch.Generator().manual_seed(7202 if hidden else 202)
    if not hidden:
        specs = [((2,), 4, 6, 8, 3, lambda: _random_mask(g, (4, 6)))]
    else:
        specs = [
            ((2,), 5, 5, 4, 4, lambda: torch.ones(5, 5, dtype=torch.bool).tril()),
            ((3,), 4, 6, 8, 2, lambda: _padding([5, 4, 1], 6, 1)),
            ((2,), 3, 7, 5, 6, lambda: _random_mask(g, (2, 3, 7))),
            ((2, 2), 4, 5, 8, 8, lambda: _padding([4, 2], 5, 2)),
            ((2, 3), 4, 4, 6, 3, lambda: _random_mask(g, (1, 1, 4, 4))),
        ]
    cases = []
    for lead, Lq, Lk, d_k, d_v, make_mask in specs:
        q, k, v = _randn(g, *lead, Lq, d_k), _randn(g, *lead, Lk, d_k), _randn(g, *lead, Lk, d_v)
        mask = make_mask()
        cases.append((_describe(q, k, v, mask), q, k, v, mask))
    return cases


def _call_sdpa(fn, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Outcome:
    args = (q.clone(), k.clone(), v.clone()) + (() if mask is None else (mask.clone(),))
    return call(fn, *args, guard=_sdpa_guard())


def _record_sdpa(cases):
    def record(fn) -> dict:
        return {"cases": [_call_sdpa(fn, q, k, v, m) for _, q, k, v, m in cases()]}
    return record


def _compare_sdpa_case(outcome: Outcome, desc: str, q: Tensor, k: Tensor, v: Tensor,
                       mask: Tensor | None) -> None:
    value = _outcome(outcome, SDPA, desc, TRANSPOSE_HINT)
    out, w = _pair(value, SDPA, desc)
    want_out, want_w = (t.numpy() for t in ref_sdpa(q, k, v, mask))
    if w.shape == want_out.shape and out.shape == want_w.shape and w.shape != out.shape:
        fail(f"{SDPA} seems to return (weights, output); return them in the order "
             f"(output, weights) ({desc}).")
    expect_shape(w, want_w.shape, "Your weight matrix", desc,
                 hint="There is one weight per (query, key) pair: (..., Lq, Lk), with the "
                      "same leading batch axes as q.")
    expect_finite(w, "Your weight matrix", desc,
                  hint="A NaN often comes from 0 * -inf (multiplying or adding -inf with the "
                       "mask) or from a whole row of -inf scores: use masked_fill(~mask, "
                       "float('-inf')), and remember that True means may attend.")
    mistakes = _mistakes(q, k, v, mask)
    wrong_w = {m: ww for m, (_, ww) in mistakes.items() if ww.shape == w.shape}
    wrong_out = {m: o for m, (o, _) in mistakes.items() if o is not None and o.shape == out.shape}
    if mask is not None:
        blocked = ~np.broadcast_to(mask.numpy(), w.shape)
        if (w[blocked] != 0).any():
            for message in (M_INVERTED, M_MULTIPLY):
                if close(w, wrong_w[message]):
                    fail(f"Your weights are not 0 where the mask is False ({desc}). {message}")
            fail(f"Your weights are not exactly 0 where the mask is False (largest such "
                 f"weight: {fmt(float(np.abs(w[blocked]).max()))}) ({desc}). Set the masked "
                 "scores to -inf before the softmax (e^-inf = 0); True means may attend.")
    sums = w.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-5):
        expect_close(w, want_w, "Your weight matrix", desc, wrong_w,
                     hint=f"Each query's weights should sum to 1 along the key axis (-1); "
                          f"yours sum to {np.round(sums.ravel()[:3], 3).tolist()}...")
    expect_close(w, want_w, "Your weight matrix", desc, wrong_w)
    width_hint = ("The output has one row per query and the values' width: (..., Lq, d_v)."
                  + (" Yours has the keys' width d_k: the output is weights @ v, not weights @ k."
                     if out.shape[-1:] == tuple(k.shape[-1:]) != tuple(v.shape[-1:]) else ""))
    expect_shape(out, want_out.shape, "Your output", desc, hint=width_hint)
    expect_finite(out, "Your output", desc)
    expect_close(out, want_out, "Your output", desc, wrong_out)


def _compare_sdpa(cases):
    def compare(rec: dict) -> None:
        for outcome, (desc, q, k, v, mask) in zip(rec["cases"], cases(), strict=True):
            _compare_sdpa_case(outcome, desc, q, k, v, mask)
    return compare


def _property_inputs():
    g = torch.Generator().manual_seed(7203)
    q, k, v = _randn(g, 3, 4, 8), _randn(g, 3, 6, 8), _randn(g, 3, 6, 5)
    perm = torch.randperm(6, generator=g)
    sharp = (_randn(g, 2, 3, 16) * 100, _randn(g, 2, 5, 16), _randn(g, 2, 5, 4))
    return q, k, v, perm, sharp


def _record_properties(fn) -> dict:
    q, k, v, perm, sharp = _property_inputs()
    guard = _sdpa_guard
    return {
        "base": call(fn, q.clone(), k.clone(), v.clone(), guard=guard()),
        "permuted": call(fn, q.clone(), k[:, perm].clone(), v[:, perm].clone(), guard=guard()),
        "single": [call(fn, q[b:b + 1].clone(), k[b:b + 1].clone(), v[b:b + 1].clone(),
                        guard=guard()) for b in range(q.size(0))],
        "sharp": call(fn, *(t.clone() for t in sharp), guard=guard()),
    }


def _compare_properties(rec: dict) -> None:
    q, k, v, perm, sharp = _property_inputs()
    desc = _describe(q, k, v)
    out, w = _pair(_outcome(rec["base"], SDPA, desc, TRANSPOSE_HINT), SDPA, desc)
    expect_shape(w, (3, 4, 6), "Your weight matrix", desc)
    expect_shape(out, (3, 4, 5), "Your output", desc)
    if (w < 0).any() or not np.allclose(w.sum(-1), 1.0, atol=1e-5):
        fail(f"Your weights should be non-negative and sum to 1 over the keys (axis -1) for "
             f"every query ({desc}). {M_QUERY_AXIS if np.allclose(w.sum(-2), 1) else ''}")
    out_p, w_p = _pair(_outcome(rec["permuted"], SDPA, desc, TRANSPOSE_HINT), SDPA, desc)
    if w_p.shape != w.shape or not close(w_p, w[..., perm.numpy()]) or not close(out_p, out):
        fail("Shuffling the (key, value) pairs together should shuffle the weight columns the "
             "same way and leave the output unchanged; yours does not. Does your code depend "
             "on the order or position of the keys?")
    for b, outcome in enumerate(rec["single"]):
        case = f"batch element {b} on its own"
        out_b, w_b = _pair(_outcome(outcome, SDPA, case, TRANSPOSE_HINT), SDPA, case)
        if not (close(out_b, out[b:b + 1]) and close(w_b, w[b:b + 1])):
            fail("Each batch element should be processed on its own: running element "
                 f"{b} alone gives a different result from running the whole batch. Does "
                 "something (a softmax, a max, a sum) reach across the batch axis?")
    desc = "very large scores, in the hundreds"
    out_s, w_s = _pair(_outcome(rec["sharp"], SDPA, desc, TRANSPOSE_HINT), SDPA, desc)
    expect_finite(w_s, "Your weight matrix", desc,
                  hint="torch.exp overflows past about 88 in float32. Use torch.softmax, "
                       "which subtracts each row's maximum first.")
    want_out, want_w = (t.numpy() for t in ref_sdpa(*sharp))
    expect_close(w_s, want_w, "Your weight matrix", desc)
    expect_close(out_s, want_out, "Your output", desc)


register("sdpa.values", "scaled_dot_product_attention: 3-D and 4-D inputs match the reference",
         _record_sdpa(lambda: _value_cases(False)), _compare_sdpa(lambda: _value_cases(False)))
register("sdpa.hidden", "scaled_dot_product_attention: more shapes, 2-D to 5-D",
         _record_sdpa(lambda: _value_cases(True)), _compare_sdpa(lambda: _value_cases(True)))
register("sdpa.mask", "scaled_dot_product_attention: masked keys get exactly 0 weight",
         _record_sdpa(lambda: _mask_cases(False)), _compare_sdpa(lambda: _mask_cases(False)))
register("sdpa.mask_hidden", "scaled_dot_product_attention: causal, padding and broadcast masks",
         _record_sdpa(lambda: _mask_cases(True)), _compare_sdpa(lambda: _mask_cases(True)))
register("sdpa.properties", "scaled_dot_product_attention: rows sum to 1, key order and batch "
         "do not matter, large scores stay finite", _record_properties, _compare_properties)


# --------------------------------------------------------------------------- SelfAttention

NAMES = ("W_q", "W_k", "W_v")
HEAD_HINT = ("Check that W_q, W_k and W_v are nn.Linear(d_model, d_k, bias=False), that you "
             "call them on x (self.W_q(x)), and that your scaled_dot_product_attention passes "
             "its checks. " + TRANSPOSE_HINT)


def _head_guard() -> Guard:
    return Guard(["attention"], [("the course's own SelfAttention (attnlab / "
                                  "autograder.reference)", RefSelfAttention.forward)])


def _head_weights(d_model: int, d_k: int, seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {n: _randn(g, d_k, d_model) / math.sqrt(d_model) for n in NAMES}  # (d_k, d_model)


def _build(cls, d_model: int, d_k: int, seed: int) -> tuple[object, Outcome | None]:
    """The learner's module, built without touching the global stream, weights from a seed."""
    try:
        with torch.random.fork_rng():
            module = cls(d_model, d_k)
    except Exception as exc:
        return None, Outcome(error=f"{type(exc).__name__}: {exc}".strip().rstrip(":"),
                             error_type=type(exc).__name__)
    with torch.no_grad():
        for name, weight in _head_weights(d_model, d_k, seed).items():
            linear = getattr(module, name, None)
            param = getattr(linear, "weight", None)
            if isinstance(param, Tensor) and tuple(param.shape) == tuple(weight.shape):
                param.copy_(weight)
            bias = getattr(linear, "bias", None)
            if isinstance(bias, Tensor):
                bias.zero_()  # the layout check takes the point for a bias; values still count
    return module, None


def _layout(module) -> dict:
    """What the learner's W_q, W_k, W_v are, as plain data."""
    layout = {"_module": isinstance(module, torch.nn.Module)}
    for name in NAMES:
        obj = getattr(module, name, None)
        weight = getattr(obj, "weight", None)
        layout[name] = None if obj is None else {
            "type": type(obj).__name__,
            "linear": isinstance(obj, torch.nn.Linear),
            "weight_shape": tuple(weight.shape) if isinstance(weight, Tensor) else None,
            "bias": isinstance(getattr(obj, "bias", None), Tensor),
        }
    return layout


def _ref_head(d_model: int, d_k: int, seed: int) -> RefSelfAttention:
    with torch.random.fork_rng():
        ref = RefSelfAttention(d_model, d_k)
    ref.load_state_dict({f"{n}.weight": w for n, w in _head_weights(d_model, d_k, seed).items()})
    return ref


def _build_failed(outcome: Outcome, d_model: int, d_k: int) -> None:
    what = f"SelfAttention({d_model}, {d_k})"
    if outcome.error_type == "NotImplementedError":
        check_outcome(outcome, what)
    hint = ""
    if "before Module.__init__" in (outcome.error or ""):
        hint = " Call super().__init__() first in your __init__."
    fail(f"Building {what} raised {outcome.error}.{hint}")


def _layout_problem(layout: dict, d_model: int, d_k: int, strict: bool) -> str | None:
    """The first problem with W_q, W_k, W_v; ``strict=False`` asks only: can weights load?"""
    if not layout["_module"]:
        return ("SelfAttention should be an nn.Module: class SelfAttention(nn.Module), with "
                "super().__init__() first in __init__.")
    for name in NAMES:
        info = layout[name]
        if info is None:
            return (f"Your SelfAttention has no attribute `{name}`. Create it in __init__: "
                    f"self.{name} = nn.Linear(d_model, d_k, bias=False).")
        if info["weight_shape"] != (d_k, d_model):
            swapped = info["weight_shape"] == (d_model, d_k)
            return (f"{name}.weight has shape {info['weight_shape']} for SelfAttention("
                    f"d_model={d_model}, d_k={d_k}); nn.Linear(d_model, d_k) stores it as "
                    f"{(d_k, d_model)} = (out, in)."
                    + (" Did you write nn.Linear(d_k, d_model)?" if swapped else "")
                    + ("" if info["linear"] else f" (`{name}` is a {info['type']}; make it an "
                       "nn.Linear.)"))
        if strict and not info["linear"]:
            return (f"`{name}` is a {info['type']}; it should be an nn.Linear(d_model, d_k, "
                    "bias=False), so the checks (and later lessons) can load weights into it.")
        if strict and info["bias"]:
            return (f"`{name}` has a bias. The course's head uses nn.Linear(d_model, d_k, "
                    "bias=False), like the paper's projection matrices.")
    return None


def _compare_layout(layout: dict, d_model: int, d_k: int, strict: bool = True) -> None:
    problem = _layout_problem(layout, d_model, d_k, strict)
    if problem:
        fail(problem)


def _head_cases(kind: str) -> list[tuple[int, int, int, int, str]]:
    """(B, L, d_model, d_k, mask kind) for each case of a check."""
    if kind == "values":
        return [(2, 5, 12, 4, "")]
    if kind == "hidden":
        return [(1, 7, 8, 8, ""), (3, 4, 6, 10, ""), (2, 1, 5, 3, ""), (2, 6, 16, 16, "")]
    return [(2, 5, 12, 4, "causal"), (2, 5, 12, 4, "padding")]


def _head_inputs(B: int, L: int, d_model: int, d_k: int, mask_kind: str, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = _randn(g, B, L, d_model)  # (B, L, d_model)
    mask = None
    if mask_kind == "causal":
        mask = torch.ones(L, L, dtype=torch.bool).tril()  # (L, L)
    elif mask_kind == "padding":
        mask = _padding([L, 3], L, 1)  # (B, 1, L)
    return x, mask


def _seed(kind: str, i: int) -> int:
    return {"values": 211, "hidden": 7211, "mask": 212}[kind] * 10 + i


def _record_head(kind: str):
    def record(cls) -> dict:
        rec: dict = {"cases": []}
        for i, (B, L, d_model, d_k, mask_kind) in enumerate(_head_cases(kind)):
            module, failed = _build(cls, d_model, d_k, _seed(kind, i))
            if failed is not None:
                rec["cases"].append({"build": failed})
                continue
            x, mask = _head_inputs(B, L, d_model, d_k, mask_kind, _seed(kind, i))
            args = (x,) if mask is None else (x, mask)
            rec["cases"].append({"layout": _layout(module),
                                 "out": call(module, *args, guard=_head_guard())})
        return rec
    return record


IN_SDPA = (" (Your SelfAttention calls your scaled_dot_product_attention: fix it there, and "
           "this check follows.)")


def _head_mistakes(ref: RefSelfAttention, x: Tensor, mask: Tensor | None, d_model: int):
    """{message: (output, weights)} for mistakes made inside the head itself."""
    with torch.no_grad():
        q, k, v = ref.W_q(x), ref.W_k(x), ref.W_v(x)
        wq, wk = ref.W_q.weight, ref.W_k.weight
        found = {
            "It matches scores divided by sqrt(d_model): the scale is sqrt(d_k), the width of "
            "the projected queries and keys (q.size(-1)).":
                _variant(q, k, v, mask, scale=1 / math.sqrt(d_model)),
            "It matches keys computed with W_q: the keys are self.W_k(x).":
                _variant(q, q, v, mask),
            "It matches queries from W_k and keys from W_q: swap them back.":
                _variant(k, q, v, mask),
            "It matches attention on x itself, without the projections: use q = self.W_q(x), "
            "k = self.W_k(x), v = self.W_v(x).": _variant(x, x, x, mask),
            "It matches values that are x itself: the values are self.W_v(x).":
                _variant(q, k, x, mask),
            "It matches the attention you get with no mask: pass the mask on, "
            "scaled_dot_product_attention(q, k, v, mask).": _variant(q, k, v, None),
            M_NO_SCALE + IN_SDPA: _variant(q, k, v, mask, scale=1.0),
            M_QUERY_AXIS + IN_SDPA: _variant(q, k, v, mask, dim=-2),
        }
        if wq.shape[0] == wq.shape[1]:
            found["It matches x @ W.weight without the transpose: call the layer, "
                  "self.W_q(x), which computes x @ W.weight.T."] = _variant(
                x @ wq, x @ wk, x @ ref.W_v.weight, mask)
    return found


def _compare_head(kind: str):
    def compare(rec: dict) -> None:
        for i, ((B, L, d_model, d_k, mask_kind), case) in enumerate(
                zip(_head_cases(kind), rec["cases"], strict=True)):
            if "build" in case:
                _build_failed(case["build"], d_model, d_k)
            _compare_layout(case["layout"], d_model, d_k, strict=False)
            x, mask = _head_inputs(B, L, d_model, d_k, mask_kind, _seed(kind, i))
            desc = f"x {tuple(x.shape)}, d_model={d_model}, d_k={d_k}" + (
                f", {mask_kind} mask {tuple(mask.shape)}" if mask is not None else "")
            value = _outcome(case["out"], HEAD, desc, HEAD_HINT)
            out, w = _pair(value, HEAD, desc)
            ref = _ref_head(d_model, d_k, _seed(kind, i))
            with torch.no_grad():
                want_out, want_w = (t.numpy() for t in ref(x, mask))
            mistakes = _head_mistakes(ref, x, mask, d_model)
            expect_shape(w, want_w.shape, "Your weight matrix", desc,
                         hint="Self-attention compares every position with every position: "
                              "(B, L, L).")
            expect_finite(w, "Your weight matrix", desc)
            if mask is not None:
                blocked = ~np.broadcast_to(mask.numpy(), w.shape)
                if (w[blocked] != 0).any():
                    unmasked = mistakes["It matches the attention you get with no mask: pass "
                                        "the mask on, scaled_dot_product_attention(q, k, v, "
                                        "mask)."][1]
                    if close(w, unmasked):
                        fail(f"{HEAD} ignores its mask ({desc}): pass it on, "
                             "scaled_dot_product_attention(q, k, v, mask).")
                    fail(f"Your weights are not 0 where the mask is False ({desc}). Pass the "
                         "mask on to your scaled_dot_product_attention, and make sure that "
                         "function passes its mask check.")
            expect_close(w, want_w, "Your weight matrix", desc,
                         {m: ww for m, (_, ww) in mistakes.items() if ww.shape == w.shape})
            expect_shape(out, want_out.shape, "Your output", desc,
                         hint="The output has the values' width d_k: (B, L, d_k)."
                              + (" Yours has width d_model: did you forget self.W_v(x)?"
                                 if out.shape[-1:] == (d_model,) != (d_k,) else ""))
            expect_close(out, want_out, "Your output", desc,
                         {m: o for m, (o, _) in mistakes.items()
                          if o is not None and o.shape == out.shape})
    return compare


def _record_layout(cls) -> dict:
    module, failed = _build(cls, 12, 4, 0)
    return {"build": failed} if failed is not None else {"layout": _layout(module)}


def _compare_layout_check(rec: dict) -> None:
    if "build" in rec:
        _build_failed(rec["build"], 12, 4)
    _compare_layout(rec["layout"], 12, 4)


NO_GRAD = ("Keep every step in torch (no .detach(), no .numpy(), no torch.no_grad(), no "
           "torch.tensor(...) around results) so attention stays differentiable and W_q, W_k, "
           "W_v can learn.")


def _grad_probe(module, x: Tensor, g_out: Tensor, g_w: Tensor) -> dict:
    """Backpropagate a fixed loss through the learner's head; return each weight's gradient."""
    out, w = module(x)
    ((out * g_out).sum() + (w * g_w).sum()).backward()
    return {n: getattr(module, n).weight.grad for n in NAMES}


def _grad_inputs():
    g = torch.Generator().manual_seed(7213)
    return _randn(g, 2, 5, 12), _randn(g, 2, 5, 4), _randn(g, 2, 5, 5)


def _record_grad(cls) -> dict:
    module, failed = _build(cls, 12, 4, 7213)
    if failed is not None:
        return {"build": failed}
    x, g_out, g_w = _grad_inputs()
    return {"layout": _layout(module),
            "grads": call(_grad_probe, module, x, g_out, g_w, guard=_head_guard())}


def _compare_grad(rec: dict) -> None:
    if "build" in rec:
        _build_failed(rec["build"], 12, 4)
    _compare_layout(rec["layout"], 12, 4, strict=False)
    what = "Backpropagating through your SelfAttention"
    if "grad" in (rec["grads"].error or "") and not rec["grads"].forbidden:
        fail(f"{what} raised {rec['grads'].error}. {NO_GRAD}")
    grads = _outcome(rec["grads"], what, "x (2, 5, 12), d_k=4", HEAD_HINT)
    x, g_out, g_w = _grad_inputs()
    ref = _ref_head(12, 4, 7213)
    want = _grad_probe(ref, x, g_out, g_w)
    for name in NAMES:
        got = grads.get(name) if isinstance(grads, dict) else None
        if got is None:
            fail(f"No gradient reached {name}.weight. {NO_GRAD}")
        expect_close(np.asarray(got), want[name].numpy(), f"The gradient of {name}.weight",
                     "a fixed loss on x (2, 5, 12)", atol=1e-4, rtol=1e-3)


register("selfattn.layout", "SelfAttention: W_q, W_k, W_v are nn.Linear(d_model, d_k, "
         "bias=False)", _record_layout, _compare_layout_check)
register("selfattn.values", "SelfAttention: output and weights match the reference",
         _record_head("values"), _compare_head("values"))
register("selfattn.hidden", "SelfAttention: more sizes, d_k above and below d_model",
         _record_head("hidden"), _compare_head("hidden"))
register("selfattn.grad", "SelfAttention: gradients reach W_q, W_k, W_v and match the "
         "reference", _record_grad, _compare_grad)
register("selfattn.mask", "SelfAttention: the mask is passed through",
         _record_head("mask"), _compare_head("mask"))
