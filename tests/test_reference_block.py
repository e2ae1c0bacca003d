"""Lesson 06's reference block against torch.nn.LayerNorm and torch.nn.TransformerEncoderLayer."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import EncoderLayer, FeedForward, LayerNorm, causal_mask, padding_mask
from tests.seeding import seeded

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-4)



@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(1, 16),
       st.sampled_from([1e-5, 1e-3, 0.5]), st.integers(0, 2**31))
def test_layer_norm_matches_torch(lead, d_model, eps, seed):
    """Does LayerNorm equal nn.LayerNorm (biased variance, eps inside the sqrt, affine)?"""
    g = torch.Generator().manual_seed(seed)
    ours, theirs = LayerNorm(d_model, eps), nn.LayerNorm(d_model, eps=eps)
    with torch.no_grad():
        for p in ("weight", "bias"):
            getattr(ours, p).copy_(torch.randn(d_model, generator=g))
            getattr(theirs, p).copy_(getattr(ours, p))
    x = torch.randn(*lead, d_model, generator=g) * 3 + 1
    assert_close(ours(x), theirs(x), **TOL)


def test_layer_norm_starts_as_identity_affine():
    """Does LayerNorm start with weight = ones and bias = zeros, as learnable parameters?"""
    norm = LayerNorm(6, eps=1e-3)
    assert norm.eps == 1e-3 and dict(norm.named_parameters()).keys() == {"weight", "bias"}
    assert torch.equal(norm.weight, torch.ones(6)) and torch.equal(norm.bias, torch.zeros(6))


def exact_gelu(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("activation, fn", [("relu", lambda x: x.clamp(min=0)),
                                            ("gelu", exact_gelu)])
def test_feed_forward_matches_manual(activation, fn):
    """Is FeedForward linear2(activation(linear1(x))), with the exact erf GELU?"""
    ff = seeded(0, lambda: FeedForward(6, 10, activation))
    x = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    hidden = fn(x @ ff.linear1.weight.T + ff.linear1.bias)
    assert_close(ff(x), hidden @ ff.linear2.weight.T + ff.linear2.bias)


def same_global_stream(seed, fn):
    """fn() run with the global stream reset to seed (dropout draws from it), then restored."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return fn()


def test_feed_forward_dropout_sits_between_activation_and_linear2():
    """In training, is dropout applied to the hidden activations, as in torch's layers?"""
    ff = seeded(0, lambda: FeedForward(6, 10, "gelu", dropout=0.5)).train()
    x = torch.randn(2, 3, 6, generator=torch.Generator().manual_seed(0))
    manual = lambda: ff.linear2(F.dropout(F.gelu(ff.linear1(x)), 0.5, training=True))
    assert_close(same_global_stream(3, lambda: ff(x)), same_global_stream(3, manual))


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_dropout_follows_each_sublayer(norm_first):
    """In training, is dropout applied to each sublayer's output before its residual add?"""
    layer = seeded(0, lambda: EncoderLayer(8, 2, 16, dropout=0.4, norm_first=norm_first)).train()
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    drop = lambda t: F.dropout(t, 0.4, training=True)
    attn = lambda h: drop(layer.self_attn(h, h, h)[0])  # attention-weight dropout inside

    def manual():
        if norm_first:
            h = x + attn(layer.norm1(x))
            return h + drop(layer.ff(layer.norm2(h)))
        h = layer.norm1(x + attn(x))
        return layer.norm2(h + drop(layer.ff(h)))

    assert_close(same_global_stream(5, lambda: layer(x)), same_global_stream(5, manual))


def test_feed_forward_rejects_unknown_activation():
    """Does an unknown activation name raise a ValueError listing the choices?"""
    with pytest.raises(ValueError, match="relu"):
        FeedForward(4, 8, activation="swish")


def torch_mask_args(mask_kind, B, L, g):
    """(ours, torch kwargs): our True = attend mask and torch's True = blocked equivalent."""
    if mask_kind == "causal":
        mask = causal_mask(L)
        return mask, {"src_mask": ~mask}
    if mask_kind == "padding":
        lengths = torch.randint(1, L + 1, (B,), generator=g)
        mask = padding_mask(lengths, L)
        return mask, {"src_key_padding_mask": ~mask[:, 0, 0]}
    return None, {}


@st.composite
def encoder_case(draw):
    B, L, H, d_head, d_ff = (draw(st.integers(1, 4)) for _ in range(5))
    norm_first, batch_first = draw(st.booleans()), draw(st.booleans())
    activation = draw(st.sampled_from(["relu", "gelu", F.gelu, nn.ReLU()]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    layer = seeded(seed, lambda: nn.TransformerEncoderLayer(
        H * d_head, H, d_ff, dropout=0.1, activation=activation, layer_norm_eps=1e-4,
        batch_first=batch_first, norm_first=norm_first, bias=bias).eval())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # give the zero-initialised biases and unit norms real values
        for name, p in layer.named_parameters():
            if "bias" in name or "norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    x = torch.randn(B, L, H * d_head, generator=g)
    mask, kwargs = torch_mask_args(draw(st.sampled_from(["none", "causal", "padding"])), B, L, g)
    return layer, x, mask, kwargs


@FAST
@given(encoder_case())
def test_encoder_layer_from_torch_matches_torch(case):
    """Does EncoderLayer.from_torch equal TransformerEncoderLayer (both norms, masks translated)?"""
    layer, x, mask, kwargs = case
    ours = EncoderLayer.from_torch(layer).eval()
    assert ours.norm_first == layer.norm_first and ours.ff.dropout.p == 0.1
    with torch.no_grad():
        if layer.self_attn.batch_first:
            want = layer(x, **kwargs)
        else:
            want = layer(x.transpose(0, 1), **kwargs).transpose(0, 1)
        got, weights = ours(x, mask, return_weights=True)
    if mask is not None and mask.dim() == 4:  # torch's fast path zeroes padded positions
        keep = mask[:, 0, 0]
        got, want = got[keep], want[keep]
    assert_close(got, want, **TOL)
    B, L = x.shape[:2]
    assert weights.shape == (B, layer.self_attn.num_heads, L, L)


def test_encoder_layer_layout_and_defaults():
    """Does EncoderLayer expose self_attn, ff, norm1, norm2 and return x unless asked?"""
    layer = seeded(0, lambda: EncoderLayer(8, 2, 16))
    assert not layer.norm_first and layer.ff.activation == "relu" and layer.norm1.eps == 1e-5
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0))
    out = layer(x)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_pre_and_post_norm_formulas(norm_first):
    """Is post-norm norm2(h + ff(h)), h = norm1(x + attn(x)), and pre-norm the residual form?"""
    layer = seeded(1, lambda: EncoderLayer(8, 2, 16, norm_first=norm_first))
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(1))
    attn = lambda h: layer.self_attn(h, h, h)[0]
    if norm_first:
        h = x + attn(layer.norm1(x))
        want = h + layer.ff(layer.norm2(h))
    else:
        h = layer.norm1(x + attn(x))
        want = layer.norm2(h + layer.ff(h))
    assert_close(layer(x), want)


def test_encoder_from_torch_rejects_tanh_gelu():
    """Does from_torch refuse an activation it cannot reproduce exactly (tanh GELU)?"""
    layer = nn.TransformerEncoderLayer(8, 2, 16, activation=nn.GELU(approximate="tanh"))
    with pytest.raises(ValueError, match="activation"):
        EncoderLayer.from_torch(layer)


def test_encoder_dropout_is_active_only_in_training():
    """Does dropout change outputs in train mode and vanish in eval mode?"""
    layer = seeded(0, lambda: EncoderLayer(8, 2, 16, dropout=0.5))
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(0))
    train = same_global_stream(0, lambda: (layer.train()(x), layer(x)))
    assert not torch.allclose(*train)
    assert torch.equal(layer.eval()(x), layer(x))
