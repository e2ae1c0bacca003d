"""Lesson 02's checks against realistic wrong answers: each must fail with its own message."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.checks import REGISTRY, CheckFailed, check
from autograder.checks._core import Guard
from autograder.checks.lesson02 import cases
from autograder.reference import SelfAttention as RefSelfAttention
from autograder.reference import scaled_dot_product_attention as ref_sdpa

from .wrong_answers import fails, passes, row_test

SDPA_IDS = ("sdpa.values", "sdpa.hidden", "sdpa.mask", "sdpa.mask_hidden", "sdpa.properties")
HEAD_IDS = ("selfattn.layout", "selfattn.values", "selfattn.hidden", "selfattn.grad",
            "selfattn.mask")
HEAD_CALL_IDS = HEAD_IDS[1:]  # the checks that run the head (and so its attention)


# ------------------------------------------------------------------ scaled_dot_product_attention


def sdpa(q, k, v, mask=None):
    """The solution notebook's logic, written out independently."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)  # (..., Lq, Lk)
    return weights @ v, weights


def sdpa_where(q, k, v, mask=None):
    """Another correct way: torch.where, an explicit max-subtracted softmax, mT."""
    scores = (q @ k.mT) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = torch.where(mask, scores, torch.tensor(-1e9))
    e = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = e / e.sum(-1, keepdim=True)
    return weights @ v, weights


def no_scale(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def by_d_k(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(-2, -1) / q.size(-1), dim=-1)
    return w @ v, w


def by_d_v(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(v.size(-1)), dim=-1)
    return w @ v, w


def query_axis(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-2)
    return w @ v, w


def keys_out(q, k, v, mask=None):
    out, w = sdpa(q, k, v, mask)
    return w @ k, w


def k_dot_T(q, k, v, mask=None):
    w = torch.softmax(q @ k.T / math.sqrt(q.size(-1)), dim=-1)
    return w @ v, w


def fixed_transpose(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.size(-1)), dim=-1)
    return w @ v, w


def mask_after(q, k, v, mask=None):
    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1)
    if mask is not None:
        w = w.masked_fill(~mask, 0.0)
    return w @ v, w


def mask_inverted(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def mask_multiplied(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores = scores * mask
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def mask_indexed(q, k, v, mask=None):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    if mask is not None:
        scores[~mask] = float("-inf")
    w = torch.softmax(scores, dim=-1)
    return w @ v, w


def mask_ignored(q, k, v, mask=None):
    return sdpa(q, k, v)


def naive_exp(q, k, v, mask=None):
    e = torch.exp(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)))
    w = e / e.sum(-1, keepdim=True)
    return w @ v, w


def builtin(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask), None


def course_own(q, k, v, mask=None):
    return ref_sdpa(q, k, v, mask)


def untouched(q, k, v, mask=None):
    raise NotImplementedError()


WRONG_SDPA = [
    (no_scale, "sdpa.values", r"without the 1/sqrt\(d_k\)"),
    (by_d_k, "sdpa.values", r"divided by d_k instead of sqrt\(d_k\)"),
    (by_d_v, "sdpa.values", r"sqrt\(d_v\)"),
    (query_axis, "sdpa.values", r"query axis \(dim=-2\)"),
    (keys_out, "sdpa.values", r"weights @ v"),
    (keys_out, "sdpa.hidden", r"matches weights @ k"),
    (k_dot_T, "sdpa.values", r"k\.transpose\(-2, -1\)"),
    (fixed_transpose, "sdpa.values", r"k\.transpose\(-2, -1\)"),
    (mask_after, "sdpa.mask", r"mask was applied after the softmax"),
    (mask_inverted, "sdpa.mask", r"mask inverted"),
    (mask_multiplied, "sdpa.mask", r"multiplied by the mask"),
    (mask_indexed, "sdpa.mask", r"Boolean indexing .*masked_fill"),
    (mask_ignored, "sdpa.mask", r"not exactly 0 where the mask is False"),
    (naive_exp, "sdpa.properties", r"subtracts each row's maximum"),
    (builtin, "sdpa.values", r"calls PyTorch's built-in attention"),
    (course_own, "sdpa.values", r"calls the course's own attention"),
    (untouched, "sdpa.values", r"not written yet"),
]


# --------------------------------------------------------------------------------- SelfAttention


class Head(nn.Module):
    """A correct head built on the correct function above."""

    def __init__(self, d_model, d_k):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)

    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), self.W_v(x), mask)


class BiasHead(Head):
    def __init__(self, d_model, d_k):
        nn.Module.__init__(self)
        self.W_q, self.W_k, self.W_v = (nn.Linear(d_model, d_k) for _ in range(3))


class SwappedLinear(Head):
    def __init__(self, d_model, d_k):
        nn.Module.__init__(self)
        self.W_q, self.W_k, self.W_v = (nn.Linear(d_k, d_model, bias=False) for _ in range(3))

    def forward(self, x, mask=None):
        return sdpa(x @ self.W_q.weight, x @ self.W_k.weight, x @ self.W_v.weight, mask)


class RenamedHead(Head):
    def __init__(self, d_model, d_k):
        nn.Module.__init__(self)
        self.query, self.key, self.value = (nn.Linear(d_model, d_k, bias=False)
                                            for _ in range(3))

    def forward(self, x, mask=None):
        return sdpa(self.query(x), self.key(x), self.value(x), mask)


class ModelScaleHead(Head):
    def forward(self, x, mask=None):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        scores = q @ k.transpose(-2, -1) / math.sqrt(x.size(-1))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        return w @ v, w


class NoValueHead(Head):
    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), x, mask)


class MaskDroppingHead(Head):
    def forward(self, x, mask=None):
        return sdpa(self.W_q(x), self.W_k(x), self.W_v(x))


class DetachedHead(Head):
    def forward(self, x, mask=None):
        with torch.no_grad():
            return super().forward(x, mask)


class BuiltinHead(Head):
    def __init__(self, d_model, d_k):
        super().__init__(d_model, d_k)
        self.mha = nn.MultiheadAttention(d_k, 1, bias=False, batch_first=True)

    def forward(self, x, mask=None):
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)
        return self.mha(q, k, v, attn_mask=None if mask is None else ~mask)


class UntouchedHead(nn.Module):
    def __init__(self, d_model, d_k):
        super().__init__()
        raise NotImplementedError()


class NoSuperHead(Head):
    def __init__(self, d_model, d_k):
        self.W_q = nn.Linear(d_model, d_k, bias=False)


class Unscaled(Head):
    """A head whose own attention (not a call to a function named like the exercise) is
    unscaled: sent back to the function it should call."""

    def forward(self, x, mask=None):
        return no_scale(self.W_q(x), self.W_k(x), self.W_v(x), mask)


WRONG_HEADS = [
    (BiasHead, "selfattn.layout", r"has a bias"),
    (SwappedLinear, "selfattn.layout", r"Did you write nn\.Linear\(d_k, d_model\)"),
    (SwappedLinear, "selfattn.values", r"Did you write nn\.Linear\(d_k, d_model\)"),
    (RenamedHead, "selfattn.layout", r"no attribute `W_q`"),
    (ModelScaleHead, "selfattn.values", r"divided by sqrt\(d_model\)"),
    (NoValueHead, "selfattn.values", r"did you forget self\.W_v\(x\)"),
    (NoValueHead, "selfattn.hidden", r"values that are x itself"),
    (MaskDroppingHead, "selfattn.mask", r"ignores its mask"),
    (DetachedHead, "selfattn.grad", r"stays differentiable"),
    (BuiltinHead, "selfattn.values", r"calls PyTorch's built-in attention"),
    (RefSelfAttention, "selfattn.values", r"calls the course's own SelfAttention"),
    (UntouchedHead, "selfattn.layout", r"not written yet"),
    (NoSuperHead, "selfattn.layout", r"super\(\)\.__init__\(\)"),
    (Unscaled, "selfattn.values", r"calls your scaled_dot_product_attention: fix it there"),
]


# ------------------------------------------------------------------------ one mistake, once

# A learner's notebook: SelfAttention calls their own scaled_dot_product_attention, which
# forgot the 1/sqrt(d_k) scale and ignores the mask.
NOTEBOOK: dict = {}
exec("import math\n"
     "import torch\n"
     "import torch.nn as nn\n"
     "def scaled_dot_product_attention(q, k, v, mask=None):\n"
     "    weights = torch.softmax(q @ k.transpose(-2, -1), dim=-1)\n"
     "    return weights @ v, weights\n"
     "class SelfAttention(nn.Module):\n"
     "    def __init__(self, d_model, d_k):\n"
     "        super().__init__()\n"
     "        self.W_q = nn.Linear(d_model, d_k, bias=False)\n"
     "        self.W_k = nn.Linear(d_model, d_k, bias=False)\n"
     "        self.W_v = nn.Linear(d_model, d_k, bias=False)\n"
     "    def forward(self, x, mask=None):\n"
     "        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)\n"
     "        return scaled_dot_product_attention(q, k, v, mask)\n"
     "class SelfAttentionOverStandIn(SelfAttention):\n"
     "    def forward(self, x, mask=None):\n"
     "        from autograder.checks.lesson02.cases import stand_in_sdpa\n"
     "        return stand_in_sdpa(self.W_q(x), self.W_k(x), self.W_v(x), mask)\n"
     "def sdpa_stealing(q, k, v, mask=None):\n"
     "    from autograder.checks.lesson02.cases import stand_in_sdpa\n"
     "    return stand_in_sdpa(q, k, v, mask)\n", NOTEBOOK)

ISOLATION = [
    fails(NOTEBOOK["scaled_dot_product_attention"], "sdpa.values",
          r"without the 1/sqrt\(d_k\)", name="own-sdpa"),
    fails(NOTEBOOK["scaled_dot_product_attention"], "sdpa.mask",
          "not exactly 0 where the mask is False", name="own-sdpa"),
    # the head is judged on its own: the wrong function it calls cost the sdpa points only
    *passes(NOTEBOOK["SelfAttention"], *HEAD_IDS, name="head-over-own-wrong-sdpa"),
    *passes(NOTEBOOK["SelfAttentionOverStandIn"], *HEAD_IDS, name="head-over-stand-in"),
    *[fails(NOTEBOOK["sdpa_stealing"], check_id,
            "calls the grader's stand-in scaled_dot_product_attention",
            name="sdpa-is-the-stand-in") for check_id in SDPA_IDS],
]


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(sdpa, *SDPA_IDS),
    *passes(sdpa_where, *SDPA_IDS),
    *[fails(fn, check_id, match) for fn, check_id, match in WRONG_SDPA],
    # partial credit: a mask mistake keeps the unmasked value points
    *[row for fn in (mask_after, mask_inverted, mask_multiplied)
      for row in passes(fn, "sdpa.values", "sdpa.hidden")],
    *passes(Head, *HEAD_IDS),
    *[fails(cls, check_id, match, name="course-SelfAttention" if cls is RefSelfAttention
            else "") for cls, check_id, match in WRONG_HEADS],
    # a head with biases still earns the value points (their bias is zeroed)
    *passes(BiasHead, "selfattn.values", "selfattn.hidden", "selfattn.mask", "selfattn.grad"),
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_lesson02_registers_its_check_ids():
    """Are all ten of lesson 02's check ids registered, and no others of its exercises?"""
    assert {i for i in REGISTRY if i.split(".")[0] in ("sdpa", "selfattn")} == \
        set(SDPA_IDS + HEAD_IDS)


def _without_stand_ins(obj, replacements):
    return contextlib.nullcontext()


@pytest.mark.parametrize("check_id", HEAD_CALL_IDS)
def test_isolation_rows_can_fail(check_id, monkeypatch):
    """With the stand-in switched off, does the head over the wrong function fail again (so the
    isolation rows above test the stand-in, not an accident)?"""
    monkeypatch.setattr(cases, "stand_ins", _without_stand_ins)
    with pytest.raises(CheckFailed) as failed:
        check(check_id, NOTEBOOK["SelfAttention"])
    if check_id in ("selfattn.values", "selfattn.hidden"):
        assert "calls your scaled_dot_product_attention: fix it there" in str(failed.value)


def test_stand_in_rows_can_fail(monkeypatch):
    """With the stand-in left out of sdpa's Guard, would an sdpa that only calls it pass (so the
    rows that fail it test that Guard entry)?"""
    monkeypatch.setattr(cases, "sdpa_guard", lambda: Guard(["attention"]))
    for check_id in SDPA_IDS:
        check(check_id, NOTEBOOK["sdpa_stealing"])
