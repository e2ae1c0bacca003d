"""Lesson 01's checks against a catalogue of realistic wrong answers.

Every wrong answer below is something a learner plausibly writes for `softmax`, `attend` or the
fill-in-the-blanks. Each must FAIL the check it breaks, with the message written for that
mistake; an independent correct implementation must pass every check id of the lesson.
"""


from __future__ import annotations

import math

import numpy as np
import scipy.special
import torch
import torch.nn.functional as F

from attnlab import attend as course_attend
from attnlab import softmax as s  # a learner importing the course's softmax under an alias
from autograder.checks import REGISTRY

from .wrong_answers import fails, passes, row_test

LESSON01_IDS = ("softmax.values", "softmax.stable", "softmax.hidden", "attend.values",
                "attend.hidden", "attend.properties", "blanks.format", "blanks.answers")
SOFTMAX_IDS = LESSON01_IDS[:3]
ATTEND_IDS = LESSON01_IDS[3:6]


# ------------------------------------------------------------------ a correct, independent answer


def good_softmax(x, axis=-1):
    """Shift by the max along `axis`, exponentiate, divide by the sum along `axis`."""
    shifted = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / np.sum(e, axis=axis, keepdims=True)


def good_attend(query, keys, values):
    weights = good_softmax(keys @ query)
    return weights @ values, weights


GOOD_BLANKS = {"blank_projection": "Value", "blank_normaliser": "softmax"}


# ------------------------------------------------------------------------ wrong softmaxes


def softmax_no_shift(x, axis=-1):
    e = np.exp(x)  # overflows for scores near 1000
    return e / e.sum(axis=axis, keepdims=True)


def softmax_global_shift(x, axis=-1):
    e = np.exp(x - x.max())  # one max for the whole array: rows far below it underflow to 0
    return e / e.sum(axis=axis, keepdims=True)


def softmax_ignores_axis(x, axis=-1):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_axis0(x, axis=-1):
    e = np.exp(x - x.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_no_keepdims(x, axis=-1):
    e = np.exp(x - x.max(axis=axis))
    return e / e.sum(axis=axis)


def softmax_global_normaliser(x, axis=-1):
    e = np.exp(x - x.max())
    return e / e.sum()


def softmax_axis_max_global_sum(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum()


def softmax_in_place(x, axis=-1):
    x -= x.max(axis=axis, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=axis, keepdims=True)


def softmax_no_exp(x, axis=-1):
    return x / x.sum(axis=axis, keepdims=True)


def softmax_no_exp_shifted(x, axis=-1):
    z = x - x.max(axis=axis, keepdims=True)
    return z / z.sum(axis=axis, keepdims=True)


def softmax_only_exp(x, axis=-1):
    return np.exp(x)


def softmax_only_exp_shifted(x, axis=-1):
    return np.exp(x - x.max(axis=axis, keepdims=True))


def softmax_no_return(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    e / e.sum(axis=axis, keepdims=True)  # noqa: B018  (the missing `return`)


def softmax_python_list(x, axis=-1):
    total = sum(math.exp(v) for v in x)
    return [math.exp(v) / total for v in x]


def softmax_scipy(x, axis=-1):
    return scipy.special.softmax(x, axis=axis)


def softmax_course_alias(x, axis=-1):
    return s(x, axis)


def softmax_torch(x, axis=-1):
    return torch.softmax(torch.from_numpy(x), dim=axis).numpy()


def softmax_torch_method(x, axis=-1):
    return torch.from_numpy(x).softmax(axis).numpy()


def softmax_torch_by_hand(x, axis=-1):
    """Correct, in torch, from exp/amax/sum only: allowed."""
    t = torch.from_numpy(x)
    e = torch.exp(t - t.amax(dim=axis, keepdim=True))
    return (e / e.sum(dim=axis, keepdim=True)).numpy()


BUILT_IN = "an existing softmax"
COURSE_OWN = "the course's own softmax"
NOT_FINITE = r"contains (NaN|inf) \(scores near 1000\).*Subtract the largest score"

WRONG_SOFTMAX = [
    (softmax_no_shift, "softmax.stable", NOT_FINITE),
    (softmax_only_exp, "softmax.stable", NOT_FINITE),
    (softmax_ignores_axis, "softmax.values",
     r"\(a \(3, 5\) matrix, axis=0\)\. It matches a softmax over axis 1 instead of axis 0"),
    (softmax_ignores_axis, "softmax.hidden", "over axis 1 instead of axis 0"),
    (softmax_axis0, "softmax.values",
     r"\(a \(3, 5\) matrix, axis=-1\)\. It matches a softmax over axis 0 instead of axis -1"),
    (softmax_no_keepdims, "softmax.values", "raised ValueError: operands could not be broadcast"),
    (softmax_global_normaliser, "softmax.values", "normalised over the whole array"),
    (softmax_global_normaliser, "softmax.hidden", "normalised over the whole array"),
    (softmax_in_place, "softmax.values", r"changed its input \(argument 1\) in place"),
    (softmax_in_place, "softmax.stable", r"changed its input \(argument 1\) in place"),
    (softmax_in_place, "softmax.hidden", r"changed its input \(argument 1\) in place"),
    (softmax_no_exp, "softmax.values", "no exponential was taken"),
    (softmax_only_exp, "softmax.values", "never divided by their sum"),
    (softmax_no_return, "softmax.values", r"returned None .*Did you forget `return`\?"),
    (softmax_python_list, "softmax.values", "returned a list of 4 items"),
    (softmax_python_list, "softmax.stable", "raised OverflowError"),
    (softmax_axis_max_global_sum, "softmax.values", "normalised over the whole array"),
    *[(fn, check_id, BUILT_IN) for fn in (softmax_scipy, softmax_torch, softmax_torch_method)
      for check_id in SOFTMAX_IDS],
    *[(softmax_course_alias, check_id, COURSE_OWN) for check_id in SOFTMAX_IDS],
]


# ------------------------------------------------------------------------ wrong attends


def attend_scaled(query, keys, values):
    weights = good_softmax(keys @ query / np.sqrt(query.shape[-1]))
    return weights @ values, weights


def attend_no_softmax(query, keys, values):
    weights = keys @ query
    return weights @ values, weights


def attend_output_from_keys(query, keys, values):
    weights = good_softmax(keys @ query)
    return weights @ keys, weights


def attend_swapped(query, keys, values):
    weights = good_softmax(keys @ query)
    return weights, weights @ values


def attend_plain_average(query, keys, values):
    weights = good_softmax(keys @ query)
    return values.mean(axis=0), weights


def attend_only_output(query, keys, values):
    return good_softmax(keys @ query) @ values


def attend_raw_score_output(query, keys, values):
    scores = keys @ query
    return scores @ values, good_softmax(scores)


def attend_query_times_keys(query, keys, values):
    weights = good_softmax(query @ keys)  # shapes do not line up: (d,) @ (n, d)
    return weights @ values, weights


def attend_negated_scores(query, keys, values):
    weights = good_softmax(-(keys @ query))  # scores read as distances
    return weights @ values, weights


def attend_position_bias(query, keys, values):
    weights = good_softmax(keys @ query + np.arange(len(keys)))  # depends on key order
    return weights @ values, weights


def attend_hard_lookup(query, keys, values):
    weights = good_softmax(keys @ query)
    return values[np.argmax(weights)], weights  # the dictionary lookup of section 1


def attend_course(query, keys, values):
    return course_attend(query, keys, values)


def attend_torch_sdpa(query, keys, values):
    def as_tensor(a):
        return torch.from_numpy(np.atleast_2d(a))

    output = F.scaled_dot_product_attention(as_tensor(query), as_tensor(keys),
                                            as_tensor(values), scale=1.0)
    return output[0].numpy(), good_softmax(keys @ query)


WRONG_ATTEND = [
    (attend_scaled, "attend.values", r"divided by sqrt\(d\)\. Scaling comes in lesson 02"),
    (attend_scaled, "attend.hidden", r"divided by sqrt\(d\)"),
    (attend_no_softmax, "attend.values", "Its weights are the raw scores"),
    (attend_output_from_keys, "attend.values",
     r"Your output has shape \(2,\) but should have shape \(3,\).*weighted average of the "
     r"value rows"),
    (attend_swapped, "attend.properties", r"has shape \(3,\) but should have shape \(6,\)"),
    (attend_plain_average, "attend.values", "plain average of the values"),
    (attend_plain_average, "attend.hidden", "plain average of the values"),
    (attend_only_output, "attend.values",
     r"should return a pair `\(output, weights\)`, but returned a single array of shape \(3,\)"),
    (attend_only_output, "attend.properties", "should return a pair"),
    (attend_raw_score_output, "attend.values", "weighted by the raw scores"),
    (attend_query_times_keys, "attend.values", "Your attend raised ValueError: matmul"),
    (attend_negated_scores, "attend.properties",
     "should give key 2 the largest weight, but yours gives it to key 5"),
    (attend_position_bias, "attend.properties", "Does your code depend on the order of the keys"),
    *[(attend_course, check_id, "calls the course's own attend") for check_id in ATTEND_IDS],
]


# ------------------------------------------------------------------------ blanks


WRONG_BLANKS = [
    ({"blank_projection": "key", "blank_normaliser": "softmax"}, "blanks.answers",
     r"`blank_projection` = 'key' is not the word we are looking for"),
    ({"blank_projection": "value", "blank_normaliser": "sigmoid"}, "blanks.answers",
     r"`blank_normaliser` = 'sigmoid' is not the word"),
    ({"blank_projection": ["value"], "blank_normaliser": "softmax"}, "blanks.format",
     r"`blank_projection` should be a string in quotes.*\(it is list\)"),
    ({"blank_projection": 3, "blank_normaliser": "softmax"}, "blanks.answers",
     r"should be a string in quotes.*\(it is int\)"),
    ({"blank_projection": "value", "blank_normaliser": ""}, "blanks.format",
     "`blank_normaliser` is empty"),
    ({"blank_projection": "   ", "blank_normaliser": "softmax"}, "blanks.answers",
     "`blank_projection` is empty"),
]


# ------------------------------------------------------------------------ one mistake, once

# A learner's notebook: attend calls their own softmax, which forgot the exponential.
NOTEBOOK: dict = {"np": np}
exec("def softmax(x, axis=-1):\n"
     "    return x / x.sum(axis=axis, keepdims=True)\n"
     "def attend(query, keys, values):\n"
     "    weights = softmax(keys @ query)\n"
     "    return weights @ values, weights\n"
     "def attend_stealing(query, keys, values):\n"
     "    from autograder.checks.lesson01.cases import stand_in_softmax\n"
     "    weights = stand_in_softmax(keys @ query)\n"
     "    return weights @ values, weights\n"
     "def softmax_stealing(x, axis=-1):\n"
     "    from autograder.checks.lesson01.cases import stand_in_softmax\n"
     "    return stand_in_softmax(x, axis)\n", NOTEBOOK)

ISOLATION = [
    fails(NOTEBOOK["softmax"], "softmax.values", "no exponential was taken", name="own-softmax"),
    # attend is judged on its own: the wrong softmax it calls cost the softmax points only
    *passes(NOTEBOOK["attend"], *ATTEND_IDS, name="attend-over-own-wrong-softmax"),
    *passes(NOTEBOOK["attend_stealing"], *ATTEND_IDS, name="attend-over-stand-in"),
    *[fails(NOTEBOOK["softmax_stealing"], check_id, "the grader's stand-in softmax",
            name="softmax-is-the-stand-in") for check_id in SOFTMAX_IDS],
]


# ------------------------------------------------------------------------ the rows

TOLERANT_BLANKS = [("  VALUE ", "soft-max"), ("Values", "Soft Max."), ("value", "'softmax'"),
                   ("v", "Softmax()")]

ROWS = [
    *passes(good_softmax, *SOFTMAX_IDS),
    *passes(good_attend, *ATTEND_IDS),
    *passes(GOOD_BLANKS, "blanks.format", "blanks.answers", name="good-blanks"),
    # partial credit: each mistake costs only the point it breaks
    *passes(softmax_no_shift, "softmax.values", "softmax.hidden"),
    *passes(softmax_torch_by_hand, *SOFTMAX_IDS),  # torch's exp/amax/sum are allowed
    *passes(attend_scaled, "attend.properties"),
    *passes({"blank_projection": "key", "blank_normaliser": "softmax"}, "blanks.format",
            name="wrong-word-keeps-format"),
    *[row for p, n in TOLERANT_BLANKS for row in passes(
        {"blank_projection": p, "blank_normaliser": n}, "blanks.format", "blanks.answers",
        name=f"tolerant-{p.strip()}-{n}")],
    *[fails(fn, check_id, match) for fn, check_id, match in WRONG_SOFTMAX],
    fails(softmax_no_keepdims, "softmax.values", "keepdims"),
    fails(softmax_no_exp_shifted, "softmax.values", "no exponential was taken"),
    fails(softmax_only_exp_shifted, "softmax.values", "never divided by their sum"),
    fails(softmax_global_shift, "softmax.stable", "contains NaN"),
    *[fails(fn, check_id, match) for fn, check_id, match in WRONG_ATTEND],
    fails(attend_swapped, "attend.values", r"returned \(weights, output\)"),
    fails(attend_hard_lookup, "attend.values", "hard lookup"),
    fails(attend_torch_sdpa, "attend.values", "PyTorch's built-in attention"),
    *[fails(answers, check_id, match, name=f"{answers.get('blank_projection')!r}-"
            f"{answers.get('blank_normaliser')!r}") for answers, check_id, match in WRONG_BLANKS],
    fails({"blank_normaliser": "softmax"}, "blanks.format", "not defined", name="missing-blank"),
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_lesson01_registers_its_check_ids():
    """Are all eight of lesson 01's check ids registered, and no others of its exercises?"""
    assert {i for i in REGISTRY if i.split(".")[0] in ("softmax", "attend", "blanks")} == \
        set(LESSON01_IDS)

