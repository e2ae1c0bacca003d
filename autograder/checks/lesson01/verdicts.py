"""Lesson 01's verdicts: reference oracles, known mistakes and messages (trusted side only)."""

from __future__ import annotations

import re

import numpy as np

from autograder.reference import attend as ref_attend
from autograder.reference import softmax as ref_softmax

from .._verdict import (
    Mistake,
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    unpack_pair,
)
from .cases import BLANK_NAMES, attend_cases, property_case, softmax_cases, stable_cases

# --------------------------------------------------------------------------- softmax


def softmax_mistakes(x: np.ndarray, axis: int) -> list[Mistake]:
    other = 0 if (axis % x.ndim) != 0 else x.ndim - 1
    z = x - x.max(axis=axis, keepdims=True)
    no_exp = "It looks like no exponential was taken: the scores were divided by their sum " \
             "directly. Apply np.exp first."
    no_sum = "The exponentials are right but were never divided by their sum, so the weights " \
             "do not sum to one."
    with np.errstate(all="ignore"):
        mistakes = [
            (no_exp, x / x.sum(axis=axis, keepdims=True)),
            (no_exp, z / z.sum(axis=axis, keepdims=True)),
            (no_sum, np.exp(x)),
            (no_sum, np.exp(z)),
            ("It looks like you normalised over the whole array instead of one axis: use "
             "`sum(axis=axis, keepdims=True)`.", np.exp(x) / np.exp(x).sum()),
        ]
    if x.ndim > 1:
        mistakes.append((f"It matches a softmax over axis {other} instead of axis {axis}. Use "
                         "the `axis` argument in both the max and the sum.",
                         ref_softmax(x, axis=other)))
    return mistakes


def compare_softmax(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, x, axis in softmax_cases(hidden):
            got = as_array(check_outcome(rec[desc], "Your softmax", desc), "Your softmax", desc)
            want = ref_softmax(x, axis=axis)
            expect_shape(got, want.shape, "Your softmax's output", desc,
                         hint="A softmax keeps the shape of its input.")
            expect_finite(got, "Your softmax's output", desc)
            sums = got.sum(axis=axis)
            if x.ndim > 1 and x.size > x.shape[axis] and np.isclose(got.sum(), 1.0):
                fail(f"Your softmax's weights sum to one over the whole array ({desc}): it "
                     f"looks like you normalised over the whole array, not along axis {axis}. "
                     "Use `sum(axis=axis, keepdims=True)`.")
            if not np.allclose(sums, 1.0, atol=1e-5):
                expect_close(got, want, "Your softmax", desc, softmax_mistakes(x, axis),
                             hint=f"Along axis {axis} your weights sum to "
                                  f"{np.round(sums.ravel()[:3], 3).tolist()}..., not 1.")
            if (got < 0).any():
                fail(f"Your softmax gives negative weights ({desc}); exponentials are never "
                     "negative.")
            expect_close(got, want, "Your softmax", desc, softmax_mistakes(x, axis))
    return compare


def compare_stable(rec: dict) -> None:
    for desc, x in stable_cases():
        got = as_array(check_outcome(rec[desc], "Your softmax", desc), "Your softmax", desc)
        expect_shape(got, x.shape, "Your softmax's output", desc)
        expect_finite(got, "Your softmax's output", desc,
                      hint="np.exp(1000) overflows to inf. Subtract the largest score "
                           "of each row (x.max(axis=axis, keepdims=True)) before "
                           "exponentiating; softmax does not change when a constant is "
                           "subtracted.")
        expect_close(got, ref_softmax(x), "Your softmax", desc)


# --------------------------------------------------------------------------- attend


def attend_mistakes(q, K, V) -> list[Mistake]:
    scores = K @ q
    w = ref_softmax(scores)
    scaled = ref_softmax(scores / np.sqrt(q.shape[-1]))
    return [
        ("Its weights are the softmax of the scores divided by sqrt(d). Scaling comes in "
         "lesson 02: here the scores are the raw dot products.", scaled),
        ("Its weights are the raw scores: pass them through your softmax so they are "
         "positive and sum to one.", scores),
        ("It looks like the output was built from the keys, not the values: the output is "
         "`weights @ values`.", w @ K if K.shape == V.shape else None),
        ("It looks like the output was not weighted: it is the plain average of the values.",
         V.mean(axis=0)),
        ("It looks like the output sums the values weighted by the raw scores; use the "
         "softmax weights.", scores @ V),
        ("It looks like a hard lookup: the output is the single best value row. Attention "
         "returns the weighted average of all of them, `weights @ values`.", V[np.argmax(w)]),
    ]


def _shaped_like(got: np.ndarray, mistakes: list[Mistake]) -> list[Mistake]:
    return [(m, v) for m, v in mistakes if v is not None and v.shape == got.shape]


def compare_attend(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, q, K, V in attend_cases(hidden):
            value = check_outcome(rec[desc], "Your attend", desc)
            out, w = unpack_pair(value, "Your attend", case=desc)
            want_out, want_w = ref_attend(q, K, V)
            if w.shape == want_out.shape and out.shape == want_w.shape and \
                    close(out, want_w) and close(w, want_out):
                fail("It looks like you returned (weights, output): return them as "
                     "`(output, weights)`, output first.")
            expect_shape(w, want_w.shape, "Your weight vector", desc,
                         hint="There is one weight per key: shape (n_keys,).")
            expect_finite(w, "Your weight vector", desc,
                          hint="Large scores overflow np.exp: use your stable softmax.")
            mistakes = attend_mistakes(q, K, V)
            if not np.isclose(w.sum(), 1.0, atol=1e-5):
                expect_close(w, want_w, "Your weight vector", desc, _shaped_like(w, mistakes),
                             hint=f"They sum to {w.sum():.3g}, not 1.")
            expect_close(w, want_w, "Your weight vector", desc, _shaped_like(w, mistakes))
            expect_shape(out, want_out.shape, "Your output", desc,
                         hint="The output is a weighted average of the value rows: shape "
                              "(d_v,).")
            expect_close(out, want_out, "Your output", desc, _shaped_like(out, mistakes))
    return compare


def compare_attend_properties(rec: dict) -> None:
    perm = property_case()[3]
    out, w = unpack_pair(check_outcome(rec["sharp"], "Your attend"), "Your attend")
    out_p, w_p = unpack_pair(check_outcome(rec["permuted"], "Your attend"), "Your attend")
    expect_shape(w, (6,), "Your weight vector")
    if int(np.argmax(w)) != 2:
        fail("A query that points straight at key 2 should give key 2 the largest weight, but "
             f"yours gives it to key {int(np.argmax(w))}.")
    expect_shape(w_p, (6,), "Your weight vector")
    if not close(w_p, w[perm]) or not close(out_p, out):
        fail("Shuffling the (key, value) pairs together should shuffle the weights the same "
             "way and leave the output unchanged; yours does not. Does your code depend on the "
             "order of the keys?")


# --------------------------------------------------------------------------- fill in the blanks

BLANKS = {
    "blank_projection": ("value", "values", "v", "value vector", "value vectors",
                         "value projection"),
    "blank_normaliser": ("softmax", "soft max", "softmax function", "soft-max",
                         "softmax normalisation", "softmax normalization"),
}
assert tuple(BLANKS) == BLANK_NAMES


def normalise_answer(text: str) -> str:
    """Case, spacing, quotes and trailing punctuation do not matter."""
    text = re.sub(r"[\"'`.,;:!?()\[\]]", " ", str(text).lower())
    return " ".join(text.replace("-", " - ").split()).replace(" - ", "-")


def compare_blanks_format(rec: dict) -> None:
    for name in BLANK_NAMES:
        if rec["_types"][name] is None:
            fail(f"`{name}` is not defined yet: write `{name} = \"your answer\"` in the "
                 "answer cell and run it.")
        if rec["_types"][name] != "str":
            fail(f"`{name}` should be a string in quotes, e.g. {name} = \"word\" (it is "
                 f"{rec['_types'][name]}).")
        if not normalise_answer(rec[name]):
            fail(f"`{name}` is empty: write your answer between the quotes.")


def compare_blanks_answers(rec: dict) -> None:
    compare_blanks_format(rec)
    for name, accepted in BLANKS.items():
        if normalise_answer(rec[name]) not in {normalise_answer(a) for a in accepted}:
            fail(f"`{name}` = {rec[name]!r} is not the word we are looking for. Reread the "
                 "section above the question.")


VERDICTS = {
    "softmax.values": ("softmax: shapes, sums and values match the reference",
                       compare_softmax(False)),
    "softmax.stable": ("softmax: large scores stay finite", compare_stable),
    "softmax.hidden": ("softmax: more shapes and axes", compare_softmax(True)),
    "attend.values": ("attend: output and weights match the reference", compare_attend(False)),
    "attend.hidden": ("attend: more sizes and widths", compare_attend(True)),
    "attend.properties": ("attend: behaves like retrieval", compare_attend_properties),
    "blanks.format": ("blanks: both answers are words in quotes", compare_blanks_format),
    "blanks.answers": ("blanks: both answers are right", compare_blanks_answers),
}
