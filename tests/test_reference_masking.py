"""Lesson 04's reference masks, NaN-safe attention and future-leak detector."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import (
    MultiHeadAttention,
    causal_mask,
    leaks_future,
    masked_attention,
    padding_mask,
    scaled_dot_product_attention,
)

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-5)


@FAST
@given(st.integers(0, 20))
def test_causal_mask_is_lower_triangular(L):
    """Is causal_mask(L) True exactly where j <= i, as a bool (L, L) tensor?"""
    assert torch.equal(causal_mask(L), torch.ones(L, L).tril().bool())


def test_padding_mask_marks_real_tokens():
    """Does padding_mask give (B, 1, 1, max_len) with True on the first lengths[b] tokens?"""
    want = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], dtype=torch.bool)
    for lengths in ([2, 4, 0], torch.tensor([2, 4, 0])):
        mask = padding_mask(lengths, 4)
        assert mask.dtype == torch.bool and mask.shape == (3, 1, 1, 4)
        assert torch.equal(mask[:, 0, 0], want)


def test_padding_mask_rejects_lengths_past_max_len():
    """Does a length longer than max_len raise instead of silently clipping?"""
    with pytest.raises(ValueError, match="lengths"):
        padding_mask([5], 4)


@st.composite
def masked_case(draw):
    """q, k, v (B, H, Lq, d), (B, H, Lk, d) and a random mask with some rows fully masked."""
    B, H, Lq, Lk, d = (draw(st.integers(1, 4)) for _ in range(5))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    q = torch.randn(B, H, Lq, d, generator=g, requires_grad=True)
    k = torch.randn(B, H, Lk, d, generator=g, requires_grad=True)
    v = torch.randn(B, H, Lk, d + 1, generator=g, requires_grad=True)
    mask = torch.rand(B, 1, Lq, Lk, generator=g) < draw(st.sampled_from([0.2, 0.5, 0.9]))
    return q, k, v, mask


@FAST
@given(masked_case())
def test_masked_attention_is_nan_safe(case):
    """Do fully masked rows give zero weights and outputs, others torch's values, grads finite?"""
    q, k, v, mask = case
    output, weights = masked_attention(q, k, v, mask)
    empty = ~mask.any(-1).expand(q.shape[:-1])  # (B, H, Lq): rows with no visible key
    assert (weights[empty] == 0).all() and (output[empty] == 0).all()
    assert (weights.masked_select(~mask) == 0).all()
    rescued = mask | ~mask.any(-1, keepdim=True)  # give torch a key in every row
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=rescued)
    assert_close(output[~empty], want[~empty], **TOL)
    (output.sum() + weights.sum()).backward()
    assert all(torch.isfinite(t.grad).all() for t in (q, k, v))


@FAST
@given(masked_case())
def test_masked_attention_equals_sdpa_without_empty_rows(case):
    """Without fully masked rows, does masked_attention equal lesson 02's attention?"""
    q, k, v, mask = case
    mask = mask.clone()
    mask[..., 0] = True
    got, want = masked_attention(q, k, v, mask), scaled_dot_product_attention(q, k, v, mask)
    assert_close(got, want, atol=0, rtol=0)


def test_masked_attention_accepts_no_mask():
    """Is mask=None plain, unmasked attention?"""
    q = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    assert_close(masked_attention(q, q, q, None)[0], F.scaled_dot_product_attention(q, q, q))


def causal_attention(x):
    return masked_attention(x, x, x, causal_mask(x.size(1)))


def full_attention(x):
    return masked_attention(x, x, x, None)


def off_by_one_attention(x):  # sees one token ahead: the classic tril(1) slip
    L = x.size(1)
    return masked_attention(x, x, x, torch.ones(L, L, dtype=torch.bool).tril(1))


def reverse_cumulative_mean(x):  # position i averages positions i..L-1
    counts = torch.arange(x.size(1), 0, -1, dtype=x.dtype)[:, None]
    return x.flip(1).cumsum(1).flip(1) / counts


def cumulative_sum(x):
    return x.cumsum(1)


def mha_tuple(causal):
    """A MultiHeadAttention returning (output, weights), with or without the causal mask."""
    gen = torch.Generator().manual_seed(0)
    mha = MultiHeadAttention(8, 2)
    for p in mha.parameters():
        torch.nn.init.normal_(p, std=0.3, generator=gen)
    return lambda x: mha(x, x, x, causal_mask(x.size(1)) if causal else None)


@pytest.mark.parametrize("fn, leaks", [
    (causal_attention, False),
    (cumulative_sum, False),
    (lambda x: 2 * x, False),
    (mha_tuple(causal=True), False),
    (full_attention, True),
    (off_by_one_attention, True),
    (reverse_cumulative_mean, True),
    (mha_tuple(causal=False), True),
])
def test_leaks_future(fn, leaks):
    """Does leaks_future flag exactly the functions whose outputs depend on later inputs?"""
    d_model = 8
    assert leaks_future(fn, 6, d_model, torch.Generator().manual_seed(1)) is leaks


def test_leaks_future_catches_a_leak_only_from_the_last_position():
    """Does leaks_future notice a leak that only the final input causes?"""
    def last_leaks(x):
        return x + x[:, -1:].sum() * (torch.arange(x.size(1)) == 0)[None, :, None]
    assert leaks_future(last_leaks, 5, 3, torch.Generator().manual_seed(0))
