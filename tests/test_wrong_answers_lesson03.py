"""Lesson 03's checks against realistic wrong answers: each gets the message meant for it."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnlab
from autograder.checks import REGISTRY, CheckFailed, check
from autograder.checks.lesson03 import cases

from .wrong_answers import fails, passes, row_test

LESSON03 = sorted(cid for cid, c in REGISTRY.items()
                  if c.record.__module__ == "autograder.checks.lesson03.cases")
SPLIT_IDS = ("split_heads.values", "split_heads.hidden")
MERGE_IDS = ("merge_heads.values", "merge_heads.hidden")
MHA_IDS = ("mha.shapes", "mha.self_attention", "mha.cross_attention", "mha.hidden", "mha.mask",
           "mha.mask_hidden", "mha.no_bias", "mha.properties")


# --------------------------------------------------------------------------- split / merge


def split_heads(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2)


def merge_heads(x):
    B, H, L, d_head = x.shape
    return x.transpose(1, 2).reshape(B, L, H * d_head)


def split_bare_view(x, n_heads):
    B, L, d_model = x.shape
    return x.reshape(B, n_heads, L, d_model // n_heads)


def split_no_transpose(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads)


def split_interleaved(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, d_model // n_heads, n_heads).permute(0, 3, 1, 2)


def split_wrong_axes(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads).transpose(1, 3)


def merge_view(x):
    B, H, L, d_head = x.shape
    return x.transpose(1, 2).view(B, L, H * d_head)


def merge_no_transpose(x):
    B, H, L, d_head = x.shape
    return x.reshape(B, L, H * d_head)


def merge_interleaved(x):
    B, H, L, d_head = x.shape
    return x.permute(0, 2, 3, 1).reshape(B, L, H * d_head)


def merge_unjoined(x):
    return x.transpose(1, 2)


def split_calls_course(x, n_heads):
    return attnlab.split_heads(x, n_heads)


def not_written(*args, **kwargs):
    raise NotImplementedError()


WRONG_SPLITS = [
    (split_bare_view, "split_heads.values", r"x\.view\(B, H, L, d_head\)"),
    (split_no_transpose, "split_heads.values", r"That is \(B, L, H, d_head\)"),
    (split_interleaved, "split_heads.values", r"every H-th feature"),
    (split_wrong_axes, "split_heads.values", r"sizes are right but in the wrong order"),
    (split_wrong_axes, "split_heads.hidden", r"transposed the wrong axes"),
    (split_calls_course, "split_heads.values", r"calls the course's own split_heads"),
    (not_written, "split_heads.values", r"not written yet"),
]

WRONG_MERGES = [
    (merge_view, "merge_heads.values", r"needs a contiguous tensor"),
    (merge_no_transpose, "merge_heads.values", r"straight to \(B, L, d_model\)"),
    (merge_interleaved, "merge_heads.values", r"interleaved"),
    (merge_unjoined, "merge_heads.values", r"join the last two axes"),
    (not_written, "merge_heads.values", r"not written yet"),
]

HEADS_ROWS = [
    *passes(split_heads, *SPLIT_IDS),
    *passes(merge_heads, *MERGE_IDS),
    *passes((split_heads, merge_heads), "heads.round_trip", name="good-pair"),
    *[fails(fn, cid, message) for fn, cid, message in WRONG_SPLITS],
    *[fails(fn, cid, message) for fn, cid, message in WRONG_MERGES],
    # the round trip fails when merge_heads does not undo split_heads
    fails((split_heads, merge_no_transpose), "heads.round_trip", "does not give back its input",
          name="mismatched-pair"),
]


# --------------------------------------------------------------------------- MultiHeadAttention


class GoodMHA(nn.Module):
    """A correct MultiHeadAttention, written independently of the reference and the notebook."""

    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def heads(self, query, key, value):
        H = self.n_heads
        return (split_heads(self.q_proj(query), H), split_heads(self.k_proj(key), H),
                split_heads(self.v_proj(value), H))

    def scores(self, q, k):
        return torch.einsum("bhqd,bhkd->bhqk", q, k) / math.sqrt(q.size(-1))

    def weights(self, scores, mask):
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores, dim=-1)

    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        w = self.weights(self.scores(q, k), mask)
        return self.out_proj(merge_heads(w @ v)), w


class NoOutProj(GoodMHA):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        w = self.weights(self.scores(q, k), mask)
        return merge_heads(w @ v), w


class AveragedWeights(GoodMHA):
    def forward(self, query, key, value, mask=None):
        out, w = super().forward(query, key, value, mask)
        return out, w.mean(dim=1)


class ScaledByDModel(GoodMHA):
    def scores(self, q, k):
        return q @ k.transpose(-2, -1) / math.sqrt(q.size(-1) * self.n_heads)


class ValuesFromKeyProj(GoodMHA):
    def heads(self, query, key, value):
        q, k, _ = super().heads(query, key, value)
        return q, k, split_heads(self.k_proj(value), self.n_heads)


class ValuesFromKeyInput(GoodMHA):
    def heads(self, query, key, value):
        return super().heads(query, key, key)


class OneBigHead(GoodMHA):
    def forward(self, query, key, value, mask=None):
        out, w = attnlab.scaled_dot_product_attention(
            self.q_proj(query), self.k_proj(key), self.v_proj(value), mask)
        return self.out_proj(out), w


class BareViewHeads(GoodMHA):
    def heads(self, query, key, value):
        H = self.n_heads
        return tuple(split_bare_view(lin(t), H) for lin, t in
                     ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))

    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        w = self.weights(self.scores(q, k), mask)
        o = w @ v
        return self.out_proj(o.reshape(o.size(0), o.size(2), -1)), w


class MergesWithView(GoodMHA):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        w = self.weights(self.scores(q, k), mask)
        return self.out_proj(merge_view(w @ v)), w


class MaskInverted(GoodMHA):
    def weights(self, scores, mask):
        return super().weights(scores, None if mask is None else ~mask)


class MaskAfterSoftmax(GoodMHA):
    def weights(self, scores, mask):
        w = torch.softmax(scores, dim=-1)
        return w if mask is None else w * mask


class MaskMultipliesScores(GoodMHA):
    def weights(self, scores, mask):
        return torch.softmax(scores if mask is None else scores * mask, dim=-1)


class SoftmaxOverQueries(GoodMHA):
    def weights(self, scores, mask):
        return torch.softmax(scores, dim=-2)


class NoBiasEver(GoodMHA):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__(d_model, n_heads, bias=False)


class BiasAlways(GoodMHA):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__(d_model, n_heads, bias=True)


class OtherNames(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.n_heads = n_heads
        self.W_q = nn.Linear(d_model, d_model, bias=bias)
        self.W_k = nn.Linear(d_model, d_model, bias=bias)
        self.W_v = nn.Linear(d_model, d_model, bias=bias)
        self.W_o = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        q, k, v = (split_heads(f(t), self.n_heads) for f, t in
                   ((self.W_q, query), (self.W_k, key), (self.W_v, value)))
        out, w = attnlab.scaled_dot_product_attention(q, k, v, mask)
        return self.W_o(merge_heads(out)), w


class PerHeadWidth(GoodMHA):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__(d_model, n_heads, bias)
        self.q_proj = nn.Linear(d_model, d_model // n_heads, bias=bias)


class WrapsTorch(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.inner = nn.MultiheadAttention(d_model, n_heads, bias=bias, batch_first=True)

    def forward(self, query, key, value, mask=None):
        return self.inner(query, key, value, attn_mask=None if mask is None else ~mask,
                          average_attn_weights=False)


class FusedKernel(GoodMHA):
    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(merge_heads(out)), self.weights(self.scores(q, k), mask)


class CourseSubclass(attnlab.MultiHeadAttention):
    pass


class OnlyOutput(GoodMHA):
    def forward(self, query, key, value, mask=None):
        return super().forward(query, key, value, mask)[0]


class NotWritten(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        raise NotImplementedError()


class WithBuildingBlock(GoodMHA):
    """Built on the course's own lesson-02 block, attnlab.scaled_dot_product_attention."""

    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        out, w = attnlab.scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(merge_heads(out)), w


class Interleaved(GoodMHA):
    """Heads made of interleaved features, written inline (not through split_heads)."""

    def heads(self, query, key, value):
        H = self.n_heads
        return tuple(split_interleaved(lin(t), H) for lin, t in
                     ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))

    def forward(self, query, key, value, mask=None):
        q, k, v = self.heads(query, key, value)
        w = self.weights(self.scores(q, k), mask)
        return self.out_proj(merge_interleaved(w @ v)), w


WRONG_MHA = [
    (NoOutProj, "mha.self_attention", r"before\* out_proj"),
    (AveragedWeights, "mha.shapes", r"averaged over the heads"),
    (ScaledByDModel, "mha.self_attention", r"sqrt\(d_model\) instead of sqrt\(d_head\)"),
    (ScaledByDModel, "mha.hidden", r"sqrt\(d_model\) instead of sqrt\(d_head\)"),
    (NoOutProj, "mha.hidden", r"before\* out_proj"),
    (ValuesFromKeyProj, "mha.self_attention", r"values were made with k_proj"),
    (ValuesFromKeyInput, "mha.cross_attention", r"computed from the `key` argument"),
    (OneBigHead, "mha.shapes", r"one big head"),
    (BareViewHeads, "mha.self_attention", r"bare `view\(B, H, L, d_head\)`"),
    (SoftmaxOverQueries, "mha.self_attention", r"softmax over the query axis"),
    (MergesWithView, "mha.self_attention", r"contiguous.*Look at your merge_heads"),
    (MaskInverted, "mha.mask", r"meaning is inverted"),
    (MaskInverted, "mha.mask_hidden", r"meaning is inverted"),
    (MaskAfterSoftmax, "mha.mask", r"after the softmax"),
    (MaskMultipliesScores, "mha.mask", r"to keys the mask blocks"),
    (NoBiasEver, "mha.shapes", r"has no bias"),
    (BiasAlways, "mha.no_bias", r"With bias=False, `q_proj` still has a bias"),
    (OtherNames, "mha.shapes", r"no attribute `q_proj`"),
    (PerHeadWidth, "mha.shapes", r"`q_proj.weight` has shape \(4, 12\)"),
    (OnlyOutput, "mha.self_attention", r"should return a pair"),
    (NotWritten, "mha.shapes", r"not written yet"),
    # calling nn.MultiheadAttention, F.scaled_dot_product_attention or the course's own module
    (WrapsTorch, "mha.self_attention", r"calls PyTorch's built-in attention"),
    (FusedKernel, "mha.self_attention", r"calls PyTorch's built-in attention"),
    (CourseSubclass, "mha.self_attention", r"calls the course's own MultiHeadAttention"),
    # the hidden property checks give class-level messages for structural mistakes
    (BareViewHeads, "mha.properties", r"Shuffling the key/value positions"),
    (SoftmaxOverQueries, "mha.properties", r"probability distribution over the keys"),
    (Interleaved, "mha.self_attention", r"interleaved features"),
    (Interleaved, "mha.properties", r"should change head 0's weights and no other"),
]

MHA_ROWS = [
    *passes(GoodMHA, *MHA_IDS),
    # a learner may build on attnlab.scaled_dot_product_attention (lesson 02's block)
    *passes(WithBuildingBlock, "mha.self_attention", "mha.mask", "mha.mask_hidden",
            "mha.properties"),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_MHA],
]


# --------------------------------------------------------------------------- one mistake, once

# A learner's notebook, as lesson 03 has it: MultiHeadAttention calls their own split_heads and
# merge_heads by name (and lesson 02's scaled_dot_product_attention from attnlab).
NOTEBOOK_CODE = """
def merge_heads(x):
    B, H, L, d_head = x.shape
    return x.transpose(1, 2).reshape(B, L, H * d_head)

class MultiHeadAttention(nn.Module):
    def __init__(self, d_model, n_heads, bias=True):
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, query, key, value, mask=None):
        q = split_heads(self.q_proj(query), self.n_heads)
        k = split_heads(self.k_proj(key), self.n_heads)
        v = split_heads(self.v_proj(value), self.n_heads)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)
        return self.out_proj(merge_heads(heads)), weights

def split_stealing(x, n_heads):
    from autograder.checks.lesson03.cases import stand_in_split_heads
    return stand_in_split_heads(x, n_heads)

def merge_stealing(x):
    from autograder.checks.lesson03.cases import stand_in_merge_heads
    return stand_in_merge_heads(x)
"""


def notebook(code: str) -> dict:
    namespace = {"torch": torch, "nn": nn,
                 "scaled_dot_product_attention": attnlab.scaled_dot_product_attention}
    exec(code + NOTEBOOK_CODE, namespace)
    return namespace


# split_heads forgot the transpose; merge_heads is right (the learner of issue 12)
WRONG_SPLIT = notebook("""
def split_heads(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads)
""")
# split_heads is right; merge_heads (defined after it in NOTEBOOK_CODE) is replaced by one
# that forgot the transpose
WRONG_MERGE = notebook("""
def split_heads(x, n_heads):
    B, L, d_model = x.shape
    return x.view(B, L, n_heads, d_model // n_heads).transpose(1, 2)
""")
exec("def merge_heads(x):\n"
     "    B, H, L, d_head = x.shape\n"
     "    return x.reshape(B, L, H * d_head)\n", WRONG_MERGE)
# MultiHeadAttention built on the stand-ins themselves
STEALING = notebook("")
STEALING["split_heads"], STEALING["merge_heads"] = \
    STEALING["split_stealing"], STEALING["merge_stealing"]

ISOLATION = [
    fails(WRONG_SPLIT["split_heads"], "split_heads.values", r"That is \(B, L, H, d_head\)",
          name="own-split-no-transpose"),
    *passes(WRONG_SPLIT["merge_heads"], *MERGE_IDS, name="own-merge"),
    # issue 12: the round trip sits in merge_heads' cell and judges merge_heads alone
    *passes((WRONG_SPLIT["split_heads"], WRONG_SPLIT["merge_heads"]), "heads.round_trip",
            name="round-trip-over-own-wrong-split"),
    *passes(WRONG_SPLIT["MultiHeadAttention"], *MHA_IDS, name="mha-over-own-wrong-split"),
    fails(WRONG_MERGE["merge_heads"], "merge_heads.values", r"straight to \(B, L, d_model\)",
          name="own-merge-no-transpose"),
    fails((WRONG_MERGE["split_heads"], WRONG_MERGE["merge_heads"]), "heads.round_trip",
          "does not give back its input", name="round-trip-over-own-wrong-merge"),
    *passes(WRONG_MERGE["MultiHeadAttention"], *MHA_IDS, name="mha-over-own-wrong-merge"),
    # the stand-ins are no answer to split_heads or merge_heads ...
    *[fails(STEALING["split_stealing"], cid, "the grader's stand-in split_heads",
            name="split-is-the-stand-in") for cid in SPLIT_IDS],
    *[fails(STEALING["merge_stealing"], cid, "the grader's stand-in merge_heads",
            name="merge-is-the-stand-in") for cid in MERGE_IDS],
    fails((STEALING["split_stealing"], STEALING["merge_stealing"]), "heads.round_trip",
          "the grader's stand-in merge_heads", name="round-trip-merge-is-the-stand-in"),
    # ... but a MultiHeadAttention may stand on them like on any split/merge
    *passes(STEALING["MultiHeadAttention"], *MHA_IDS, name="mha-over-stand-ins"),
]


# --------------------------------------------------------------------------- the rows

ROWS = [*HEADS_ROWS, *MHA_ROWS, *ISOLATION]

test_row = row_test(ROWS)


def test_lesson03_registers_its_check_ids():
    """Are lesson 03's thirteen check ids registered, each with rows above?"""
    assert len(LESSON03) >= 13
    assert set(LESSON03) == {*SPLIT_IDS, *MERGE_IDS, "heads.round_trip", *MHA_IDS}


@pytest.mark.parametrize("check_id", MHA_IDS)
def test_mha_isolation_can_fail_without_stand_ins(check_id, monkeypatch):
    """Without the stand-ins, would the learner's wrong split_heads sink their
    MultiHeadAttention (so the isolation rows above prove something)?"""
    @contextlib.contextmanager
    def no_stand_ins(obj, replacements):
        yield

    monkeypatch.setattr(cases, "stand_ins", no_stand_ins)
    with pytest.raises(CheckFailed):
        check(check_id, WRONG_SPLIT["MultiHeadAttention"])


def test_round_trip_isolation_can_fail_with_the_learners_split(monkeypatch):
    """Had the round trip used the learner's split_heads (as before issue 12), would the
    right merge_heads of a learner with a wrong split_heads have failed it?"""
    monkeypatch.setattr(cases, "stand_in_split_heads", WRONG_SPLIT["split_heads"])
    with pytest.raises(CheckFailed, match="does not give back its input|shape"):
        check("heads.round_trip", (WRONG_SPLIT["split_heads"], WRONG_SPLIT["merge_heads"]))
