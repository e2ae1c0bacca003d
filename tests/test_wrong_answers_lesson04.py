"""Lesson 04's checks against realistic wrong answers: each must fail with its own message."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograder.checks import REGISTRY
from autograder.checks.lesson04.cases import BUILDERS, panel
from autograder.checks.lesson04.verdicts import MODEL_NAMES, MODELS
from autograder.reference import causal_mask as ref_causal
from autograder.reference import leaks_future as ref_leaks_future
from autograder.reference import masked_attention as ref_masked
from autograder.reference import padding_mask as ref_padding
from autograder.reference import scaled_dot_product_attention as ref_sdpa

from .wrong_answers import fails, passes, row_test

CAUSAL_IDS = ("causal_mask.values", "causal_mask.hidden")
PADDING_IDS = ("padding_mask.values", "padding_mask.hidden")
MASKED_IDS = ("masked_attention.values", "masked_attention.hidden", "masked_attention.empty_rows",
              "masked_attention.empty_rows_hidden", "masked_attention.gradients",
              "masked_attention.properties")
LEAK_IDS = ("leaks_future.basic", "leaks_future.panel")


def test_every_lesson04_check_is_exercised():
    """Does this file cover every check id lesson 04 registers?"""
    ours = {i for i in REGISTRY if i.split(".")[0] in
            ("causal_mask", "padding_mask", "masked_attention", "leaks_future")}
    assert ours == set(CAUSAL_IDS + PADDING_IDS + MASKED_IDS + LEAK_IDS)


# ----------------------------------------------------------------------------- causal_mask


def causal(L):
    """The solution notebook's logic, written out independently."""
    return torch.ones(L, L, dtype=torch.bool).tril()


def causal_arange(L):
    """Another correct way: compare positions."""
    i = torch.arange(L)
    return i[None, :] <= i[:, None]


def causal_triu(L):
    return torch.ones(L, L, dtype=torch.bool).triu()


def causal_blocked(L):
    return torch.ones(L, L, dtype=torch.bool).triu(1)


def causal_strict(L):
    return torch.ones(L, L, dtype=torch.bool).tril(-1)


def causal_float(L):
    return torch.ones(L, L).tril()


def causal_additive(L):
    return torch.zeros(L, L).masked_fill(~causal(L), float("-inf"))


def causal_int(L):
    return torch.ones(L, L, dtype=torch.int64).tril()


def causal_numpy(L):
    import numpy as np

    return np.tril(np.ones((L, L), dtype=bool))


def untouched_causal(L):
    raise NotImplementedError()


WRONG_CAUSAL = [
    (causal_triu, r"upper-triangular \(torch\.triu\)"),
    (causal_blocked, r"True = blocked"),
    (causal_strict, r"diagonal is False"),
    (causal_float, r"dtype torch\.float32.*should be torch\.bool"),
    (causal_additive, r"additive float mask"),
    (causal_int, r"dtype torch\.int64"),
    (causal_numpy, r"should return a torch tensor, but returned a numpy array"),
    (ref_causal, r"calls the course's own causal_mask"),
    (untouched_causal, r"not written yet"),
]


# ---------------------------------------------------------------------------- padding_mask


def padding(lengths, max_len):
    """The solution notebook's logic, written out independently."""
    lengths = torch.as_tensor(lengths)  # (B,)
    return (torch.arange(max_len)[None, :] < lengths[:, None])[:, None, None, :]


def padding_loop(lengths, max_len):
    """Another correct way: a Python loop over the sequences."""
    mask = torch.zeros(len(lengths), 1, 1, max_len, dtype=torch.bool)
    for b, n in enumerate(lengths):
        mask[b, ..., :int(n)] = True
    return mask


def padding_inverted(lengths, max_len):
    return ~padding(lengths, max_len)


def padding_flat(lengths, max_len):
    return padding(lengths, max_len)[:, 0, 0]  # (B, max_len)


def padding_le(lengths, max_len):
    lengths = torch.as_tensor(lengths)
    return (torch.arange(max_len)[None, :] <= lengths[:, None])[:, None, None, :]


def padding_from_one(lengths, max_len):
    lengths = torch.as_tensor(lengths)
    return (torch.arange(1, max_len + 1)[None, :] < lengths[:, None])[:, None, None, :]


def padding_float(lengths, max_len):
    return padding(lengths, max_len).float()


def padding_list_unfriendly(lengths, max_len):
    return (torch.arange(max_len)[None, :] < lengths[:, None])[:, None, None, :]


WRONG_PADDING = [
    (padding_inverted, r"True on the PADDING"),
    (padding_flat, r"shape \(3, 4\).*mask\[:, None, None, :\]"),
    (padding_le, r"one True too many"),
    (padding_from_one, r"one True too few"),
    (padding_float, r"dtype torch\.float32"),
    (padding_list_unfriendly, r"torch\.as_tensor\(lengths\)"),
    (ref_padding, r"calls the course's own padding_mask"),
]


# ------------------------------------------------------------------------ masked_attention


def masked(q, k, v, mask):
    """The solution notebook's logic, written out independently."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk)
    has_key = mask.any(dim=-1, keepdim=True)  # (..., Lq, 1)
    scores = scores.masked_fill(~mask, float("-inf"))
    scores = torch.where(has_key, scores, 0.0)  # rows with no key: finite, zeroed below
    weights = torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)
    return weights @ v, weights


def masked_big_negative(q, k, v, mask):
    """Also accepted: a -1e9 fill, then the weights of blocked keys set to 0."""
    scores = q @ k.mT / math.sqrt(q.size(-1))
    weights = torch.softmax(torch.where(mask, scores, -1e9), dim=-1) * mask
    return weights @ v, weights


def lesson02(q, k, v, mask):
    """Lesson 02's attention: right until a row has no key left (then NaN)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    return weights @ v, weights


def big_negative_only(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)
    return weights @ v, weights


def not_negative_enough(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores.masked_fill(~mask, -100.0), dim=-1)
    weights = weights.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    return weights @ v, weights


def inverted(q, k, v, mask):
    return masked(q, k, v, ~mask)


def after_softmax(q, k, v, mask):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) * mask
    return weights @ v, weights


def renormalised_after(q, k, v, mask):
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) * mask
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-30)
    return weights @ v, weights


def additive_nan_to_num(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    minus_inf = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
    weights = torch.nan_to_num(torch.softmax(scores + minus_inf, dim=-1))
    return weights @ v, weights


def output_before_zeroing(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.softmax(scores.masked_fill(~mask, -1e9), dim=-1)
    out = weights @ v
    return out, weights * mask


def boolean_indexing(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    scores[~mask] = float("-inf")
    weights = torch.nan_to_num(torch.softmax(scores, dim=-1))
    return weights @ v, weights


def detached(q, k, v, mask):
    with torch.no_grad():
        return masked(q, k, v, mask)


def builtin(q, k, v, mask):
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    return out, torch.zeros(out.shape[:-1] + k.shape[-2:-1])


def via_course_sdpa(q, k, v, mask):
    out, w = ref_sdpa(q, k, v, mask)
    return torch.nan_to_num(out), torch.nan_to_num(w)


def fill_then_nan_to_num(q, k, v, mask):
    """Accepted everywhere: nan_to_num after a masked_fill softmax (finite gradients)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = torch.nan_to_num(torch.softmax(scores.masked_fill(~mask, float("-inf")), -1))
    return weights @ v, weights


WRONG_MASKED = [
    (lesson02, "masked_attention.empty_rows", r"contain NaN in the rows whose keys are ALL"),
    (big_negative_only, "masked_attention.empty_rows", r"spread evenly \(1/Lk each\)"),
    (output_before_zeroing, "masked_attention.empty_rows", r"but the output there is not 0"),
    (not_negative_enough, "masked_attention.properties", r"tiny but not exactly 0"),
    (inverted, "masked_attention.values", r"mask inverted"),
    (after_softmax, "masked_attention.values", r"mask was applied after the softmax"),
    (renormalised_after, "masked_attention.properties", r"renormalised"),
    (additive_nan_to_num, "masked_attention.gradients", r"gradient reaching q contains NaN"),
    (boolean_indexing, "masked_attention.values", r"Boolean indexing"),
    (detached, "masked_attention.gradients", r"Keep every step in torch"),
    (builtin, "masked_attention.values", r"calls PyTorch's built-in attention"),
    (via_course_sdpa, "masked_attention.values", r"calls the course's own attention"),
    (ref_masked, "masked_attention.values", r"calls the course's own attention"),
]


# ---------------------------------------------------------------------------- leaks_future


def leaks(fn, L, d_model, generator):
    """The solution notebook's logic, written out independently."""
    x = torch.randn(1, L, d_model, generator=generator)  # (1, L, d_model)
    with torch.no_grad():
        y = fn(x)
        for t in range(1, L):
            x2 = x.clone()
            x2[:, t:] = torch.randn(1, L - t, d_model, generator=generator)
            if not torch.allclose(fn(x2)[:, :t], y[:, :t], atol=1e-5):
                return True
    return False


def leaks_tensor_verdict(fn, L, d_model, generator):
    """Another correct way: one position at a time, a 0-d bool tensor as the verdict."""
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    found = torch.tensor(False)
    for t in range(L - 1):
        x2 = torch.cat([x[:, :t + 1], torch.randn(1, L - t - 1, d_model, generator=generator)], 1)
        found = found | ((fn(x2)[:, :t + 1] - y[:, :t + 1]).abs() > 1e-5).any()
    return found


def _perturbed(x, t, generator):
    x2 = x.clone()
    x2[:, t:] = torch.randn(x2[:, t:].shape, generator=generator)
    return x2


def always_true(fn, L, d_model, generator):
    return True


def always_false(fn, L, d_model, generator):
    return False


def exact_equality(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.equal(fn(_perturbed(x, t, generator))[:, :t], y[:, :t])
               for t in range(1, L))


def default_allclose(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.allclose(fn(_perturbed(x, t, generator))[:, :t], y[:, :t])
               for t in range(1, L))


def compares_everything(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.allclose(fn(_perturbed(x, t, generator)), y, atol=1e-5)
               for t in range(1, L))


def compares_last_output(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.allclose(fn(_perturbed(x, t, generator))[:, -1], y[:, -1], atol=1e-5)
               for t in range(1, L))


def perturbs_the_past(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    for t in range(1, L):
        x2 = x.clone()
        x2[:, :t] = torch.randn(1, t, d_model, generator=generator)
        if not torch.allclose(fn(x2)[:, t:], y[:, t:], atol=1e-5):
            return True
    return False


def only_last_token(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    x2 = _perturbed(x, L - 1, generator)
    return not torch.allclose(fn(x2)[:, :-1], fn(x)[:, :-1], atol=1e-5)


def only_first_output(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.allclose(fn(_perturbed(x, t, generator))[:, 0], y[:, 0], atol=1e-5)
               for t in range(1, L))


def loose_tolerance(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    return any(not torch.allclose(fn(_perturbed(x, t, generator))[:, :t], y[:, :t], atol=1e-2)
               for t in range(1, L))


def single_tokens_stop_early(fn, L, d_model, generator):
    """Changes one token at a time, but never the last one."""
    x = torch.randn(1, L, d_model, generator=generator)
    y = fn(x)
    for t in range(1, L - 1):
        x2 = x.clone()
        x2[:, t] = torch.randn(d_model, generator=generator)
        if not torch.allclose(fn(x2)[:, :t], y[:, :t], atol=1e-5):
            return True
    return False


def global_stream(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model)
    y = fn(x)
    for t in range(1, L):
        x2 = x.clone()
        x2[:, t:] = torch.randn(1, L - t, d_model)
        if not torch.allclose(fn(x2)[:, :t], y[:, :t], atol=1e-5):
            return True
    return False


def int_verdict(fn, L, d_model, generator):
    return int(leaks(fn, L, d_model, generator))


def elementwise_verdict(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    return fn(_perturbed(x, 1, generator))[:, :1] != fn(x)[:, :1]


def forgot_return(fn, L, d_model, generator):
    x = torch.randn(1, L, d_model, generator=generator)
    fn(x)


def untouched_leaks(fn, L, d_model, generator):
    raise NotImplementedError()


WRONG_DETECTORS = [
    (always_true, "leaks_future.basic", r"says every model leaks"),
    (always_false, "leaks_future.basic", r"never detects a leak"),
    (compares_everything, "leaks_future.basic", r"Do you compare the whole output"),
    (compares_last_output, "leaks_future.basic", r"or the last position\?"),
    (perturbs_the_past, "leaks_future.basic", r"says causal models leak"),
    (exact_equality, "leaks_future.panel", r"Exact equality"),
    (default_allclose, "leaks_future.panel", r"default atol=1e-8"),
    (loose_tolerance, "leaks_future.panel", r"misses a small but real leak"),
    (only_last_token, "leaks_future.panel", r"change only the LAST input"),
    (only_first_output, "leaks_future.panel", r"compare only the first output"),
    (single_tokens_stop_early, "leaks_future.panel", r"stop one position early"),
    (global_stream, "leaks_future.basic", r"global random stream"),
    (int_verdict, "leaks_future.basic", r"returned 1 of type int"),
    (elementwise_verdict, "leaks_future.basic", r"Reduce it with \.any\(\)"),
    (forgot_return, "leaks_future.basic", r"returned None"),
    (ref_leaks_future, "leaks_future.basic", r"calls the course's own leaks_future"),
    (untouched_leaks, "leaks_future.basic", r"not written yet"),
]


def test_panel_truth_agrees_with_the_reference_detector():
    """Does the reference detector agree with every panel model's stated truth?"""
    assert len(BUILDERS) == len(MODELS) == len(MODEL_NAMES)
    for hidden in (False, True):
        for number, L, d, seed in panel(hidden):
            name = MODEL_NAMES[number]
            got = ref_leaks_future(BUILDERS[number](d), L, d, torch.Generator().manual_seed(seed))
            assert got == MODELS[name].leaks, (name, L, d)


# ------------------------------------------------------------------------ one mistake, once

# None of lesson 04's checks runs one of the learner's exercises through another: the masks
# masked_attention is run with, and the models handed to leaks_future, are built by the
# checks. A masked_attention that leans on the course's (lesson 02) attention is caught as
# "the course's own attention" (via_course_sdpa above), so no stand-in is needed here.


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(causal, *CAUSAL_IDS),
    *passes(causal_arange, *CAUSAL_IDS),
    *[fails(fn, "causal_mask.values", match,
            name="course-causal_mask" if fn is ref_causal else "")
      for fn, match in WRONG_CAUSAL],
    fails(causal_triu, "causal_mask.hidden", r"upper-triangular \(torch\.triu\)"),
    *passes(padding, *PADDING_IDS),
    *passes(padding_loop, *PADDING_IDS),
    *[fails(fn, "padding_mask.values", match,
            name="course-padding_mask" if fn is ref_padding else "")
      for fn, match in WRONG_PADDING],
    fails(padding_inverted, "padding_mask.hidden", r"True on the PADDING"),
    *passes(masked, *MASKED_IDS),  # with -inf
    *passes(masked_big_negative, *MASKED_IDS),  # with -1e9
    *[fails(fn, check_id, match, name="course-masked_attention" if fn is ref_masked else "")
      for fn, check_id, match in WRONG_MASKED],
    fails(inverted, "masked_attention.hidden", r"mask inverted"),
    fails(lesson02, "masked_attention.empty_rows_hidden",
          r"contain NaN in the rows whose keys are ALL"),
    # partial credit: lesson 02's attention (NaN on empty rows) keeps the value and property
    # points
    *passes(lesson02, "masked_attention.values", "masked_attention.hidden",
            "masked_attention.properties"),
    *passes(fill_then_nan_to_num, *MASKED_IDS),
    *passes(leaks, *LEAK_IDS),  # a bool verdict
    *passes(leaks_tensor_verdict, *LEAK_IDS),  # a 0-d bool tensor verdict
    *[fails(fn, check_id, match,
            name="course-leaks_future" if fn is ref_leaks_future else "")
      for fn, check_id, match in WRONG_DETECTORS],
]

test_row = row_test(ROWS)
