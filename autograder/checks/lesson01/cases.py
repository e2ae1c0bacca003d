"""Lesson 01's cases and record halves (run in the learner's kernel: no answers here)."""

from __future__ import annotations

import numpy as np

from .._core import Guard, call, stand_ins

# --------------------------------------------------------------------------- softmax


def stand_in_softmax(x, axis=-1, *args, **kwargs):
    """Known-good softmax for checks of ``attend`` (which calls the learner's): one mistake
    costs once. Forbidden in the softmax checks themselves."""
    if hasattr(x, "detach"):  # a tensor
        z = x - x.amax(dim=axis, keepdim=True)
        return z.exp() / z.exp().sum(dim=axis, keepdim=True)
    z = np.asarray(x) - np.max(x, axis=axis, keepdims=True)
    return np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)


def softmax_guard() -> Guard:
    return Guard(["softmax"], [("the grader's stand-in softmax", stand_in_softmax)],
                 course=["softmax"])


def softmax_cases(hidden: bool) -> list[tuple[str, np.ndarray, int]]:
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


def record_softmax(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, x.copy(), axis=axis, guard=softmax_guard())
                for desc, x, axis in softmax_cases(hidden)}
    return record


def stable_cases() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(102)
    return [
        ("scores near 1000", np.array([1000.0, 1001.0, 1002.0])),
        ("scores near -1000", np.array([-1000.0, -1001.0, -1003.0])),
        ("a (2, 6) matrix scaled by 500", rng.normal(size=(2, 6)) * 500),
        ("rows near 1000 and near -1000", np.array([[1000.0, 1001.0, 1002.0],
                                                    [-1000.0, -1001.0, -1003.0]])),
    ]


def record_stable(fn) -> dict:
    return {desc: call(fn, x.copy(), guard=softmax_guard()) for desc, x in stable_cases()}


# --------------------------------------------------------------------------- attend


def attend_guard() -> Guard:
    return Guard(["attention"], course=["attend"])


def attend_cases(hidden: bool) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
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


def record_attend(hidden: bool):
    def record(fn) -> dict:
        with stand_ins(fn, {"softmax": stand_in_softmax}):
            return {desc: call(fn, q.copy(), K.copy(), V.copy(), guard=attend_guard())
                    for desc, q, K, V in attend_cases(hidden)}
    return record


def property_case():
    """A query aimed squarely at key 2, and a shuffle of the (key, value) pairs."""
    rng = np.random.default_rng(7112)
    K, V = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    perm = rng.permutation(6)
    return K[2] * 8.0, K, V, perm


def record_attend_properties(fn) -> dict:
    """Retrieval properties: a matching key wins; shuffling the memory changes nothing."""
    q, K, V, perm = property_case()
    with stand_ins(fn, {"softmax": stand_in_softmax}):
        return {"sharp": call(fn, q, K, V, guard=attend_guard()),
                "permuted": call(fn, q, K[perm].copy(), V[perm].copy(), guard=attend_guard())}


# --------------------------------------------------------------------------- fill in the blanks

# The blanks by name only: their accepted answers are in verdicts.py.
BLANK_NAMES = ("blank_projection", "blank_normaliser")


def record_blanks(answers: dict) -> dict:
    return {name: (answers.get(name) if isinstance(answers.get(name), str)
                   else repr(answers.get(name))) for name in BLANK_NAMES} | {
        "_types": {name: type(answers[name]).__name__ if name in answers else None
                   for name in BLANK_NAMES}}


RECORDS = {
    "softmax.values": record_softmax(False),
    "softmax.stable": record_stable,
    "softmax.hidden": record_softmax(True),
    "attend.values": record_attend(False),
    "attend.hidden": record_attend(True),
    "attend.properties": record_attend_properties,
    "blanks.format": record_blanks,
    "blanks.answers": record_blanks,
}
