"""Lesson 04's verdicts: reference oracles, known mistakes and messages (trusted side only)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from autograder.reference import causal_mask as ref_causal
from autograder.reference import masked_attention as ref_masked
from autograder.reference import padding_mask as ref_padding

from .._attention_verdicts import (
    M_AFTER,
    M_NO_SCALE,
    M_QUERY_AXIS,
    TRANSPOSE_HINT,
    expect_bool,
    outcome_with_hint,
    tensor_pair,
    tensor_value,
)
from .._attention_verdicts import as_numpy as _np
from .._core import Outcome, TensorRecord
from .._verdict import (
    CheckFailed,
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
    AttnCase,
    causal_cases,
    empty_cases,
    grad_cases,
    grad_probe,
    padding_cases,
    panel,
    property_cases,
    value_cases,
)

# --------------------------------------------------------------------------- causal_mask

CAUSAL = "Your causal_mask"


def _causal_mistakes(L: int) -> list[Mistake]:
    ones = torch.ones(L, L, dtype=torch.bool)
    return [
        ("It is upper-triangular (torch.triu): query i would see only itself and the FUTURE, "
         "exactly what a causal mask must prevent. Row i is the query, column j the key: keep "
         "j <= i, the lower triangle (torch.tril).", _np(ones.triu())),
        ("It is True where j > i: that is the blocked-positions convention of "
         "nn.MultiheadAttention (True = blocked). In this course True means MAY attend: "
         "True where j <= i.", _np(ones.triu(1))),
        ("The diagonal is False, so a position may not attend to itself (j < i instead of "
         "j <= i). A position always sees its own token: use tril() with the default "
         "diagonal=0.", _np(ones.tril(-1))),
        ("Every entry is True: that mask blocks nothing. Keep only j <= i (the lower "
         "triangle).", _np(ones)),
    ]


def _compare_causal(hidden: bool):
    def compare(rec: dict) -> None:
        for L, outcome in zip(causal_cases(hidden), rec["cases"], strict=True):
            case = f"L={L}"
            got = tensor_value(check_outcome(outcome, CAUSAL, case), CAUSAL, case)
            expect_shape(got, (L, L), "Your causal mask", case,
                         hint="One row per query and one column per key: (L, L).")
            expect_bool(got, "Your causal mask", case)
            expect_close(np.asarray(got), _np(ref_causal(L)), "Your causal mask", case,
                         _causal_mistakes(L), atol=0, rtol=0)
    return compare


# --------------------------------------------------------------------------- padding_mask

PADDING = "Your padding_mask"


def _padding_mistakes(lengths: list[int], max_len: int) -> list[Mistake]:
    pos = torch.arange(max_len)[None, :]  # (1, max_len)
    lens = torch.tensor(lengths)[:, None]  # (B, 1)
    shape = (len(lengths), 1, 1, max_len)
    return [
        ("It is True on the PADDING and False on the real tokens: the opposite polarity. True "
         "means the key may be attended to, so the real tokens (positions < lengths[b]) are "
         "True.", _np((pos >= lens).reshape(shape))),
        ("It has one True too many in each row: position p is a real token when "
         "p < lengths[b] (positions count from 0), not p <= lengths[b].",
         _np((pos <= lens).reshape(shape))),
        ("It has one True too few in each row: positions count from 0, so sequence b's real "
         "tokens are positions 0 ... lengths[b] - 1 (torch.arange(max_len) < lengths[b]).",
         _np((pos + 1 < lens).reshape(shape))),
    ]


def _padding_shape_hint(got: tuple, B: int, max_len: int) -> str:
    if got in ((B, max_len), (B, 1, max_len), (B, max_len, 1, 1)):
        return ("Give it two extra axes of size 1, mask[:, None, None, :], so it broadcasts "
                "against weights of shape (B, H, Lq, Lk): one row per sequence, shared by "
                "every head and every query.")
    return "The mask is (B, 1, 1, max_len): one row per sequence, for every head and query."


def _compare_padding(hidden: bool):
    def compare(rec: dict) -> None:
        for (kind, lengths, max_len), outcome in zip(padding_cases(hidden), rec["cases"],
                                                     strict=True):
            case = f"lengths={lengths} as a {kind}, max_len={max_len}"
            if (kind != "tensor" and outcome.error_type == "TypeError"
                    and not outcome.forbidden):
                fail(f"{PADDING} raised {outcome.error} ({case}). `lengths` may be a Python "
                     "list: turn it into a tensor first, lengths = torch.as_tensor(lengths).")
            got = tensor_value(check_outcome(outcome, PADDING, case), PADDING, case)
            B = len(lengths)
            expect_shape(got, (B, 1, 1, max_len), "Your padding mask", case,
                         hint=_padding_shape_hint(tuple(got.shape), B, max_len))
            expect_bool(got, "Your padding mask", case)
            expect_close(np.asarray(got), _np(ref_padding(lengths, max_len)), "Your padding mask",
                         case, _padding_mistakes(lengths, max_len), atol=0, rtol=0)
    return compare


# --------------------------------------------------------------------------- masked_attention

MA = "Your masked_attention"

M_INVERTED = ("It matches attention with the mask inverted. In this course True means the "
              "query MAY attend to that key (nn.MultiheadAttention's bool masks mean the "
              "opposite). Block the scores where the mask is False: "
              "scores.masked_fill(~mask, float('-inf')).")
M_NAN_ROWS = ("Your weights contain NaN in the rows whose keys are ALL masked ({rows}). Every "
              "score in such a row is -inf, and the softmax of a row of -inf is 0/0 = NaN. "
              "Give those rows finite scores before the softmax (e.g. torch.where(has_key, "
              "scores, 0.0) with has_key = mask.any(-1, keepdim=True)), then set their weights "
              "to 0 afterwards.")
M_UNIFORM_ROWS = ("In the rows whose keys are all masked ({rows}) your weights are spread "
                  "evenly (1/Lk each): that is what a large negative fill such as -1e9 gives "
                  "when every key is blocked. A query with nothing to attend to must get zero "
                  "weights (and so a zero output): zero the weights where the mask is False "
                  "after the softmax, e.g. weights.masked_fill(~mask, 0.0).")
M_EMPTY_OUTPUT = ("Your weights are 0 in the rows whose keys are all masked ({rows}), but the "
                  "output there is not 0. Compute the output from the final weights "
                  "(output = weights @ v after zeroing), so such a query returns zeros.")
M_RENORM = ("It looks like the mask is applied after the softmax and the weights then "
            "renormalised. That is equal on paper, but when a blocked key has a much larger "
            "score than the allowed ones, the allowed keys' share underflows to 0 in float32 "
            "before you renormalise (0/0 = NaN, or zeros). Mask the scores BEFORE the softmax.")
M_NOT_EXACT = ("Your weights where the mask is False are tiny but not exactly 0 (largest: "
               "{largest}). A fill value such as -100 is not negative enough (e^-100 is about "
               "4e-44, still a float32 number). Use float('-inf'), or a huge negative number "
               "such as -1e9 or torch.finfo(scores.dtype).min, whose exponential is exactly 0.")
M_GRAD_NAN = ("The gradient reaching {name} contains NaN ({case}), although the forward "
              "values may look fine. A typical cause: an additive -inf mask (scores + "
              "mask_of_minus_inf) with torch.nan_to_num after the softmax: the backward pass "
              "still runs through the softmax of a row of -inf, and its NaN flows back through "
              "the addition. Make every row's scores finite BEFORE the softmax (e.g. "
              "torch.where(mask.any(-1, keepdim=True), scores, 0.0)) and zero the weights "
              "after it.")
NO_GRAD = ("Keep every step in torch (no .detach(), no .numpy(), no torch.no_grad(), no "
           "torch.tensor(...) around results) so gradients can flow back to q, k and v.")
SUM_HINT = ("Every query that has at least one allowed key should have weights summing to 1 "
            "over the keys (axis -1); yours sum to {sums}.")


def _variants(case: AttnCase) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(message, output, weights) for the catalogued mistakes on this case, in order."""
    q, k, v, mask = case.q, case.k, case.v, case.mask
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk)
    after = torch.softmax(scores, dim=-1) * mask  # zeroed after normalising
    query_axis = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-2)
    query_axis = torch.nan_to_num(query_axis)
    found = [
        (M_INVERTED, ref_masked(q, k, v, ~mask)),
        (M_AFTER, (after @ v, after)),
        (M_NO_SCALE, ref_masked(q * math.sqrt(q.size(-1)), k, v, mask)),
        (M_QUERY_AXIS, (query_axis @ v, query_axis)),
    ]
    return [(m, _np(o), _np(w)) for m, (o, w) in found]


def _rows(empty: np.ndarray) -> str:
    idx = [tuple(int(i) for i in r) for r in np.argwhere(empty)[:3]]
    more = " ..." if int(empty.sum()) > 3 else ""
    return "rows " + ", ".join(str(i) for i in idx) + more


def _check_empty_rows(w: np.ndarray, out: np.ndarray, empty: np.ndarray, desc: str) -> None:
    """Fully masked query rows: zero weights, zero output, no NaN."""
    rows_w, rows_out = w[empty], out[empty]  # (n, Lk), (n, d_v)
    where = _rows(empty)
    if np.isnan(rows_w).any():
        fail(M_NAN_ROWS.format(rows=where) + f" ({desc})")
    if rows_w.size and np.allclose(rows_w, 1.0 / w.shape[-1], atol=1e-6):
        fail(M_UNIFORM_ROWS.format(rows=where) + f" ({desc})")
    if (rows_w != 0).any():
        fail(f"A query whose keys are all masked should get weights of exactly 0; yours has "
             f"weights up to {fmt(float(np.abs(rows_w).max()))} in {where} ({desc}). Zero the "
             "weights where the mask is False after the softmax.")
    if not np.isfinite(rows_out).all() or not np.allclose(rows_out, 0.0, atol=1e-6):
        fail(M_EMPTY_OUTPUT.format(rows=where) + f" ({desc})")


def _compare_masked_case(outcome: Outcome, case: AttnCase) -> None:
    desc = case.desc
    value = outcome_with_hint(outcome, MA, desc, TRANSPOSE_HINT)
    out, w = tensor_pair(value, MA, desc)
    want_out, want_w = (_np(t) for t in ref_masked(case.q, case.k, case.v, case.mask))
    if w.shape == want_out.shape and out.shape == want_w.shape and w.shape != out.shape:
        fail(f"{MA} seems to return (weights, output); return them in the order "
             f"(output, weights) ({desc}).")
    expect_shape(w, want_w.shape, "Your weight matrix", desc,
                 hint="One weight per (query, key) pair, with q's leading axes: "
                      "(..., Lq, Lk). The mask broadcasts to that shape; it does not change it.")
    mask = np.broadcast_to(_np(case.mask), w.shape)
    empty = ~mask.any(-1)  # (..., Lq): queries with no key to attend to
    if empty.any():
        _check_empty_rows(w, out, empty, desc)
    expect_finite(w, "Your weight matrix", desc,
                  hint="A NaN often comes from 0 * -inf, e.g. multiplying the mask by -inf: "
                       "use masked_fill(~mask, float('-inf')) or torch.where.")
    mistakes = _variants(case)
    wrong_w: list[Mistake] = [(m, ww) for m, _, ww in mistakes if ww.shape == w.shape]
    wrong_out: list[Mistake] = [(m, o) for m, o, _ in mistakes if o.shape == out.shape]
    inverted_w = next((ww for m, ww in wrong_w if m == M_INVERTED), None)
    blocked = ~mask
    if (w[blocked] != 0).any():
        if inverted_w is not None and close(w, np.nan_to_num(inverted_w)):
            fail(f"Your weights are not 0 where the mask is False ({desc}). {M_INVERTED}")
        largest = float(np.abs(w[blocked]).max())
        if largest < 1e-6:
            fail(M_NOT_EXACT.format(largest=fmt(largest)) + f" ({desc})")
        fail(f"Your weights are not 0 where the mask is False (largest such weight: "
             f"{fmt(largest)}) ({desc}). Set the masked scores to -inf before the softmax; "
             "True means may attend.")
    sums = w.sum(axis=-1)[~empty]
    if not np.allclose(sums, 1.0, atol=1e-5):
        expect_close(w, want_w, "Your weight matrix", desc, wrong_w,
                     hint=SUM_HINT.format(sums=np.round(sums.ravel()[:3], 3).tolist()))
    expect_close(w, want_w, "Your weight matrix", desc, wrong_w)
    expect_shape(out, want_out.shape, "Your output", desc,
                 hint="One row per query with the values' width: (..., Lq, d_v); the output "
                      "is weights @ v.")
    expect_finite(out, "Your output", desc)
    expect_close(out, want_out, "Your output", desc, wrong_out)


def _compare_masked(cases: Callable[[], list[AttnCase]]):
    def compare(rec: dict) -> None:
        for outcome, case in zip(rec["cases"], cases(), strict=True):
            _compare_masked_case(outcome, case)
    return compare


def _compare_grad(rec: dict) -> None:
    for outcome, (case, g_out, g_w) in zip(rec["cases"], grad_cases(), strict=True):
        what = "Backpropagating through your masked_attention"
        if "grad" in (outcome.error or "") and not outcome.forbidden:
            fail(f"{what} raised {outcome.error} ({case.desc}). {NO_GRAD}")
        grads = outcome_with_hint(outcome, what, case.desc, TRANSPOSE_HINT)
        want = grad_probe(ref_masked, case.q, case.k, case.v, case.mask, g_out, g_w)
        for name in ("q", "k", "v"):
            got = grads.get(name) if isinstance(grads, dict) else None
            if got is None:
                fail(f"No gradient reached {name} ({case.desc}). {NO_GRAD}")
            got = np.asarray(got)
            if not np.isfinite(got).all():
                fail(M_GRAD_NAN.format(name=name, case=case.desc))
            expect_close(got, _np(want[name]), f"The gradient reaching {name}", case.desc,
                         atol=1e-4, rtol=1e-3)


def _compare_properties(rec: dict) -> None:
    cases = property_cases()
    _compare_masked_case(rec["exact"], cases["exact"])
    case = cases["large"]
    value = outcome_with_hint(rec["large"], MA, case.desc, TRANSPOSE_HINT)
    out, w = tensor_pair(value, MA, case.desc)
    want_out, want_w = (_np(t) for t in ref_masked(case.q, case.k, case.v, case.mask))
    expect_shape(w, want_w.shape, "Your weight matrix", case.desc)
    if not np.isfinite(w).all() or not np.allclose(w.sum(-1), 1.0, atol=1e-5):
        fail(f"{M_RENORM} ({case.desc})")
    _compare_masked_case(rec["large"], case)


# --------------------------------------------------------------------------- leaks_future

DETECTOR = "Your leaks_future"


@dataclass(frozen=True)
class Model:
    name: str
    leaks: bool
    about: str  # what the model does, in a learner's words


MODELS = {m.name: m for m in (
    Model("unmasked attention", True, "self-attention with no mask: every position attends "
          "to every position, later ones included"),
    Model("causal attention", False, "self-attention with a causal mask: position i sees "
          "positions 0..i only"),
    Model("identity", False, "the identity map, output = input"),
    Model("running mean", False, "a running mean: output i is the mean of inputs 0..i"),
    Model("reversed running sum", True, "a reversed running sum: output i is the sum of "
          "inputs i..L-1, so it depends on every later input"),
    Model("peek ahead", True, "output i = input i + input i+1: each position peeks one step "
          "ahead"),
    Model("last only", True, "a running mean plus half of the LAST input at every position: "
          "the only leak comes from the last position"),
    Model("middle only", True, "a running mean, except that output 0 also adds half of "
          "input 1: the only leak is from position 1 into position 0"),
    Model("into penultimate", True, "the identity, except that output L-2 adds half of "
          "input L-1: the only leak is into the second-to-last position"),
    Model("tiny leak", True, "causal attention plus 0.001 x (the input sequence reversed): "
          "a leak of about 1e-3, small but real"),
    Model("renormalised", False, "causal attention that masks after the softmax and "
          "renormalises: causal on paper, but float32 rounding moves earlier outputs by about "
          "1e-7 when later inputs change"),
    Model("total minus suffix", False, "a running sum computed as (total - suffix sum + "
          "input): causal on paper, with float32 rounding noise of about 1e-7"),
)}
MODEL_NAMES = tuple(MODELS)  # BUILDERS[i] builds MODELS[MODEL_NAMES[i]]


def _detector_verdict(value, case: str) -> bool:
    """The learner's answer as a bool, or a message saying what a verdict must be."""
    if isinstance(value, bool):
        return value
    if isinstance(value, TensorRecord):
        if value.torch_dtype == "bool" and value.shape == ():
            return bool(value)
        if value.torch_dtype == "bool":
            fail(f"{DETECTOR} returned a bool tensor of shape {tuple(value.shape)} ({case}); "
                 "it should return ONE verdict, True or False. Reduce it with .any() (or "
                 "return bool(...)).")
        fail(f"{DETECTOR} returned a tensor of dtype torch.{value.torch_dtype} ({case}); it "
             "should return True or False (a Python bool, or a 0-d bool tensor such as "
             "(a != b).any()).")
    if value is None:
        fail(f"{DETECTOR} returned None ({case}). Did you forget `return False` at the end, "
             "after trying every position?")
    got = getattr(value, "type_name", type(value).__name__)
    raise CheckFailed(f"{DETECTOR} returned {value!r} of type {got} ({case}); it should return "
                      "True or False (a Python bool, or a 0-d bool tensor).")


def _diagnose(verdicts: dict[str, list[bool]]) -> str | None:
    """A message for the pattern of wrong verdicts, or None when every verdict is right."""
    def wrong(name: str) -> bool:
        return name in verdicts and any(v != MODELS[name].leaks for v in verdicts[name])

    all_verdicts = [v for vs in verdicts.values() for v in vs]
    if not any(wrong(n) for n in verdicts):
        return None
    if all(all_verdicts):
        return ("It says every model leaks, even the identity map (output = input) and causal "
                "attention. Do you compare the whole output, or the last position? The "
                "outputs at the positions you changed are allowed to change. Keep x[:, :t], "
                "change only x[:, t:], and compare only out[:, :t]; return True only if those "
                "moved, for some t.")
    if not any(all_verdicts):
        return ("It never detects a leak, not even in self-attention without a mask, where "
                "every position sees the whole sequence. Change the later inputs by a real "
                "amount (draw new random values for x[:, t:]) and compare the earlier outputs "
                "with a small tolerance.")
    if wrong("identity"):
        return ("It says the identity map (output = input) leaks. Only the outputs BEFORE the "
                "changed positions have to stay the same: if you change x[:, t:], compare "
                "out[:, :t], not the whole output (the changed positions' own outputs are "
                "allowed to change).")
    if wrong("causal attention") or wrong("running mean"):
        return ("It says causal models leak (causal attention, or a running mean), whose later "
                "outputs depend on EARLIER inputs, which is allowed. Change the later inputs "
                "(x[:, t:]) and check the earlier outputs (out[:, :t]), not the other way "
                "round.")
    if wrong("renormalised") or wrong("total minus suffix"):
        return ("It says a model that is causal on paper leaks, because float32 rounding moves "
                "its earlier outputs by about 1e-7 when later inputs change. Exact equality "
                "(==, torch.equal) counts rounding noise as a leak, and so can allclose's "
                "default atol=1e-8 for values near 0. Compare with a tolerance, e.g. "
                "torch.allclose(new, old, atol=1e-5).")
    if wrong("tiny leak"):
        return ("It misses a small but real leak (about 1e-3): causal attention plus 0.001 x "
                "the reversed input. Your tolerance is too loose, or your change to the later "
                "inputs too small. Draw new random values for the later positions and compare "
                "with a tolerance well below 1e-3, e.g. atol=1e-5.")
    if wrong("middle only"):
        return ("It misses a model whose only leak is from position 1 into position 0. Do you "
                "change only the LAST input? Any later position can leak into any earlier "
                "one: for every split point t, change x[:, t:] and compare out[:, :t].")
    if wrong("last only"):
        return ("It misses a model whose only leak comes from the LAST position. Does your "
                "loop stop one position early? Make sure the last input is changed too: for "
                "t in range(1, L), change x[:, t:] (which includes position L-1).")
    if wrong("into penultimate"):
        return ("It misses a model whose only leak is into the second-to-last position (from "
                "the last input). Do you compare only the first output(s)? Every position "
                "before the changed ones must be compared: all of out[:, :t], for every t up "
                "to L - 1.")
    return None


def _compare_leaks(hidden: bool):
    def compare(rec: dict) -> None:
        runs = panel(hidden)
        said: list[bool] = []
        for (number, L, d, _), run in zip(runs, rec["runs"], strict=True):
            case = f"model: {MODEL_NAMES[number]}, L={L}, d_model={d}"
            said.append(_detector_verdict(check_outcome(run["out"], DETECTOR, case), case))
        verdicts: dict[str, list[bool]] = {}
        for (number, _, _, _), verdict in zip(runs, said, strict=True):
            verdicts.setdefault(MODEL_NAMES[number], []).append(verdict)
        message = _diagnose(verdicts)
        if message:
            fail(f"{DETECTOR} gets some models of the test panel wrong. {message}")
        for (number, L, d, _), verdict in zip(runs, said, strict=True):
            name = MODEL_NAMES[number]
            model = MODELS[name]
            if verdict != model.leaks:
                fail(f"{DETECTOR} says the model \"{name}\" (L={L}, d_model={d}) "
                     f"{'leaks' if verdict else 'does not leak'}, but it "
                     f"{'does' if model.leaks else 'does not'}: {model.about}.")
        for (name, _, _, _), run in zip(runs, rec["runs"], strict=True):
            if run["global"]:
                fail(f"{DETECTOR} draws from PyTorch's global random stream (model: {name}). "
                     "Draw every random input from the generator you are given: "
                     "torch.randn(..., generator=generator).")
    return compare


VERDICTS = {
    "causal_mask.values": ("causal_mask: (L, L) bool, True where j <= i", _compare_causal(False)),
    "causal_mask.hidden": ("causal_mask: more lengths", _compare_causal(True)),
    "padding_mask.values": ("padding_mask: (B, 1, 1, max_len) bool, True on real tokens",
                            _compare_padding(False)),
    "padding_mask.hidden": ("padding_mask: lengths as a tensor or tuple, empty and full rows",
                            _compare_padding(True)),
    "masked_attention.values": ("masked_attention: matches the reference with (B, 1, 1, Lk) "
                                "and (Lq, Lk) masks", _compare_masked(lambda: value_cases(False))),
    "masked_attention.hidden": ("masked_attention: causal, padding & causal, per-head and "
                                "cross-attention masks",
                                _compare_masked(lambda: value_cases(True))),
    "masked_attention.empty_rows": ("masked_attention: a query with no visible key gets zero "
                                    "weights and a zero output, never NaN",
                                    _compare_masked(lambda: empty_cases(False))),
    "masked_attention.empty_rows_hidden": ("masked_attention: every key masked",
                                           _compare_masked(lambda: empty_cases(True))),
    "masked_attention.gradients": ("masked_attention: gradients are finite and match the "
                                   "reference, fully masked rows included", _compare_grad),
    "masked_attention.properties": ("masked_attention: masked weights exactly 0, even against "
                                    "very large blocked scores", _compare_properties),
    "leaks_future.basic": ("leaks_future: right on attention with and without a causal mask, "
                           "the identity, running sums", _compare_leaks(False)),
    "leaks_future.panel": ("leaks_future: right on subtle leaks and on rounding noise, L and "
                           "d_model varied", _compare_leaks(True)),
}
