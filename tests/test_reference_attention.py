"""Lessons 02-03's reference kernels against torch's own attention implementations."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import (
    MultiHeadAttention,
    SelfAttention,
    merge_heads,
    scaled_dot_product_attention,
    split_heads,
)
from tests.seeding import seeded

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-5)



def random_mask(shape, g):
    """Random bool mask (True = may attend) leaving every query row at least one key."""
    mask = torch.rand(shape, generator=g) < 0.6
    keep = torch.randint(0, shape[-1], shape[:-1], generator=g)  # one key per row
    return mask | F.one_hot(keep, shape[-1]).bool()


@st.composite
def qkv(draw):
    """q, k, v with 1 or 2 leading dims, Lq != Lk allowed, and a generator for masks."""
    lead = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
    Lq, Lk, d, d_v = (draw(st.integers(1, 7)) for _ in range(4))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    q, k = torch.randn(*lead, Lq, d, generator=g), torch.randn(*lead, Lk, d, generator=g)
    return q, k, torch.randn(*lead, Lk, d_v, generator=g), g


@FAST
@given(qkv(), st.sampled_from(["none", "full", "broadcast"]))
def test_sdpa_matches_torch(case, mask_kind):
    """Does scaled_dot_product_attention equal F.scaled_dot_product_attention, masked or not?"""
    q, k, v, g = case
    shapes = {"full": (*q.shape[:-1], k.size(-2)), "broadcast": (q.size(-2), k.size(-2))}
    mask = None if mask_kind == "none" else random_mask(shapes[mask_kind], g)
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert_close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)
    assert weights.shape == (*q.shape[:-1], k.size(-2))
    assert_close(weights.sum(-1), torch.ones(q.shape[:-1]), **TOL)
    if mask is not None:
        assert (weights[~mask.expand_as(weights)] == 0).all()


def test_sdpa_scales_by_sqrt_d():
    """Are scores divided by sqrt(d), so a doubled d with repeated features keeps the weights?"""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 3, generator=g) for _ in range(3))
    _, w = scaled_dot_product_attention(q, k, v)
    _, w2 = scaled_dot_product_attention(q.repeat(1, 1, 2) / 2**0.5, k.repeat(1, 1, 2), v)
    assert_close(w, w2, **TOL)


def test_sdpa_fully_masked_row_is_nan():
    """Does lesson 02's plain attention leave a fully masked row NaN, as its docstring says?"""
    q = k = v = torch.randn(1, 3, 4, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(3, 3, dtype=torch.bool)
    mask[1] = False
    output, weights = scaled_dot_product_attention(q, k, v, mask)
    assert weights[0, 1].isnan().all() and not weights[0, 0].isnan().any()


def test_sdpa_rejects_float_masks():
    """Does a float (additive) mask raise a TypeError that names the bool convention?"""
    q = torch.ones(2, 3, 4)
    with pytest.raises(TypeError, match="True = may attend"):
        scaled_dot_product_attention(q, q, q, torch.zeros(3, 3))


@FAST
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 8), st.integers(1, 8),
       st.integers(0, 2**31))
def test_self_attention_projects_then_attends(B, L, d_model, d_k, seed):
    """Is SelfAttention attention over W_q x, W_k x, W_v x, with bias-free (d_k, d_model) maps?"""
    layer = seeded(seed, lambda: SelfAttention(d_model, d_k))
    for W in (layer.W_q, layer.W_k, layer.W_v):
        assert isinstance(W, nn.Linear) and W.bias is None and W.weight.shape == (d_k, d_model)
    x = torch.randn(B, L, d_model, generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(L, L, dtype=torch.bool).tril()
    output, weights = layer(x, mask)
    q, k, v = x @ layer.W_q.weight.T, x @ layer.W_k.weight.T, x @ layer.W_v.weight.T
    assert output.shape == (B, L, d_k) and weights.shape == (B, L, L)
    assert_close(output, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), **TOL)


@FAST
@given(st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(1, 5),
       st.integers(0, 2**31))
def test_split_and_merge_heads(B, L, H, d_head, seed):
    """Do split_heads / merge_heads match view+transpose and undo each other?"""
    x = torch.randn(B, L, H * d_head, generator=torch.Generator().manual_seed(seed))
    heads = split_heads(x, H)
    assert torch.equal(heads, x.view(B, L, H, d_head).transpose(1, 2))
    assert torch.equal(merge_heads(heads), x)
    assert torch.equal(merge_heads(heads), heads.transpose(1, 2).contiguous().view(B, L, -1))


def test_split_heads_rejects_indivisible_width():
    """Does split_heads refuse a d_model that n_heads does not divide?"""
    with pytest.raises(ValueError, match="divisible"):
        split_heads(torch.randn(1, 2, 10), 3)


def torch_mha_reference(mha, query, key, value, mask):
    """torch's MHA on batch-first input with our mask (True = attend) translated for it."""
    B, H, Lq, Lk = query.size(0), mha.num_heads, query.size(1), key.size(1)
    attn_mask = None if mask is None else ~mask.expand(B, H, Lq, Lk).reshape(B * H, Lq, Lk)
    if not mha.batch_first:
        query, key, value = (t.transpose(0, 1) for t in (query, key, value))
    out, w = mha(query, key, value, attn_mask=attn_mask, average_attn_weights=False)
    return (out if mha.batch_first else out.transpose(0, 1)), w


@st.composite
def mha_case(draw):
    B, Lq, Lk, H, d_head = (draw(st.integers(1, 4)) for _ in range(5))
    bias, batch_first, masked = draw(st.booleans()), draw(st.booleans()), draw(st.booleans())
    seed = draw(st.integers(0, 2**31))
    mha = seeded(seed, lambda: nn.MultiheadAttention(H * d_head, H, bias=bias,
                                                     batch_first=batch_first))
    g = torch.Generator().manual_seed(seed)
    if bias:  # torch zero-initialises the biases: make them count
        nn.init.normal_(mha.in_proj_bias, generator=g)
        nn.init.normal_(mha.out_proj.bias, generator=g)
    query = torch.randn(B, Lq, H * d_head, generator=g)
    key, value = (torch.randn(B, Lk, H * d_head, generator=g) for _ in range(2))
    mask = random_mask((B, H, Lq, Lk), g) if masked else None
    return mha, query, key, value, mask


@FAST
@given(mha_case())
def test_mha_from_torch_matches_torch(case):
    """Does MultiHeadAttention.from_torch reproduce nn.MultiheadAttention, per-head weights too?"""
    mha, query, key, value, mask = case
    ours = MultiHeadAttention.from_torch(mha)
    assert (ours.d_model, ours.n_heads, ours.d_head) == (
        mha.embed_dim, mha.num_heads, mha.head_dim)
    output, weights = ours(query, key, value, mask)
    want_out, want_w = torch_mha_reference(mha, query, key, value, mask)
    assert_close(output, want_out, **TOL)
    assert_close(weights, want_w, **TOL)


def test_mha_from_torch_rejects_separate_kv_dims():
    """Does from_torch refuse a torch MHA whose kdim/vdim differ from embed_dim?"""
    with pytest.raises(ValueError, match="kdim"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, kdim=4, vdim=4))
    with pytest.raises(ValueError, match="add_bias_kv"):
        MultiHeadAttention.from_torch(nn.MultiheadAttention(8, 2, add_bias_kv=True))


def test_mha_fully_masked_rows_are_zero_not_nan():
    """Does a query with every key masked get zero weights and only out_proj's bias?"""
    mha = seeded(0, lambda: MultiHeadAttention(8, 2))
    x = torch.randn(2, 3, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    mask = torch.ones(2, 1, 3, 3, dtype=torch.bool)
    mask[1, :, 2] = False
    output, weights = mha(x, x, x, mask)
    assert (weights[1, :, 2] == 0).all()
    assert_close(output[1, 2], mha.out_proj.bias.detach().expand(8))
    output.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_mha_has_the_contract_layout():
    """Does MultiHeadAttention expose q/k/v/out projections, bias switch and head sizes?"""
    mha = MultiHeadAttention(12, 3, bias=False)
    assert (mha.d_model, mha.n_heads, mha.d_head) == (12, 3, 4)
    for proj in (mha.q_proj, mha.k_proj, mha.v_proj, mha.out_proj):
        assert isinstance(proj, nn.Linear) and proj.bias is None and proj.weight.shape == (12, 12)
    with pytest.raises(ValueError, match="divisible"):
        MultiHeadAttention(10, 3)
