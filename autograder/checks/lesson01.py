"""Checks for lesson 01, attention as retrieval: ``softmax``, ``attend`` and the blanks."""

from __future__ import annotations

import re

import numpy as np

from autograder.reference import attend as ref_attend
from autograder.reference import softmax as ref_softmax

from ._core import (
    Guard,
    as_array,
    call,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    register,
    unpack_pair,
)

# --------------------------------------------------------------------------- softmax


def _softmax_guard() -> Guard:
    return Guard(["softmax"], [("the course's own softmax (attnlab / autograder.reference)",
                                ref_softmax)])


def _softmax_cases(hidden: bool) -> list[tuple[str, np.ndarray, int]]:
    """(description, x, axis): fixed seeds, nothing stored."""
    rng = np.random.default_rng(101 if not hidden else 7101)
    cases = [
        ("a vector of 4 scores", np.array([1.0, 2.0, 3.0, 4.0]), -1),
        ("a (3, 5) matrix, axis=-1", rng.normal(size=(3, 5)), -1),
        ("a (3, 5) matrix, axis=0", rng.normal(size=(3, 5)), 0),
    ]
    if hidden:
        for i, shape in enumerate([(2, 3, 4), (7,), (1, 1), (4, 1, 6), (2, 9)]):
            axis = [-1, 0, 1, -2, 1][i]
            cases.append((f"a {shape} array, axis={axis}", rng.normal(size=shape) * 3, axis))
        cases.append(("a constant row", np.full((2, 4), 5.0), -1))
        cases.append(("float32 input", rng.normal(size=(3, 3)).astype(np.float32), -1))
    return cases


def _softmax_mistakes(x: np.ndarray, axis: int) -> dict[str, np.ndarray]:
    other = 0 if (axis % x.ndim) != 0 else x.ndim - 1
    z = x - x.max(axis=axis, keepdims=True)
    no_exp = "It looks like no exponential was taken: the scores were divided by their sum " \
             "directly. Apply np.exp first."
    no_sum = "The exponentials are right but were never divided by their sum, so the weights " \
             "do not sum to one."
    with np.errstate(all="ignore"):
        mistakes = {
            no_exp: x / x.sum(axis=axis, keepdims=True),
            no_exp + " ": z / z.sum(axis=axis, keepdims=True),
            no_sum: np.exp(x),
            no_sum + " ": np.exp(z),
            "It looks like you normalised over the whole array instead of one axis: use "
            "`sum(axis=axis, keepdims=True)`.": np.exp(x) / np.exp(x).sum(),
        }
    if x.ndim > 1:
        mistakes[f"It matches a softmax over axis {other} instead of axis {axis}. Use the "
                 "`axis` argument in both the max and the sum."] = ref_softmax(x, axis=other)
    return mistakes


def _record_softmax(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, x.copy(), axis=axis, guard=_softmax_guard())
                for desc, x, axis in _softmax_cases(hidden)}
    return record


def _compare_softmax(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, x, axis in _softmax_cases(hidden):
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
                expect_close(got, want, "Your softmax", desc, _softmax_mistakes(x, axis),
                             hint=f"Along axis {axis} your weights sum to "
                                  f"{np.round(sums.ravel()[:3], 3).tolist()}..., not 1.")
            if (got < 0).any():
                fail(f"Your softmax gives negative weights ({desc}); exponentials are never "
                     "negative.")
            expect_close(got, want, "Your softmax", desc, _softmax_mistakes(x, axis))
    return compare


def _stable_cases() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(102)
    return [
        ("scores near 1000", np.array([1000.0, 1001.0, 1002.0])),
        ("scores near -1000", np.array([-1000.0, -1001.0, -1003.0])),
        ("a (2, 6) matrix scaled by 500", rng.normal(size=(2, 6)) * 500),
        ("rows near 1000 and near -1000", np.array([[1000.0, 1001.0, 1002.0],
                                                    [-1000.0, -1001.0, -1003.0]])),
    ]


def _record_stable(fn) -> dict:
    return {desc: call(fn, x.copy(), guard=_softmax_guard()) for desc, x in _stable_cases()}


def _compare_stable(rec: dict) -> None:
    for desc, x in _stable_cases():
        got = as_array(check_outcome(rec[desc], "Your softmax", desc), "Your softmax", desc)
        expect_shape(got, x.shape, "Your softmax's output", desc)
        expect_finite(got, "Your softmax's output", desc,
                      hint="np.exp(1000) overflows to inf. Subtract the largest score "
                           "of each row (x.max(axis=axis, keepdims=True)) before "
                           "exponentiating; softmax does not change when a constant is "
                           "subtracted.")
        expect_close(got, ref_softmax(x), "Your softmax", desc)


register("softmax.values", "softmax: shapes, sums and values match the reference",
         _record_softmax(False), _compare_softmax(False))
register("softmax.stable", "softmax: large scores stay finite", _record_stable, _compare_stable)
register("softmax.hidden", "softmax: more shapes and axes", _record_softmax(True),
         _compare_softmax(True))


# --------------------------------------------------------------------------- attend


def _attend_guard() -> Guard:
    return Guard(["attention"],
                 [("the course's own attend (attnlab / autograder.reference)", ref_attend)])


def _attend_cases(hidden: bool) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(111 if not hidden else 7111)
    keys = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    values = np.array([[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]])
    cases = [("query (1, 0) over 3 keys", np.array([1.0, 0.0]), keys, values),
             ("a random query, 5 keys of width 4", rng.normal(size=4),
              rng.normal(size=(5, 4)), rng.normal(size=(5, 4)))]
    if hidden:
        for n, d, dv in [(1, 3, 2), (8, 16, 5), (6, 2, 7), (12, 8, 8)]:
            cases.append((f"{n} keys of width {d}, values of width {dv}", rng.normal(size=d),
                          rng.normal(size=(n, d)), rng.normal(size=(n, dv))))
    return cases


def _attend_mistakes(q, K, V) -> dict[str, np.ndarray]:
    scores = K @ q
    w = ref_softmax(scores)
    scaled = ref_softmax(scores / np.sqrt(q.shape[-1]))
    return {
        "Its weights are the softmax of the scores divided by sqrt(d). Scaling comes in "
        "lesson 02: here the scores are the raw dot products.": scaled,
        "Its weights are the raw scores: pass them through your softmax so they are "
        "positive and sum to one.": scores,
        "It looks like the output was built from the keys, not the values: the output is "
        "`weights @ values`.": w @ K if K.shape == V.shape else None,
        "It looks like the output was not weighted: it is the plain average of the values.":
            V.mean(axis=0),
        "It looks like the output sums the values weighted by the raw scores; use the "
        "softmax weights.": scores @ V,
        "It looks like a hard lookup: the output is the single best value row. Attention "
        "returns the weighted average of all of them, `weights @ values`.": V[np.argmax(w)],
    }


def _record_attend(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, q.copy(), K.copy(), V.copy(), guard=_attend_guard())
                for desc, q, K, V in _attend_cases(hidden)}
    return record


def _compare_attend(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, q, K, V in _attend_cases(hidden):
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
            if not np.isclose(w.sum(), 1.0, atol=1e-5):
                mistakes = _attend_mistakes(q, K, V)
                expect_close(w, want_w, "Your weight vector", desc, {
                    k: v for k, v in mistakes.items() if v is not None and v.shape == w.shape},
                    hint=f"They sum to {w.sum():.3g}, not 1.")
            expect_close(w, want_w, "Your weight vector", desc, {
                k: v for k, v in _attend_mistakes(q, K, V).items()
                if v is not None and v.shape == w.shape})
            expect_shape(out, want_out.shape, "Your output", desc,
                         hint="The output is a weighted average of the value rows: shape "
                              "(d_v,).")
            expect_close(out, want_out, "Your output", desc, {
                k: v for k, v in _attend_mistakes(q, K, V).items()
                if v is not None and v.shape == out.shape})
    return compare


def _property_case():
    """A query aimed squarely at key 2, and a shuffle of the (key, value) pairs."""
    rng = np.random.default_rng(7112)
    K, V = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    perm = rng.permutation(6)
    return K[2] * 8.0, K, V, perm


def _record_attend_properties(fn) -> dict:
    """Retrieval properties: a matching key wins; shuffling the memory changes nothing."""
    q, K, V, perm = _property_case()
    return {"sharp": call(fn, q, K, V, guard=_attend_guard()),
            "permuted": call(fn, q, K[perm].copy(), V[perm].copy(), guard=_attend_guard())}


def _compare_attend_properties(rec: dict) -> None:
    perm = _property_case()[3]
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


register("attend.values", "attend: output and weights match the reference",
         _record_attend(False), _compare_attend(False))
register("attend.hidden", "attend: more sizes and widths",
         _record_attend(True), _compare_attend(True))
register("attend.properties", "attend: behaves like retrieval",
         _record_attend_properties, _compare_attend_properties)


# --------------------------------------------------------------------------- fill in the blanks

BLANKS = {
    "blank_projection": ("value", "values", "v", "value vector", "value vectors",
                         "value projection"),
    "blank_normaliser": ("softmax", "soft max", "softmax function", "soft-max",
                         "softmax normalisation", "softmax normalization"),
}


def normalise_answer(text: str) -> str:
    """Case, spacing, quotes and trailing punctuation do not matter."""
    text = re.sub(r"[\"'`.,;:!?()\[\]]", " ", str(text).lower())
    return " ".join(text.replace("-", " - ").split()).replace(" - ", "-")


# The record half names the blanks without their accepted answers: under `grade` it runs in
# the learner's kernel, where BLANKS must not be readable.
BLANK_NAMES = ("blank_projection", "blank_normaliser")


def _record_blanks(answers: dict) -> dict:
    return {name: (answers.get(name) if isinstance(answers.get(name), str)
                   else repr(answers.get(name))) for name in BLANK_NAMES} | {
        "_types": {name: type(answers[name]).__name__ if name in answers else None
                   for name in BLANK_NAMES}}


def _compare_blanks_format(rec: dict) -> None:
    for name in BLANK_NAMES:
        if rec["_types"][name] is None:
            fail(f"`{name}` is not defined yet: write `{name} = \"your answer\"` in the "
                 "answer cell and run it.")
        if rec["_types"][name] != "str":
            fail(f"`{name}` should be a string in quotes, e.g. {name} = \"word\" (it is "
                 f"{rec['_types'][name]}).")
        if not normalise_answer(rec[name]):
            fail(f"`{name}` is empty: write your answer between the quotes.")


def _compare_blanks_answers(rec: dict) -> None:
    _compare_blanks_format(rec)
    for name, accepted in BLANKS.items():
        if normalise_answer(rec[name]) not in {normalise_answer(a) for a in accepted}:
            fail(f"`{name}` = {rec[name]!r} is not the word we are looking for. Reread the "
                 "section above the question.")


register("blanks.format", "blanks: both answers are words in quotes", _record_blanks,
         _compare_blanks_format)
register("blanks.answers", "blanks: both answers are right", _record_blanks,
         _compare_blanks_answers)
