"""Lesson 06's checks against realistic wrong answers: each gets the message meant for it."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnlab
from autograder.checks import REGISTRY, CheckFailed, check
from autograder.checks.lesson06 import cases
from autograder.checks.lesson06.cases import RECORDS

from .wrong_answers import fails, passes, row_test

LESSON06 = sorted(RECORDS)
LN_IDS = ("layernorm.params", "layernorm.values", "layernorm.hidden", "layernorm.normalised",
          "layernorm.independent")
FF_IDS = ("ff.relu", "ff.gelu", "ff.hidden")
ENCODER_IDS = tuple(cid for cid in LESSON06 if cid.startswith("encoder."))


def not_written(*args, **kwargs):
    raise NotImplementedError()


# --------------------------------------------------------------------------- LayerNorm


class GoodLayerNorm(nn.Module):
    """A correct LayerNorm, written independently of the reference and the notebook."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def stats(self, x):
        return x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)

    def forward(self, x):
        mean, var = self.stats(x)
        return self.weight * (x - mean) * torch.rsqrt(var + self.eps) + self.bias


class EpsOutside(GoodLayerNorm):
    def forward(self, x):
        mean, var = self.stats(x)
        return self.weight * (x - mean) / (var.sqrt() + self.eps) + self.bias


class UnbiasedVariance(GoodLayerNorm):
    def stats(self, x):
        return x.mean(-1, keepdim=True), x.var(-1, keepdim=True)


class AnnotatedTransformerNorm(GoodLayerNorm):
    def forward(self, x):
        mean, std = x.mean(-1, keepdim=True), x.std(-1, keepdim=True)
        return self.weight * (x - mean) / (std + self.eps) + self.bias


class OverSequence(GoodLayerNorm):
    def stats(self, x):
        return x.mean(1, keepdim=True), x.var(1, unbiased=False, keepdim=True)


class OverBatch(GoodLayerNorm):
    def stats(self, x):
        return x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)


class NoAffine(GoodLayerNorm):
    def forward(self, x):
        mean, var = self.stats(x)
        return (x - mean) / torch.sqrt(var + self.eps)


class RMSNorm(GoodLayerNorm):
    def forward(self, x):
        return self.weight * x / torch.sqrt((x ** 2).mean(-1, keepdim=True) + self.eps) \
            + self.bias


class EpsIgnored(GoodLayerNorm):
    def forward(self, x):
        mean, var = self.stats(x)
        return self.weight * (x - mean) / torch.sqrt(var + 1e-5) + self.bias


class CallsTorch(GoodLayerNorm):
    def forward(self, x):
        return F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)


class WrapsTorch(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.norm = nn.LayerNorm(d_model, eps=eps)
        self.weight, self.bias = self.norm.weight, self.norm.bias

    def forward(self, x):
        return self.norm(x)


class CallsCourse(GoodLayerNorm):
    def forward(self, x):
        ref = attnlab.LayerNorm(x.shape[-1], self.eps)
        ref.load_state_dict(self.state_dict())
        return ref(x)


class GammaBeta(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(d_model))
        self.beta = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return self.gamma * (x - mean) / torch.sqrt(var + self.eps) + self.beta


class PlainTensors(GoodLayerNorm):
    def __init__(self, d_model, eps=1e-5):
        nn.Module.__init__(self)
        self.eps = eps
        self.weight = torch.ones(d_model)
        self.bias = torch.zeros(d_model)


class RandomInit(GoodLayerNorm):
    def __init__(self, d_model, eps=1e-5):
        super().__init__(d_model, eps)
        self.weight = nn.Parameter(torch.randn(d_model))


class ScalarWeight(GoodLayerNorm):
    def __init__(self, d_model, eps=1e-5):
        super().__init__(d_model, eps)
        self.weight = nn.Parameter(torch.ones(1))


# --------------------------------------------------------------------------- FeedForward


class GoodFeedForward(nn.Module):
    """A correct FeedForward, written independently of the reference and the notebook."""

    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)
        self.kind = activation

    def act(self, h):
        if self.kind == "gelu":
            return 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
        return h.clamp(min=0)

    def forward(self, x):
        return self.linear2(self.act(self.linear1(x)))


class TanhGelu(GoodFeedForward):
    def act(self, h):
        return F.gelu(h, approximate="tanh") if self.kind == "gelu" else F.relu(h)


class NoActivation(GoodFeedForward):
    def forward(self, x):
        return self.linear2(self.linear1(x))


class ActivationAfter(GoodFeedForward):
    def forward(self, x):
        return self.act(self.linear2(self.linear1(x)))


class AlwaysRelu(GoodFeedForward):
    def act(self, h):
        return F.relu(h)


class HiddenIsDModel(GoodFeedForward):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__(d_model, d_model, activation)


class SwappedLinear(GoodFeedForward):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__(d_model, d_ff, activation)
        self.linear1 = nn.Linear(d_ff, d_model)


class MixesPositions(GoodFeedForward):
    def forward(self, x):
        return super().forward(x) + x.mean(1, keepdim=True)


# --------------------------------------------------------------------------- EncoderLayer


class GoodEncoderLayer(nn.Module):
    """A correct EncoderLayer built from the good parts above and the course's attention."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = attnlab.MultiHeadAttention(d_model, n_heads)
        self.ff = GoodFeedForward(d_model, d_ff, activation)
        self.norm1 = GoodLayerNorm(d_model, eps)
        self.norm2 = GoodLayerNorm(d_model, eps)
        self.drop = nn.Dropout(dropout)

    def attend(self, h, mask):
        return self.self_attn(h, h, h, mask)

    def forward(self, x, mask=None, return_weights=False):
        if self.norm_first:
            a, w = self.attend(self.norm1(x), mask)
            x = x + self.drop(a)
            x = x + self.drop(self.ff(self.norm2(x)))
        else:
            a, w = self.attend(x, mask)
            x = self.norm1(x + self.drop(a))
            x = self.norm2(x + self.drop(self.ff(x)))
        return (x, w) if return_weights else x


class ResidualFromNorm(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        if not self.norm_first:
            return super().forward(x, mask, return_weights)
        h = self.norm1(x)
        a, w = self.attend(h, mask)
        x = h + a
        h = self.norm2(x)
        x = h + self.ff(h)
        return (x, w) if return_weights else x


class AlwaysPre(GoodEncoderLayer):
    def __init__(self, *args, norm_first=False, **kwargs):
        super().__init__(*args, norm_first=True, **kwargs)


class NormFirstIgnored(GoodEncoderLayer):
    def __init__(self, *args, norm_first=False, **kwargs):
        super().__init__(*args, norm_first=False, **kwargs)


class FlagFlipped(GoodEncoderLayer):
    def __init__(self, *args, norm_first=False, **kwargs):
        super().__init__(*args, norm_first=not norm_first, **kwargs)


class NoResidual(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        a, w = self.attend(self.norm1(x) if self.norm_first else x, mask)
        x = a if self.norm_first else self.norm1(a)
        x = self.ff(self.norm2(x)) if self.norm_first else self.norm2(self.ff(x))
        return (x, w) if return_weights else x


class ResidualAfterNorm(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        a, w = self.attend(x, mask)
        x = x + self.norm1(a)
        x = x + self.norm2(self.ff(x))
        return (x, w) if return_weights else x


class SharedNorm(GoodEncoderLayer):
    def __init__(self, d_model, *args, eps=1e-5, **kwargs):
        super().__init__(d_model, *args, eps=eps, **kwargs)
        self.norm2 = self.norm1


class UsesNorm1Twice(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        a, w = self.attend(x, mask)
        x = self.norm1(x + a)
        x = self.norm1(x + self.ff(x))
        return (x, w) if return_weights else x


class FeedForwardFirst(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        x = self.norm2(x + self.ff(x))
        a, w = self.attend(x, mask)
        x = self.norm1(x + a)
        return (x, w) if return_weights else x


class IgnoresMask(GoodEncoderLayer):
    def attend(self, h, mask):
        return self.self_attn(h, h, h)


class InvertsMask(GoodEncoderLayer):
    def attend(self, h, mask):
        return self.self_attn(h, h, h, None if mask is None else ~mask)


class AveragedWeights(GoodEncoderLayer):
    def attend(self, h, mask):
        out, w = self.self_attn(h, h, h, mask)
        return out, w.mean(1)


class AlwaysTuple(GoodEncoderLayer):
    def forward(self, x, mask=None, return_weights=False):
        return super().forward(x, mask, return_weights=True)


class EpsNotPassed(GoodEncoderLayer):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__(d_model, n_heads, d_ff, dropout, norm_first, activation)


class ActivationNotPassed(GoodEncoderLayer):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__(d_model, n_heads, d_ff, dropout, norm_first, "relu", eps)


class BrokenNorms(GoodEncoderLayer):
    def __init__(self, d_model, *args, eps=1e-5, **kwargs):
        super().__init__(d_model, *args, eps=eps, **kwargs)
        self.norm1, self.norm2 = UnbiasedVariance(d_model, eps), UnbiasedVariance(d_model, eps)


class WrapsTorchLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__()
        self.inner = attnlab.EncoderLayer(d_model, n_heads, d_ff, norm_first=norm_first,
                                          activation=activation, eps=eps)
        self.self_attn, self.ff = self.inner.self_attn, self.inner.ff
        self.norm1, self.norm2 = self.inner.norm1, self.inner.norm2
        self.torch_layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                                      batch_first=True, norm_first=norm_first)

    def forward(self, x, mask=None, return_weights=False):
        return self.torch_layer(x, src_mask=None if mask is None else ~mask)


class CallsCourseLayer(WrapsTorchLayer):
    def forward(self, x, mask=None, return_weights=False):
        return self.inner(x, mask, return_weights)




WRONG_LAYER_NORMS = [
    (EpsOutside, "layernorm.values", r"eps is added outside the square root"),
    (UnbiasedVariance, "layernorm.values", r"unbiased variance"),
    (UnbiasedVariance, "layernorm.normalised", r"\(d_model - 1\) / d_model"),
    (AnnotatedTransformerNorm, "layernorm.values", r"Annotated Transformer"),
    (OverSequence, "layernorm.values", r"sequence axis \(1\)"),
    (OverSequence, "layernorm.independent", r"mixes tokens"),
    (OverBatch, "layernorm.values", r"batch axis \(0\).*batch normalisation"),
    (NoAffine, "layernorm.values", r"without weight and bias"),
    (RMSNorm, "layernorm.values", r"RMSNorm"),
    (RMSNorm, "layernorm.normalised", r"mean 0"),
    (EpsIgnored, "layernorm.values", r"built with eps=0.5"),
    (CallsTorch, "layernorm.values", r"calls PyTorch's layer norm"),
    (WrapsTorch, "layernorm.values", r"calls PyTorch's layer norm"),
    (CallsCourse, "layernorm.values", r"calls the course's own LayerNorm"),
    (GammaBeta, "layernorm.values", r"no attribute `weight`"),
    (GammaBeta, "layernorm.params", r"no tensor attribute `weight`"),
    (PlainTensors, "layernorm.params", r"plain tensor"),
    (RandomInit, "layernorm.params", r"weight = ones and bias = zeros"),
    (ScalarWeight, "layernorm.params", r"shape \(1,\)"),
    (not_written, "layernorm.values", r"not written yet"),
    (not_written, "layernorm.params", r"not written yet"),
]

WRONG_FEED_FORWARDS = [
    (TanhGelu, "ff.gelu", r"tanh approximation"),
    (NoActivation, "ff.relu", r"no activation"),
    (ActivationAfter, "ff.relu", r"applied after linear2"),
    (AlwaysRelu, "ff.gelu", r"built with activation=\"gelu\""),
    (HiddenIsDModel, "ff.relu", r"hidden width should be d_ff"),
    (SwappedLinear, "ff.relu", r"sizes look swapped"),
    (MixesPositions, "ff.relu", r"does not match the reference .*largest error"),
    (not_written, "ff.relu", r"not written yet"),
]

WRONG_ENCODER_LAYERS = [
    (ResidualFromNorm, "encoder.pre_norm", r"norm\(x\) \+ sublayer\(norm\(x\)\)"),
    (AlwaysPre, "encoder.post_norm", r"matches the PRE-norm layer"),
    (NormFirstIgnored, "encoder.pre_norm", r"matches the POST-norm layer"),
    (FlagFlipped, "encoder.post_norm", r"norm_first=False"),
    (FlagFlipped, "encoder.torch_pre", r"torch.nn.TransformerEncoderLayer.*POST-norm"),
    (NoResidual, "encoder.post_norm", r"without residual connections"),
    (NoResidual, "encoder.pre_norm", r"without residual connections"),
    (ResidualAfterNorm, "encoder.post_norm", r"residual is added after the norm"),
    (SharedNorm, "encoder.layout", r"norm1 and norm2 are the same module"),
    (SharedNorm, "encoder.post_norm", r"norm1 and norm2 are the same module"),
    (UsesNorm1Twice, "encoder.post_norm", r"uses norm1 for both sublayers"),
    (FeedForwardFirst, "encoder.post_norm", r"feed-forward applied before self-attention"),
    (IgnoresMask, "encoder.mask_weights", r"without the mask"),
    (InvertsMask, "encoder.mask_weights", r"inverted"),
    (AveragedWeights, "encoder.mask_weights", r"per head"),
    (AlwaysTuple, "encoder.post_norm", r"only the output tensor"),
    (EpsNotPassed, "encoder.layout", r"uses eps = 1e-5"),
    (ActivationNotPassed, "encoder.layout", r"ff uses relu"),
    (BrokenNorms, "encoder.post_norm", r"LayerNorm tests above"),
    (WrapsTorchLayer, "encoder.post_norm", r"calls PyTorch's nn.TransformerEncoderLayer"),
    (CallsCourseLayer, "encoder.pre_norm", r"calls the course's own EncoderLayer"),
    (not_written, "encoder.layout", r"not written yet"),
    (not_written, "encoder.mask_weights", r"not written yet"),
    # the hidden and torch checks name the same mistakes
    (AlwaysPre, "encoder.post_norm_hidden", r"gelu, eps=0.5.*matches the PRE-norm layer"),
    (NormFirstIgnored, "encoder.pre_norm_hidden", r"matches the POST-norm layer"),
    (EpsNotPassed, "encoder.pre_norm_hidden", r"norm1 uses eps = 1e-5.*built with eps=0.5"),
    (AlwaysPre, "encoder.torch_post", r"torch.nn.TransformerEncoderLayer.*PRE-norm"),
    (IgnoresMask, "encoder.mask_hidden", r"padding mask.*without the mask"),
    (AveragedWeights, "encoder.mask_hidden", r"per head, \(B, H, L, L\)"),
]


# ------------------------------------------------------------------------ one mistake, once

# A learner's notebook: the EncoderLayer builds their own LayerNorm (unbiased variance) and
# FeedForward (no activation) by name, and is wired correctly.
NOTEBOOK: dict = {"torch": torch, "nn": nn, "MultiHeadAttention": attnlab.MultiHeadAttention}
exec('''
class LayerNorm(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True)
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        self.linear1 = nn.Linear(d_model, d_ff)
        self.linear2 = nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(self.linear1(x))


class EncoderLayer(nn.Module):
    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = FeedForward(d_model, d_ff, activation)
        self.norm1 = LayerNorm(d_model, eps)
        self.norm2 = LayerNorm(d_model, eps)

    def forward(self, x, mask=None, return_weights=False):
        if self.norm_first:
            h = self.norm1(x)
            a, w = self.self_attn(h, h, h, mask)
            x = x + a
            x = x + self.ff(self.norm2(x))
        else:
            a, w = self.self_attn(x, x, x, mask)
            x = self.norm1(x + a)
            x = self.norm2(x + self.ff(x))
        return (x, w) if return_weights else x


from autograder.checks.lesson06.cases import StandInFeedForward, StandInLayerNorm


class LayerNormStealing(StandInLayerNorm):
    pass


class LayerNormWrapping(nn.Module):
    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.inner = StandInLayerNorm(d_model, eps)
        self.weight, self.bias = self.inner.weight, self.inner.bias

    def forward(self, x):
        return self.inner(x)


class FeedForwardStealing(StandInFeedForward):
    pass
''', NOTEBOOK)

ISOLATION = [
    fails(NOTEBOOK["LayerNorm"], "layernorm.values", "unbiased variance", name="own-layernorm"),
    fails(NOTEBOOK["FeedForward"], "ff.relu", "no activation", name="own-feedforward"),
    # the EncoderLayer is judged on its own: its wrong parts cost their own checks only
    *passes(NOTEBOOK["EncoderLayer"], *ENCODER_IDS, name="encoder-over-own-wrong-parts"),
    *[fails(NOTEBOOK["LayerNormStealing"], cid, "the grader's stand-in LayerNorm",
            name="layernorm-is-the-stand-in") for cid in LN_IDS if cid != "layernorm.params"],
    fails(NOTEBOOK["LayerNormWrapping"], "layernorm.values", "the grader's stand-in LayerNorm",
          name="layernorm-wraps-the-stand-in"),
    *[fails(NOTEBOOK["FeedForwardStealing"], cid, "the grader's stand-in FeedForward",
            name="feedforward-is-the-stand-in") for cid in FF_IDS],
]


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(GoodLayerNorm, *LN_IDS),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_LAYER_NORMS],
    *passes(GoodFeedForward, *FF_IDS),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_FEED_FORWARDS],
    *passes(GoodEncoderLayer, *ENCODER_IDS),
    *[fails(cls, cid, message) for cls, cid, message in WRONG_ENCODER_LAYERS],
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_every_lesson06_check_is_exercised():
    """Do the correct-answer rows above reach every check this lesson registers?"""
    exercised = {row.check_id for row in ROWS if row.expect is None}
    assert set(LESSON06) == exercised
    assert set(LESSON06) <= set(REGISTRY)


@pytest.mark.parametrize("check_id", ["encoder.post_norm", "encoder.pre_norm",
                                      "encoder.layout"])
def test_isolation_rows_can_fail(check_id, monkeypatch):
    """Without the stand-ins, the notebook's EncoderLayer would pay for its wrong LayerNorm
    and FeedForward again: the isolation rows above are not true by construction."""
    for name in list(cases.ENCODER_STAND_INS):
        monkeypatch.delitem(cases.ENCODER_STAND_INS, name)
    with pytest.raises(CheckFailed):
        check(check_id, NOTEBOOK["EncoderLayer"])
