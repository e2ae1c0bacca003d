"""Lesson 03's checks against realistic wrong answers: each gets the message meant for it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnlab
from autograder.checks import REGISTRY, CheckFailed, check

LESSON03 = sorted(cid for cid, c in REGISTRY.items()
                  if c.record.__module__.endswith("lesson03"))


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


def test_correct_split_and_merge_pass():
    """Does a correct split_heads/merge_heads pass every split, merge and round-trip check?"""
    for cid in ("split_heads.values", "split_heads.hidden"):
        check(cid, split_heads)
    for cid in ("merge_heads.values", "merge_heads.hidden"):
        check(cid, merge_heads)
    check("heads.round_trip", (split_heads, merge_heads))


@pytest.mark.parametrize("fn, cid, message", [
    (split_bare_view, "split_heads.values", r"x\.view\(B, H, L, d_head\)"),
    (split_no_transpose, "split_heads.values", r"That is \(B, L, H, d_head\)"),
    (split_interleaved, "split_heads.values", r"every H-th feature"),
    (split_wrong_axes, "split_heads.values", r"sizes are right but in the wrong order"),
    (split_wrong_axes, "split_heads.hidden", r"transposed the wrong axes"),
    (split_calls_course, "split_heads.values", r"calls the course's own split_heads"),
    (not_written, "split_heads.values", r"not written yet"),
])
def test_split_mistakes(fn, cid, message):
    """Is each wrong split_heads told what it got wrong?"""
    with pytest.raises(CheckFailed, match=message):
        check(cid, fn)


@pytest.mark.parametrize("fn, cid, message", [
    (merge_view, "merge_heads.values", r"needs a contiguous tensor"),
    (merge_no_transpose, "merge_heads.values", r"straight to \(B, L, d_model\)"),
    (merge_interleaved, "merge_heads.values", r"interleaved"),
    (merge_unjoined, "merge_heads.values", r"join the last two axes"),
    (not_written, "merge_heads.values", r"not written yet"),
])
def test_merge_mistakes(fn, cid, message):
    """Is each wrong merge_heads told what it got wrong?"""
    with pytest.raises(CheckFailed, match=message):
        check(cid, fn)


def test_round_trip_catches_a_mismatched_pair():
    """Does the round trip fail when merge_heads does not undo split_heads?"""
    with pytest.raises(CheckFailed, match="does not give back its input"):
        check("heads.round_trip", (split_heads, merge_no_transpose))


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


def test_correct_module_passes_every_lesson03_check():
    """Does a correct MultiHeadAttention (and split/merge) pass every check id of lesson 03?"""
    objects = {"split_heads": split_heads, "merge_heads": merge_heads,
               "heads": (split_heads, merge_heads), "mha": GoodMHA}
    assert len(LESSON03) >= 13
    for cid in LESSON03:
        check(cid, objects[cid.split(".")[0]])


def test_course_building_block_inside_is_allowed():
    """May a learner build their module on attnlab.scaled_dot_product_attention?"""

    class WithBuildingBlock(GoodMHA):
        def forward(self, query, key, value, mask=None):
            q, k, v = self.heads(query, key, value)
            out, w = attnlab.scaled_dot_product_attention(q, k, v, mask)
            return self.out_proj(merge_heads(out)), w

    for cid in ("mha.self_attention", "mha.mask", "mha.mask_hidden", "mha.properties"):
        check(cid, WithBuildingBlock)


@pytest.mark.parametrize("cls, cid, message", [
    (NoOutProj, "mha.self_attention", r"before\* out_proj"),
    (AveragedWeights, "mha.shapes", r"averaged over the heads"),
    (ScaledByDModel, "mha.self_attention", r"sqrt\(d_model\) instead of sqrt\(d_head\)"),
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
])
def test_mha_mistakes(cls, cid, message):
    """Is each wrong MultiHeadAttention told what it got wrong?"""
    with pytest.raises(CheckFailed, match=message):
        check(cid, cls)


@pytest.mark.parametrize("cls, message", [
    (WrapsTorch, r"calls PyTorch's built-in attention"),
    (FusedKernel, r"calls PyTorch's built-in attention"),
    (CourseSubclass, r"calls the course's own MultiHeadAttention"),
])
def test_existing_implementations_are_caught(cls, message):
    """Is calling nn.MultiheadAttention, F.scaled_dot_product_attention or the course's own
    module caught, with the reason?"""
    with pytest.raises(CheckFailed, match=message):
        check("mha.self_attention", cls)


@pytest.mark.parametrize("cls, message", [
    (BareViewHeads, r"Shuffling the key/value positions"),
    (SoftmaxOverQueries, r"probability distribution over the keys"),
])
def test_properties_catch_structural_mistakes(cls, message):
    """Do the hidden property checks give class-level messages for structural mistakes?"""
    with pytest.raises(CheckFailed, match=message):
        check("mha.properties", cls)


def test_properties_catch_heads_that_share_features():
    """Does the head-independence property catch heads built from interleaved features?"""

    class Interleaved(GoodMHA):
        def heads(self, query, key, value):
            H = self.n_heads
            return tuple(split_interleaved(lin(t), H) for lin, t in
                         ((self.q_proj, query), (self.k_proj, key), (self.v_proj, value)))

        def forward(self, query, key, value, mask=None):
            q, k, v = self.heads(query, key, value)
            w = self.weights(self.scores(q, k), mask)
            return self.out_proj(merge_interleaved(w @ v)), w

    with pytest.raises(CheckFailed, match="interleaved features"):
        check("mha.self_attention", Interleaved)
    with pytest.raises(CheckFailed, match="should change head 0's weights and no other"):
        check("mha.properties", Interleaved)


def test_checks_leave_the_global_random_stream_alone():
    """Does running a check leave torch's global random stream where it was?"""
    before = torch.random.get_rng_state()
    check("mha.self_attention", GoodMHA)
    assert torch.equal(before, torch.random.get_rng_state())
