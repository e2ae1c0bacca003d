"""Lesson 02's verdicts: reference oracles, known mistakes and messages (trusted side only)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from autograder.reference import SelfAttention as RefSelfAttention
from autograder.reference import scaled_dot_product_attention as ref_sdpa

from .._attention_verdicts import (
    M_AFTER,
    M_BY_DK,
    M_NO_SCALE,
    M_QUERY_AXIS,
    TRANSPOSE_HINT,
    outcome_with_hint,
    tensor_pair,
)
from .._core import Outcome
from .._verdict import (
    Mistake,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
)
from .cases import (
    NAMES,
    describe,
    grad_inputs,
    grad_probe,
    head_cases,
    head_inputs,
    head_weights,
    mask_cases,
    property_inputs,
    seed,
    value_cases,
)

SDPA = "Your scaled_dot_product_attention"
HEAD = "Your SelfAttention"

# ------------------------------------------------------------------ messages for known mistakes

M_TIMES = "It matches scores multiplied by sqrt(d_k): divide by it instead."
M_BY_DV = ("It matches scores divided by sqrt(d_v), the width of the values. The scale comes "
           "from the width of the queries and keys, d_k = q.size(-1).")
M_KEYS_OUT = ("The output matches weights @ k. The output is a weighted average of the "
              "VALUES: weights @ v.")
M_INVERTED = ("It matches attention with the mask inverted. Here True means the query MAY "
              "attend to that key (as in F.scaled_dot_product_attention; "
              "nn.MultiheadAttention's bool masks mean the opposite). Fill the scores where "
              "the mask is False: scores.masked_fill(~mask, float('-inf')).")
M_MULTIPLY = ("It matches scores multiplied by the mask. That makes masked scores 0, not "
              "-inf, and e^0 = 1 still gets weight. Use scores.masked_fill(~mask, "
              "float('-inf')) or torch.where(mask, scores, float('-inf')).")

# A known mistake of an attention function: (message, its output or None, its weights).
Variant = tuple[str, "np.ndarray | None", np.ndarray]


def _weights(variants: list[Variant], shape: tuple) -> list[Mistake]:
    return [(m, w) for m, _, w in variants if w.shape == shape]


def _outputs(variants: list[Variant], shape: tuple) -> list[Mistake]:
    return [(m, o) for m, o, _ in variants if o is not None and o.shape == shape]


def _weights_of(variants: list[Variant], message: str) -> np.ndarray:
    return next(w for m, _, w in variants if m == message)


def _scale_mistakes(q: Tensor, k: Tensor, v: Tensor) -> list[tuple[str, float]]:
    """Wrong scale factors a learner might use, each with its message (first one wins)."""
    d_k, d_v = q.size(-1), v.size(-1)
    options = [
        (M_NO_SCALE, 1.0),
        (M_BY_DK, 1.0 / d_k),
        (M_TIMES, math.sqrt(d_k)),
        (M_BY_DV, 1.0 / math.sqrt(d_v)),
        (f"It matches scores divided by sqrt({k.size(-2)}) = sqrt(Lk), the number of keys. "
         "d_k is the width of each key, the LAST axis: q.size(-1).", 1.0 / math.sqrt(k.size(-2))),
    ]
    if k.dim() >= 3:
        options.append((f"It matches scores divided by sqrt({k.size(1)}), the size of axis 1. "
                        "d_k is the LAST axis, q.size(-1), whatever the number of batch axes.",
                        1.0 / math.sqrt(k.size(1))))
    right = 1.0 / math.sqrt(d_k)
    chosen: list[tuple[str, float]] = []
    for message, scale in options:
        if not math.isclose(scale, right) and not any(
                math.isclose(scale, s) for _, s in chosen):
            chosen.append((message, scale))
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


def _mistakes(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> list[Variant]:
    """The catalogued mistakes on this case, in the order they are tried."""
    found = [(msg, *_variant(q, k, v, mask, scale=s)) for msg, s in _scale_mistakes(q, k, v)]
    found.append((M_QUERY_AXIS, *_variant(q, k, v, mask, dim=-2)))
    found.append((M_KEYS_OUT, *_variant(q, k, v, mask, keys_out=True)))
    if mask is not None:
        for mode, message in (("after", M_AFTER), ("inverted", M_INVERTED),
                              ("multiply", M_MULTIPLY)):
            found.append((message, *_variant(q, k, v, mask, mask_mode=mode)))
    return found


# ------------------------------------------------------------------- scaled_dot_product_attention


def _compare_sdpa_case(outcome: Outcome, desc: str, q: Tensor, k: Tensor, v: Tensor,
                       mask: Tensor | None) -> None:
    value = outcome_with_hint(outcome, SDPA, desc, TRANSPOSE_HINT)
    out, w = tensor_pair(value, SDPA, desc)
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
    wrong_w = _weights(mistakes, w.shape)
    wrong_out = _outputs(mistakes, out.shape)
    if mask is not None:
        blocked = ~np.broadcast_to(mask.numpy(), w.shape)
        if (w[blocked] != 0).any():
            for message in (M_INVERTED, M_MULTIPLY):
                if close(w, _weights_of(mistakes, message)):
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


def compare_sdpa(cases):
    def compare(rec: dict) -> None:
        for outcome, (desc, q, k, v, mask) in zip(rec["cases"], cases(), strict=True):
            _compare_sdpa_case(outcome, desc, q, k, v, mask)
    return compare


def compare_properties(rec: dict) -> None:
    q, k, v, perm, sharp = property_inputs()
    desc = describe(q, k, v)
    out, w = tensor_pair(outcome_with_hint(rec["base"], SDPA, desc, TRANSPOSE_HINT), SDPA, desc)
    expect_shape(w, (3, 4, 6), "Your weight matrix", desc)
    expect_shape(out, (3, 4, 5), "Your output", desc)
    if (w < 0).any() or not np.allclose(w.sum(-1), 1.0, atol=1e-5):
        fail(f"Your weights should be non-negative and sum to 1 over the keys (axis -1) for "
             f"every query ({desc}). {M_QUERY_AXIS if np.allclose(w.sum(-2), 1) else ''}")
    out_p, w_p = tensor_pair(outcome_with_hint(rec["permuted"], SDPA, desc, TRANSPOSE_HINT),
                             SDPA, desc)
    if w_p.shape != w.shape or not close(w_p, w[..., perm.numpy()]) or not close(out_p, out):
        fail("Shuffling the (key, value) pairs together should shuffle the weight columns the "
             "same way and leave the output unchanged; yours does not. Does your code depend "
             "on the order or position of the keys?")
    for b, outcome in enumerate(rec["single"]):
        case = f"batch element {b} on its own"
        out_b, w_b = tensor_pair(outcome_with_hint(outcome, SDPA, case, TRANSPOSE_HINT), SDPA,
                                 case)
        if not (close(out_b, out[b:b + 1]) and close(w_b, w[b:b + 1])):
            fail("Each batch element should be processed on its own: running element "
                 f"{b} alone gives a different result from running the whole batch. Does "
                 "something (a softmax, a max, a sum) reach across the batch axis?")
    desc = "very large scores, in the hundreds"
    out_s, w_s = tensor_pair(outcome_with_hint(rec["sharp"], SDPA, desc, TRANSPOSE_HINT), SDPA,
                             desc)
    expect_finite(w_s, "Your weight matrix", desc,
                  hint="torch.exp overflows past about 88 in float32. Use torch.softmax, "
                       "which subtracts each row's maximum first.")
    want_out, want_w = (t.numpy() for t in ref_sdpa(*sharp))
    expect_close(w_s, want_w, "Your weight matrix", desc)
    expect_close(out_s, want_out, "Your output", desc)


# --------------------------------------------------------------------------- SelfAttention

HEAD_HINT = ("Check that W_q, W_k and W_v are nn.Linear(d_model, d_k, bias=False), that you "
             "call them on x (self.W_q(x)), and that your scaled_dot_product_attention passes "
             "its checks. " + TRANSPOSE_HINT)


def _ref_head(d_model: int, d_k: int, seed: int) -> RefSelfAttention:
    with torch.random.fork_rng():
        ref = RefSelfAttention(d_model, d_k)
    ref.load_state_dict({f"{n}.weight": w for n, w in head_weights(d_model, d_k, seed).items()})
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


IN_SDPA = (" (Your SelfAttention calls your scaled_dot_product_attention: fix it there, and "
           "this check follows.)")
M_UNMASKED = ("It matches the attention you get with no mask: pass the mask on, "
              "scaled_dot_product_attention(q, k, v, mask).")


def _head_mistakes(ref: RefSelfAttention, x: Tensor, mask: Tensor | None,
                   d_model: int) -> list[Variant]:
    """Mistakes made inside the head itself, in the order they are tried."""
    with torch.no_grad():
        q, k, v = ref.W_q(x), ref.W_k(x), ref.W_v(x)
        wq, wk = ref.W_q.weight, ref.W_k.weight
        found = [
            ("It matches scores divided by sqrt(d_model): the scale is sqrt(d_k), the width of "
             "the projected queries and keys (q.size(-1)).",
             *_variant(q, k, v, mask, scale=1 / math.sqrt(d_model))),
            ("It matches keys computed with W_q: the keys are self.W_k(x).",
             *_variant(q, q, v, mask)),
            ("It matches queries from W_k and keys from W_q: swap them back.",
             *_variant(k, q, v, mask)),
            ("It matches attention on x itself, without the projections: use q = self.W_q(x), "
             "k = self.W_k(x), v = self.W_v(x).", *_variant(x, x, x, mask)),
            ("It matches values that are x itself: the values are self.W_v(x).",
             *_variant(q, k, x, mask)),
            (M_UNMASKED, *_variant(q, k, v, None)),
            (M_NO_SCALE + IN_SDPA, *_variant(q, k, v, mask, scale=1.0)),
            (M_QUERY_AXIS + IN_SDPA, *_variant(q, k, v, mask, dim=-2)),
        ]
        if wq.shape[0] == wq.shape[1]:
            found.append(("It matches x @ W.weight without the transpose: call the layer, "
                          "self.W_q(x), which computes x @ W.weight.T.",
                          *_variant(x @ wq, x @ wk, x @ ref.W_v.weight, mask)))
    return found


def compare_head(kind: str):
    def compare(rec: dict) -> None:
        for i, ((B, L, d_model, d_k, mask_kind), case) in enumerate(
                zip(head_cases(kind), rec["cases"], strict=True)):
            if "build" in case:
                _build_failed(case["build"], d_model, d_k)
            _compare_layout(case["layout"], d_model, d_k, strict=False)
            x, mask = head_inputs(B, L, d_model, d_k, mask_kind, seed(kind, i))
            desc = f"x {tuple(x.shape)}, d_model={d_model}, d_k={d_k}" + (
                f", {mask_kind} mask {tuple(mask.shape)}" if mask is not None else "")
            value = outcome_with_hint(case["out"], HEAD, desc, HEAD_HINT)
            out, w = tensor_pair(value, HEAD, desc)
            ref = _ref_head(d_model, d_k, seed(kind, i))
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
                    if close(w, _weights_of(mistakes, M_UNMASKED)):
                        fail(f"{HEAD} ignores its mask ({desc}): pass it on, "
                             "scaled_dot_product_attention(q, k, v, mask).")
                    fail(f"Your weights are not 0 where the mask is False ({desc}). Pass the "
                         "mask on to your scaled_dot_product_attention, and make sure that "
                         "function passes its mask check.")
            expect_close(w, want_w, "Your weight matrix", desc, _weights(mistakes, w.shape))
            expect_shape(out, want_out.shape, "Your output", desc,
                         hint="The output has the values' width d_k: (B, L, d_k)."
                              + (" Yours has width d_model: did you forget self.W_v(x)?"
                                 if out.shape[-1:] == (d_model,) != (d_k,) else ""))
            expect_close(out, want_out, "Your output", desc, _outputs(mistakes, out.shape))
    return compare


def compare_layout_check(rec: dict) -> None:
    if "build" in rec:
        _build_failed(rec["build"], 12, 4)
    _compare_layout(rec["layout"], 12, 4)


NO_GRAD = ("Keep every step in torch (no .detach(), no .numpy(), no torch.no_grad(), no "
           "torch.tensor(...) around results) so attention stays differentiable and W_q, W_k, "
           "W_v can learn.")


def compare_grad(rec: dict) -> None:
    if "build" in rec:
        _build_failed(rec["build"], 12, 4)
    _compare_layout(rec["layout"], 12, 4, strict=False)
    what = "Backpropagating through your SelfAttention"
    if "grad" in (rec["grads"].error or "") and not rec["grads"].forbidden:
        fail(f"{what} raised {rec['grads'].error}. {NO_GRAD}")
    grads = outcome_with_hint(rec["grads"], what, "x (2, 5, 12), d_k=4", HEAD_HINT)
    x, g_out, g_w = grad_inputs()
    ref = _ref_head(12, 4, 7213)
    want = grad_probe(ref, x, g_out, g_w)
    for name in NAMES:
        got = grads.get(name) if isinstance(grads, dict) else None
        if got is None:
            fail(f"No gradient reached {name}.weight. {NO_GRAD}")
        expect_close(np.asarray(got), want[name].numpy(), f"The gradient of {name}.weight",
                     "a fixed loss on x (2, 5, 12)", atol=1e-4, rtol=1e-3)


VERDICTS = {
    "sdpa.values": ("scaled_dot_product_attention: 3-D and 4-D inputs match the reference",
                    compare_sdpa(lambda: value_cases(False))),
    "sdpa.hidden": ("scaled_dot_product_attention: more shapes, 2-D to 5-D",
                    compare_sdpa(lambda: value_cases(True))),
    "sdpa.mask": ("scaled_dot_product_attention: masked keys get exactly 0 weight",
                  compare_sdpa(lambda: mask_cases(False))),
    "sdpa.mask_hidden": ("scaled_dot_product_attention: causal, padding and broadcast masks",
                         compare_sdpa(lambda: mask_cases(True))),
    "sdpa.properties": ("scaled_dot_product_attention: rows sum to 1, key order and batch do "
                        "not matter, large scores stay finite", compare_properties),
    "selfattn.layout": ("SelfAttention: W_q, W_k, W_v are nn.Linear(d_model, d_k, bias=False)",
                        compare_layout_check),
    "selfattn.values": ("SelfAttention: output and weights match the reference",
                        compare_head("values")),
    "selfattn.hidden": ("SelfAttention: more sizes, d_k above and below d_model",
                        compare_head("hidden")),
    "selfattn.grad": ("SelfAttention: gradients reach W_q, W_k, W_v and match the reference",
                      compare_grad),
    "selfattn.mask": ("SelfAttention: the mask is passed through", compare_head("mask")),
}
