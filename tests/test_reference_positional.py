"""Lesson 05's reference positional encodings against the papers' formulas, written differently."""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import (
    LearnedPositionalEmbedding,
    alibi_bias,
    apply_rope,
    sinusoidal_encoding,
)

FAST = settings(max_examples=25, deadline=None)


@FAST
@given(st.integers(1, 60), st.integers(1, 33))
def test_sinusoidal_matches_paper_loop(max_len, d_model):
    """Is PE[pos, 2i] = sin(pos / 10000^(2i/d)) and PE[pos, 2i+1] = cos(...), odd d included?"""
    want = np.zeros((max_len, d_model))
    for pos in range(max_len):
        for dim in range(d_model):
            two_i = dim - dim % 2
            angle = pos / 10000 ** (two_i / d_model)
            want[pos, dim] = math.sin(angle) if dim % 2 == 0 else math.cos(angle)
    pe = sinusoidal_encoding(max_len, d_model)
    assert pe.dtype == torch.float32 and pe.shape == (max_len, d_model)
    np.testing.assert_allclose(pe.numpy(), want, atol=1e-6)


def test_learned_positional_embedding_adds_rows_in_order():
    """Does LearnedPositionalEmbedding add embedding row p at position p, for p < L?"""
    layer = LearnedPositionalEmbedding(10, 4)
    assert isinstance(layer.embedding, nn.Embedding) and layer.embedding.weight.shape == (10, 4)
    x = torch.randn(2, 7, 4, generator=torch.Generator().manual_seed(0))
    assert_close(layer(x), x + layer.embedding.weight[:7])


def test_learned_positional_embedding_refuses_past_max_len():
    """Does a sequence longer than max_len raise a ValueError instead of an index error?"""
    with pytest.raises(ValueError, match="max_len"):
        LearnedPositionalEmbedding(4, 2)(torch.zeros(1, 5, 2))


def rope_complex(x, positions, base):
    """RoPE as complex multiplication: pair (2i, 2i+1) is a + ib, turned by pos * theta_i."""
    d_head = x.size(-1)
    theta = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)
    turn = torch.polar(torch.ones(len(positions), d_head // 2, dtype=torch.float64),
                       positions.double()[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d_head // 2, 2).contiguous())
    return torch.view_as_real(z * turn).flatten(-2)


@st.composite
def rope_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    L, half = draw(st.integers(1, 9)), draw(st.integers(1, 8))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    x = torch.randn(*lead, L, 2 * half, generator=g, dtype=torch.float64)
    custom = draw(st.booleans())
    positions = torch.randint(0, 500, (L,), generator=g) if custom else None
    return x, positions, draw(st.sampled_from([10000.0, 100.0]))


@FAST
@given(rope_case())
def test_rope_matches_complex_rotation(case):
    """Does apply_rope equal multiplying each interleaved pair by e^(i pos theta)?"""
    x, positions, base = case
    want = rope_complex(x, torch.arange(x.size(-2)) if positions is None else positions, base)
    assert_close(apply_rope(x, positions, base), want, atol=1e-10, rtol=1e-10)


@FAST
@given(rope_case())
def test_rope_keeps_pair_norms(case):
    """Does RoPE only rotate, keeping the norm of every (2i, 2i+1) pair?"""
    x, positions, base = case
    pairs = lambda t: t.unflatten(-1, (-1, 2)).norm(dim=-1)
    assert_close(pairs(apply_rope(x, positions, base)), pairs(x))


@FAST
@given(st.integers(0, 200), st.integers(0, 200), st.integers(0, 300), st.integers(1, 8),
       st.integers(0, 2**31))
def test_rope_dot_product_depends_on_offset_only(m, n, shift, half, seed):
    """Is rope(q, m) . rope(k, n) unchanged when m and n are shifted together?"""
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(2, 1, 2 * half, generator=g)
    dot = lambda a, b: (apply_rope(q, torch.tensor([a])) * apply_rope(k, torch.tensor([b]))).sum()
    assert_close(dot(m, n), dot(m + shift, n + shift), atol=1e-4, rtol=1e-4)


def test_rope_float32_default_positions():
    """Do float32 inputs stay float32, with positions 0..L-1 by default (position 0 unchanged)?"""
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    out = apply_rope(x)
    assert out.dtype == torch.float32
    assert_close(out, apply_rope(x, torch.arange(5)))
    assert_close(out[:, 0], x[:, 0])


def test_rope_rejects_odd_width_and_bad_positions():
    """Does RoPE refuse an odd d_head and positions of the wrong length?"""
    with pytest.raises(ValueError, match="even"):
        apply_rope(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="positions"):
        apply_rope(torch.zeros(3, 4), torch.arange(4))


def authors_slopes(n):
    """The ALiBi authors' get_slopes (ofirpress/attention_with_linear_biases), transcribed."""
    def power_of_2(n):
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]
    if math.log2(n).is_integer():
        return power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return power_of_2(closest) + authors_slopes(2 * closest)[0::2][: n - closest]


@FAST
@given(st.integers(1, 24), st.integers(0, 10))
def test_alibi_matches_authors_code(n_heads, L):
    """Is bias[h, i, j] = -slope_h * |i - j| with the slopes of the authors' get_slopes?"""
    slopes = authors_slopes(n_heads)
    want = np.zeros((n_heads, L, L))
    for h in range(n_heads):
        for i in range(L):
            for j in range(L):
                want[h, i, j] = -slopes[h] * abs(i - j)
    got = alibi_bias(n_heads, L)
    assert got.shape == (n_heads, L, L) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_heads", range(1, 17))
def test_alibi_slopes_match_transformers_bloom(n_heads):
    """Are the slopes those of transformers' BLOOM build_alibi_tensor, powers of two or not?"""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    bloom = build_alibi_tensor(torch.ones(1, 4, dtype=torch.long), n_heads, torch.float32)
    # bloom: (H, 1, 4) = slope_h * key position; ours: row 0 = -slope_h * |0 - j|
    assert_close(-alibi_bias(n_heads, 4)[:, 0], bloom[:, 0])


def test_alibi_six_heads_are_not_the_power_of_two_formula():
    """For H = 6: the four slopes of H' = 4, then slopes 0 and 2 of H = 8 (1/2 and 1/8)?"""
    slopes = -alibi_bias(6, 2)[:, 0, 1]
    assert_close(slopes, torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3]))
    naive = 2.0 ** (-8.0 * torch.arange(1, 7) / 6)
    assert not torch.allclose(slopes, naive)


def test_alibi_rejects_zero_heads():
    """Does alibi_bias refuse n_heads = 0 with a clear message?"""
    with pytest.raises(ValueError, match="n_heads"):
        alibi_bias(0, 3)


def test_alibi_slopes_for_eight_heads():
    """Are the eight-head slopes 1/2, 1/4, ..., 1/256, as in the ALiBi paper?"""
    slopes = -alibi_bias(8, 2)[:, 0, 1]
    assert_close(slopes, torch.tensor([2.0**-k for k in range(1, 9)]))
