"""Lesson 03's verdicts: reference oracles, known mistakes and messages (trusted side only).

Every case is rebuilt from the same fixed seed as in ``cases``. For the class, ``compare``
loads the case's weights into the reference module and judges the learner's outputs.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from autograder.reference import MultiHeadAttention as RefMHA
from autograder.reference import merge_heads as ref_merge
from autograder.reference import split_heads as ref_split

from .._core import Outcome
from .._verdict import (
    Mistake,
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
    unpack_pair,
)
from .cases import (
    CROSS_CASES,
    HIDDEN_CASES,
    MASK_CASES,
    MASK_HIDDEN_CASES,
    NAMES,
    NO_BIAS_CASES,
    PROP_CASE,
    SELF_CASES,
    SHAPE_CASES,
    MhaCase,
    merge_cases,
    mha_inputs,
    mha_params,
    prop_perms,
    round_trip_cases,
    split_cases,
    to_np,
)

# --------------------------------------------------------------------------- split_heads


def _split_mistakes(x: torch.Tensor, H: int) -> list[Mistake]:
    B, L, D = x.shape
    dh = D // H
    x = x.contiguous()
    return [
        ("It matches `x.view(B, H, L, d_head)`: reshaping straight to the final shape cuts the "
         "flat memory in the wrong places, so each head gets whole tokens instead of a slice of "
         "every token. Reshape to (B, L, H, d_head) first, then swap L and H with "
         "`.transpose(1, 2)`.", to_np(x.reshape(B, H, L, dh))),
        ("Head h should hold the block of features h*d_head ... (h+1)*d_head - 1, but yours holds "
         "every H-th feature (h, h+H, h+2H, ...): you reshaped the last axis to (d_head, H). "
         "Reshape it to (n_heads, d_head), in that order.",
         to_np(x.reshape(B, L, dh, H).permute(0, 3, 1, 2))),
        ("It is still (B, L, H, d_head): the heads axis must come before L. Add "
         "`.transpose(1, 2)` after the reshape.", to_np(x.reshape(B, L, H, dh))),
        ("It looks like you transposed the wrong axes: after the reshape to (B, L, H, d_head) "
         "swap axes 1 (L) and 2 (H), i.e. `.transpose(1, 2)`.",
         to_np(x.reshape(B, L, H, dh).transpose(1, 3))),
        ("It looks like you swapped axes 2 and 3 (H and d_head) instead of 1 and 2 (L and H).",
         to_np(x.reshape(B, L, H, dh).transpose(2, 3))),
    ]


def _split_shape_hint(got: tuple, B: int, L: int, H: int, dh: int) -> str:
    if got == (B, L, H, dh):
        return ("That is (B, L, H, d_head): the heads axis must come before L. Add "
                "`.transpose(1, 2)` after the reshape.")
    if got in ((B, dh, L, H), (B, L, dh, H)) and H != dh:
        return ("It looks like n_heads and d_head are swapped: reshape the last axis to "
                "(n_heads, d_model // n_heads).")
    if len(got) == 4 and sorted(got) == sorted((B, L, H, dh)):
        return ("The sizes are right but in the wrong order. Reshape to (B, L, H, d_head), "
                "then swap axes 1 and 2 only.")
    if len(got) == 3 and got[0] == B * H:
        return "Keep the batch and heads axes separate: (B, H, L, d_head)."
    return "split_heads returns a 4-d tensor (B, H, L, d_head) with d_head = d_model // n_heads."


def _compare_split(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, x, H in split_cases(hidden):
            got = as_array(check_outcome(rec[desc], "Your split_heads", desc),
                           "Your split_heads", desc)
            want = to_np(ref_split(x, H))
            B, L, D = x.shape
            expect_shape(got, want.shape, "The result of your split_heads", desc,
                         hint=_split_shape_hint(tuple(got.shape), B, L, H, D // H))
            expect_close(got, want, "Your split_heads", desc, _split_mistakes(x, H),
                         atol=0, rtol=0)
    return compare


# --------------------------------------------------------------------------- merge_heads


def _merge_mistakes(y: torch.Tensor) -> list[Mistake]:
    B, H, L, dh = y.shape
    y = y.contiguous()
    return [
        ("It matches a reshape of (B, H, L, d_head) straight to (B, L, d_model): the heads axis "
         "has to move back next to d_head first. Do `.transpose(1, 2)`, then reshape.",
         to_np(y.reshape(B, L, H * dh))),
        ("It looks like you transposed the wrong axes before the reshape: swap axes 1 and 2 "
         "(H and L), giving (B, L, H, d_head).", to_np(y.transpose(2, 3).reshape(B, L, H * dh))),
        ("The features come out interleaved (head 0's first feature, head 1's first feature, "
         "...). Head h's d_head features must stay together as the block h*d_head ... "
         "(h+1)*d_head - 1: transpose to (B, L, H, d_head), then reshape.",
         to_np(y.permute(0, 2, 3, 1).reshape(B, L, H * dh))),
    ]


def _merge_shape_hint(got: tuple, B: int, H: int, L: int, dh: int) -> str:
    if got == (B, L, H, dh):
        return ("That is (B, L, H, d_head): join the last two axes with "
                "`.reshape(B, L, H * d_head)`.")
    if got == (B, H * L, dh) or got == (B * H, L, dh):
        return "Move the heads axis next to d_head (`.transpose(1, 2)`), then join those two."
    return "merge_heads returns (B, L, H * d_head) = (B, L, d_model)."


VIEW_HINT = ("`.view()` needs a contiguous tensor, and a transposed tensor is not contiguous. "
             "Use `.reshape(B, L, d_model)`, or call `.contiguous()` before `.view(...)`.")


def _check_view_error(out: Outcome, what: str, desc: str) -> None:
    if out.error and "view" in out.error and ("stride" in out.error or "contiguous" in out.error):
        also = " (Look at your merge_heads.)" if what == MHA else ""
        fail(f"{what} raised a RuntimeError ({desc}): {VIEW_HINT}{also}")


def _compare_merge(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, y in merge_cases(hidden):
            if not rec[desc].forbidden:
                _check_view_error(rec[desc], "Your merge_heads", desc)
            got = as_array(check_outcome(rec[desc], "Your merge_heads", desc),
                           "Your merge_heads", desc)
            want = to_np(ref_merge(y))
            expect_shape(got, want.shape, "The result of your merge_heads", desc,
                         hint=_merge_shape_hint(tuple(got.shape), *y.shape))
            expect_close(got, want, "Your merge_heads", desc, _merge_mistakes(y),
                         atol=0, rtol=0)
    return compare


def _compare_round_trip(rec: dict) -> None:
    if rec.get("_bad"):
        fail("This check takes the pair (split_heads, merge_heads).")
    for desc, _, t, _ in round_trip_cases():
        what = "Your split_heads/merge_heads round trip"
        if not rec[desc].forbidden:
            _check_view_error(rec[desc], what, desc)
        got = as_array(check_outcome(rec[desc], what, desc), what, desc)
        expect_shape(got, tuple(t.shape), what, desc,
                     hint="Each function should undo the other exactly.")
        if not close(got, to_np(t), atol=0, rtol=0):
            fail(f"{what} does not give back its input ({desc}). merge_heads must undo "
                 "split_heads exactly: if one reshapes to (B, L, H, d_head) and transposes "
                 "axes 1 and 2, the other transposes axes 1 and 2 back and reshapes.")


# --------------------------------------------------------------------------- MultiHeadAttention

MHA = "Your MultiHeadAttention"


def _reference(case: MhaCase) -> tuple[np.ndarray, np.ndarray]:
    with torch.random.fork_rng():
        ref = RefMHA(case.d_model, case.n_heads, bias=case.bias)
    state = {}
    for name, (w, b) in mha_params(case).items():
        state[f"{name}.weight"] = w
        if b is not None:
            state[f"{name}.bias"] = b
    ref.load_state_dict(state)
    with torch.no_grad():
        out, w = ref(*mha_inputs(case))
    return to_np(out), to_np(w)


def _variant(case: MhaCase, *, scale: str = "d_head", out_proj: bool = True,
             values: str = "v_proj", heads: str = "split", invert_mask: bool = False,
             softmax_dim: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The reference computation with one known mistake, for targeted messages."""
    P = mha_params(case)
    query, key, value, mask = mha_inputs(case)

    def lin(name: str, t: torch.Tensor) -> torch.Tensor:
        w, b = P[name]
        return t @ w.T + (b if b is not None else 0.0)

    H = case.n_heads
    q, k = lin("q_proj", query), lin("k_proj", key)  # (B, L, d_model)
    v = {"v_proj": lambda: lin("v_proj", value), "k_proj": lambda: lin("k_proj", value),
         "key_input": lambda: lin("v_proj", key)}[values]()
    d = case.d_model
    dh = d // H
    if heads == "one_big":
        qh, kh, vh = q[:, None], k[:, None], v[:, None]  # (B, 1, L, d_model)
    elif heads == "interleaved":
        qh, kh, vh = (t.unflatten(-1, (dh, H)).permute(0, 3, 1, 2) for t in (q, k, v))
    elif heads == "bare_view":
        qh, kh, vh = (t.reshape(t.size(0), H, t.size(1), dh) for t in (q, k, v))
    else:
        qh, kh, vh = (ref_split(t, H) for t in (q, k, v))
    s = {"d_head": math.sqrt(dh), "d_model": math.sqrt(d), "none": 1.0,
         "big_d_head": math.sqrt(dh)}[scale]
    scores = qh @ kh.transpose(-2, -1) / s
    if mask is not None:
        allowed = ~mask if invert_mask else mask
        scores = scores.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(scores, dim=softmax_dim)
    o = w @ vh
    if heads == "one_big":
        merged, w = o[:, 0], w[:, 0]
    elif heads == "interleaved":
        merged = o.permute(0, 2, 3, 1).flatten(-2)
    elif heads == "bare_view":
        merged = o.reshape(o.size(0), o.size(2), d)
    else:
        merged = ref_merge(o)
    out = lin("out_proj", merged) if out_proj else merged
    return to_np(out), to_np(w)


def _output_mistakes(case: MhaCase) -> list[Mistake]:
    m = [
        ("It matches the output *before* out_proj: after merging the heads, apply "
         "self.out_proj.", _variant(case, out_proj=False)[0]),
        ("It matches scores divided by sqrt(d_model) instead of sqrt(d_head). Each head works "
         "in d_head = d_model // n_heads dimensions, so scale by sqrt(d_head).",
         _variant(case, scale="d_model")[0]),
        ("It matches unscaled scores: divide q @ k^T by sqrt(d_head).",
         _variant(case, scale="none")[0]),
        ("It looks like the values were made with k_proj: use v_proj for the values.",
         _variant(case, values="k_proj")[0]),
        ("It matches one big head: attention over all d_model features at once. Split q, k and "
         "v into n_heads heads with split_heads, attend in each, then merge_heads.",
         _variant(case, heads="one_big", scale="d_model")[0]),
        ("It matches one big head (no split into heads, scores divided by sqrt(d_head)). Split "
         "q, k and v with split_heads, attend in each head, then merge_heads.",
         _variant(case, heads="one_big")[0]),
        ("It matches heads built from interleaved features (head h gets features h, h+H, ...). "
         "Use split_heads and merge_heads so that head h gets the block h*d_head ... "
         "(h+1)*d_head - 1.", _variant(case, heads="interleaved")[0]),
        ("It matches heads made with a bare `view(B, H, L, d_head)` (no transpose), which "
         "hands each head whole tokens instead of a slice of every token. Split with "
         "view(B, L, H, d_head) then transpose(1, 2), and merge the same way back.",
         _variant(case, heads="bare_view")[0]),
        ("It matches a softmax over the query axis (-2). Normalise over the keys (dim=-1).",
         _variant(case, softmax_dim=-2)[0]),
    ]
    if case.cross:
        m.append(("It looks like the values were computed from the `key` argument: the values "
                  "are v_proj(value).  In cross-attention key and value can differ.",
                  _variant(case, values="key_input")[0]))
    if case.mask:
        m.append(("It matches the mask with its meaning inverted. In this course True = may "
                  "attend, so block the positions where the mask is False "
                  "(nn.MultiheadAttention uses the opposite convention).",
                  _variant(case, invert_mask=True)[0]))
    return m


def _weight_mistakes(case: MhaCase) -> list[Mistake]:
    m = [
        ("It matches scores divided by sqrt(d_model) instead of sqrt(d_head). Each head works "
         "in d_head = d_model // n_heads dimensions, so scale by sqrt(d_head).",
         _variant(case, scale="d_model")[1]),
        ("It matches unscaled scores: divide q @ k^T by sqrt(d_head).",
         _variant(case, scale="none")[1]),
        ("It matches heads built from interleaved features (head h gets features h, h+H, ...). "
         "Use split_heads so that head h gets the block h*d_head ... (h+1)*d_head - 1.",
         _variant(case, heads="interleaved")[1]),
        ("It matches heads made with a bare `view(B, H, L, d_head)` (no transpose), which "
         "hands each head whole tokens instead of a slice of every token. Split with "
         "view(B, L, H, d_head) then transpose(1, 2), and merge the same way back.",
         _variant(case, heads="bare_view")[1]),
        ("It matches a softmax over the query axis (-2). Normalise over the keys (dim=-1).",
         _variant(case, softmax_dim=-2)[1]),
    ]
    if case.mask:
        m.append(("It matches the mask with its meaning inverted. In this course True = may "
                  "attend, so block the positions where the mask is False "
                  "(nn.MultiheadAttention uses the opposite convention).",
                  np.nan_to_num(_variant(case, invert_mask=True)[1])))
    return m


# ----- comparing


def _construct_text(case: MhaCase, with_bias_arg: bool) -> str:
    extra = f", bias={case.bias}" if with_bias_arg else ""
    return f"MultiHeadAttention({case.d_model}, {case.n_heads}{extra})"


def _check_built(info: dict, case: MhaCase, with_bias_arg: bool) -> None:
    """Construction, forbidden calls, the four linear maps: everything before the values."""
    built = _construct_text(case, with_bias_arg)
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        fail(f"{MHA} calls {fwd.forbidden[0]}. This exercise asks you to build it yourself "
             "from nn.Linear, your split_heads and merge_heads, and lesson 02's "
             "scaled_dot_product_attention (from attnlab) or torch.softmax.")
    d = case.d_model
    for name in NAMES:
        seen = info["attrs"][name]
        if seen["missing"]:
            fail(f"{MHA} has no attribute `{name}`. The exercise names its four linear maps "
                 f"q_proj, k_proj, v_proj and out_proj: in __init__ write e.g. "
                 f"`self.{name} = nn.Linear(d_model, d_model, bias=bias)`.")
        if seen["weight_shape"] is None:
            fail(f"`{name}` should be an nn.Linear(d_model, d_model), but it is a "
                 f"{seen['kind']} without a weight tensor.")
        if seen["weight_shape"] != (d, d):
            fail(f"`{name}.weight` has shape {seen['weight_shape']} in {built}, but should be "
                 f"{(d, d)}: one nn.Linear(d_model, d_model) holds the projections of all heads "
                 f"at once (head h uses output features h*d_head ... (h+1)*d_head - 1).")
        if case.bias and not seen["has_bias"]:
            fail(f"`{name}` has no bias in {built}; the default is bias=True. Pass `bias=bias` "
                 f"to each nn.Linear.")
        if not case.bias and seen["has_bias"]:
            fail(f"With bias=False, `{name}` still has a bias. Pass `bias=bias` to each "
                 f"nn.Linear.")
        if seen.get("load_error"):
            fail(f"Could not load test weights into `{name}` ({seen['load_error']}). Make it a "
                 f"plain nn.Linear(d_model, d_model).")
    if fwd is None:  # pragma: no cover (only when construction failed, handled above)
        fail(f"{built} could not be built.")


def _weights_shape_hint(got: np.ndarray, case: MhaCase) -> str:
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    want_w = _reference(case)[1]
    if got.shape in ((B, Lq, Lk), (B, 1, Lq, Lk)):
        flat = got.reshape(B, Lq, Lk)
        if close(flat, want_w.mean(axis=1)):
            return ("They are the per-head weights averaged over the heads. Return one map per "
                    "head, (B, H, Lq, Lk): averaging hides what each head does (this is what "
                    "nn.MultiheadAttention does unless average_attn_weights=False).")
        big = _variant(case, heads="one_big", scale="d_model")[1]
        big2 = _variant(case, heads="one_big")[1]
        if close(flat, big) or close(flat, big2):
            return ("It looks like one big head: q, k and v were never split into heads. Use "
                    "split_heads on each, attend per head, then merge_heads.")
        return "Return one weight map per head: (B, H, Lq, Lk), not an average or a single map."
    if got.shape == (B, H, Lk, Lq):
        return "Queries index the rows: (B, H, Lq, Lk). Did you compute k @ q^T?"
    return "The weights hold one (Lq, Lk) map per head and batch item: (B, H, Lq, Lk)."


def _output_shape_hint(got: np.ndarray, case: MhaCase) -> str:
    B, H, Lq, d = case.B, case.n_heads, case.Lq, case.d_model
    if got.shape == (B, H, Lq, d // H):
        return "That is still split into heads: merge_heads, then out_proj."
    return "The output has one d_model-wide vector per query: (B, Lq, d_model)."


def _compare_one(info: dict, case: MhaCase, with_bias_arg: bool, values: bool = True) -> None:
    _check_built(info, case, with_bias_arg)
    _check_view_error(info["forward"], MHA, case.desc)
    out, w = unpack_pair(check_outcome(info["forward"], MHA, case.desc), MHA, case=case.desc)
    want_out, want_w = _reference(case)
    if w.shape != want_w.shape:
        expect_shape(w, want_w.shape, "Your weight tensor", case.desc,
                     hint=_weights_shape_hint(w, case))
    if out.shape != want_out.shape:
        expect_shape(out, want_out.shape, "Your output", case.desc,
                     hint=_output_shape_hint(out, case))
    if not values:
        return
    _check_mask(w, case)
    expect_finite(w, "Your weight tensor", case.desc,
                  hint="Did a whole row of scores become -inf? Check how you use the mask."
                  if case.mask else "")
    sums = w.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-4):
        expect_close(w, want_w, "Your weight tensor", case.desc, _weight_mistakes(case),
                     hint=f"Each head's rows should sum to 1 over the keys, but yours sum to "
                          f"{np.round(sums.ravel()[:3], 3).tolist()}...")
    expect_close(w, want_w, "Your weight tensor", case.desc, _weight_mistakes(case), atol=1e-5)
    expect_finite(out, "Your output", case.desc)
    expect_close(out, want_out, "Your output", case.desc, _output_mistakes(case), atol=2e-5)


def _check_mask(w: np.ndarray, case: MhaCase) -> None:
    """Masked weights must be exactly 0; a polarity mix-up gets its own message."""
    if not case.mask:
        return
    mask = to_np(torch.broadcast_to(mha_inputs(case)[3], w.shape))
    wz = np.nan_to_num(w)
    blocked = np.abs(wz[~mask]).max() if (~mask).any() else 0.0
    if blocked <= 1e-6:
        if not np.allclose(wz.sum(-1), 1.0, atol=1e-4):
            fail(f"Your weights are 0 where the mask blocks a key, but the rows no longer sum "
                 f"to 1 ({case.desc}): it looks like the mask was applied after the softmax. "
                 "Set blocked scores to -inf *before* the softmax.")
        return
    if np.abs(wz[mask]).max() <= 1e-6:
        fail(f"Your weights are non-zero exactly where the mask is False and zero where it is "
             f"True ({case.desc}): the mask's meaning is inverted. In this course True = may "
             "attend, so block where the mask is False: `scores.masked_fill(~mask, "
             "float('-inf'))`. (nn.MultiheadAttention's boolean masks mean the opposite.)")
    fail(f"Your weights give up to {fmt(float(blocked))} to keys the mask blocks ({case.desc}). "
         "Blocked scores must become -inf before the softmax so their weights are exactly 0 "
         "(multiplying the scores by the mask only makes them 0, not -inf). Pass the mask on "
         "to your attention for every head.")


def _compare_mha(cases: list[MhaCase], with_bias_arg: bool = False, values: bool = True):
    def compare(rec: dict) -> None:
        for case in cases:
            _compare_one(rec[case.desc], case, with_bias_arg, values)
    return compare


# --------------------------------------------------------------------------- properties

def _compare_properties(rec: dict) -> None:
    case = PROP_CASE
    _check_built(rec, case, with_bias_arg=False)
    _check_view_error(rec["forward"], MHA, case.desc)
    out, w = unpack_pair(check_outcome(rec["forward"], MHA, case.desc), MHA, case=case.desc)
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    if w.shape != (B, H, Lq, Lk):
        expect_shape(w, (B, H, Lq, Lk), "Your weight tensor", case.desc,
                     hint=_weights_shape_hint(w, case))
    expect_shape(out, (B, Lq, case.d_model), "Your output", case.desc)
    expect_finite(w, "Your weight tensor", case.desc)
    if (w < 0).any() or not np.allclose(w.sum(-1), 1.0, atol=1e-4):
        fail("Each head's weights should be a probability distribution over the keys (every "
             "row non-negative, summing to 1), but yours sum to "
             f"{np.round(w.sum(-1).ravel()[:3], 3).tolist()}... Is the softmax over the last "
             "axis of the per-head scores?")
    kperm, qperm, _ = prop_perms()
    kperm, qperm = kperm.numpy(), qperm.numpy()
    out_k, w_k = unpack_pair(check_outcome(rec["keys_permuted"], MHA, "keys permuted"), MHA)
    if not (close(out_k, out) and close(w_k, w[..., kperm])):
        fail("Shuffling the key/value positions together should leave the output unchanged and "
             "shuffle the weight columns the same way; yours does not. Does a reshape move "
             "values between positions (split_heads/merge_heads need a transpose, not just a "
             "view)?")
    out_q, w_q = unpack_pair(check_outcome(rec["queries_permuted"], MHA, "queries permuted"), MHA)
    if not (close(out_q, out[:, qperm]) and close(w_q, w[:, :, qperm])):
        fail("Shuffling the queries should shuffle the output rows and weight rows the same "
             "way; yours does not. Does a reshape mix query positions?")
    out_1, w_1 = unpack_pair(check_outcome(rec["first_item"], MHA, "batch of one"), MHA)
    if not (close(out_1, out[:1]) and close(w_1, w[:1])):
        fail("The first batch item's output changed when it was run without the second item: "
             "your code mixes batch items. Keep B as its own axis in every reshape, e.g. "
             "x.view(B, L, n_heads, d_head).")
    if rec["head0_changed"] is None:
        fail("Could not change `q_proj.weight` in place: make q_proj a plain nn.Linear.")
    _, w_h = unpack_pair(check_outcome(rec["head0_changed"], MHA, "head 0 changed"), MHA)
    if not close(w_h[:, 1:], w[:, 1:]) or close(w_h[:, 0], w[:, 0]):
        fail("Changing only the first d_head rows of q_proj.weight (the query features of "
             "head 0) should change head 0's weights and no other head's. Yours does not: head "
             "h must attend with features h*d_head ... (h+1)*d_head - 1 only (split_heads), "
             "not with all d_model features or interleaved ones.")


VERDICTS = {
    "split_heads.values": ("split_heads: shapes and values match the reference",
                           _compare_split(False)),
    "split_heads.hidden": ("split_heads: more shapes, one head, non-contiguous inputs",
                           _compare_split(True)),
    "merge_heads.values": ("merge_heads: shapes and values match the reference",
                           _compare_merge(False)),
    "merge_heads.hidden": ("merge_heads: more shapes, one head, a non-contiguous input",
                           _compare_merge(True)),
    "heads.round_trip": ("split_heads and merge_heads undo each other", _compare_round_trip),
    "mha.shapes": ("MultiHeadAttention: four d_model x d_model linear maps, output and per-head "
                   "weight shapes", _compare_mha(SHAPE_CASES, values=False)),
    "mha.self_attention": ("MultiHeadAttention: self-attention matches the reference",
                           _compare_mha(SELF_CASES)),
    "mha.cross_attention": ("MultiHeadAttention: cross-attention (Lq != Lk) matches the "
                            "reference", _compare_mha(CROSS_CASES)),
    "mha.hidden": ("MultiHeadAttention: more sizes, one head, a single query",
                   _compare_mha(HIDDEN_CASES)),
    "mha.mask": ("MultiHeadAttention: masks (True = may attend) block exactly the right keys",
                 _compare_mha(MASK_CASES)),
    "mha.mask_hidden": ("MultiHeadAttention: causal, per-head and combined masks",
                        _compare_mha(MASK_HIDDEN_CASES)),
    "mha.no_bias": ("MultiHeadAttention: bias=False",
                    _compare_mha(NO_BIAS_CASES, with_bias_arg=True)),
    "mha.properties": ("MultiHeadAttention: permutation equivariance, distributions per head, "
                       "independent batch items and heads", _compare_properties),
}
