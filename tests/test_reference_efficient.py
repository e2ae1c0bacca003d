"""Lesson 08's reference tiled, windowed and linear attention against direct computations."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from autograder.reference import (
    causal_mask,
    elu_plus_one,
    linear_attention,
    sliding_window_mask,
    tiled_attention,
)

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-4)


@st.composite
def tiled_case(draw):
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=2)))
    causal = draw(st.booleans())
    Lq, Lk = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    d, d_v = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    block_size = draw(st.sampled_from([1, 2, 3, 5, 7, 16, 32]))
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    q, k = torch.randn(*lead, Lq, d, generator=g) * 2, torch.randn(*lead, Lk, d, generator=g) * 2
    return q, k, torch.randn(*lead, Lk, d_v, generator=g), block_size, causal


@FAST
@given(tiled_case())
def test_tiled_attention_matches_torch(case):
    """Is tiled_attention exactly F.scaled_dot_product_attention, causal (top-left) or not?"""
    q, k, v, block_size, causal = case
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert_close(tiled_attention(q, k, v, block_size, causal=causal), want, **TOL)


class ShapeRecorder(TorchDispatchMode):
    """Records the shape of every tensor any torch operation produces."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.shapes += [t.shape for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        return out


@pytest.mark.parametrize("causal", [False, True])
def test_tiled_attention_never_forms_full_scores(causal):
    """Are all intermediate score tiles at most (block_size, block_size), never (Lq, Lk)?"""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 24, 5, generator=g) for _ in range(3))
    with ShapeRecorder() as recorder:
        tiled_attention(q, k, v, block_size=8, causal=causal)
    assert recorder.shapes, "the recorder saw no operations"
    assert all(tuple(s[-2:]) != (24, 24) for s in recorder.shapes)
    assert max(s[-2:].numel() for s in recorder.shapes if len(s) >= 2) <= 24 * 5


def test_tiled_attention_rejects_bad_block_size():
    """Does a block size below 1 raise a ValueError?"""
    q = torch.zeros(1, 4, 2)
    with pytest.raises(ValueError, match="block_size"):
        tiled_attention(q, q, q, 0)


@FAST
@given(st.integers(0, 16), st.integers(1, 20))
def test_sliding_window_mask_matches_loops(L, window):
    """Does query i see exactly keys i - window < j <= i?"""
    want = torch.tensor([[i - window < j <= i for j in range(L)] for i in range(L)],
                        dtype=torch.bool).reshape(L, L)
    assert torch.equal(sliding_window_mask(L, window), want)


def test_sliding_window_mask_edge_windows():
    """Is window 1 the diagonal, window >= L the causal mask, and window 0 an error?"""
    assert torch.equal(sliding_window_mask(5, 1), torch.eye(5, dtype=torch.bool))
    assert torch.equal(sliding_window_mask(5, 9), causal_mask(5))
    with pytest.raises(ValueError, match="window"):
        sliding_window_mask(5, 0)


def test_elu_plus_one_is_positive_feature_map():
    """Is elu(x) + 1 equal to x + 1 for x > 0 and exp(x) for x <= 0?"""
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    assert_close(elu_plus_one(x), torch.where(x > 0, x + 1, x.exp()))
    assert (elu_plus_one(x) > 0).all()


def quadratic_linear_attention(q, k, v, phi):
    """out_i = sum_j sim(i, j) v_j / sum_j sim(i, j), sim(i, j) = phi(q_i) . phi(k_j), as loops."""
    out = torch.empty(*q.shape[:-1], v.size(-1), dtype=torch.float64)
    for i in range(q.size(-2)):
        sims = [(phi(q[..., i, :]) * phi(k[..., j, :])).sum(-1) for j in range(k.size(-2))]
        numerator = sum(s[..., None] * v[..., j, :] for j, s in enumerate(sims))
        out[..., i, :] = numerator / sum(sims)[..., None]
    return out


@FAST
@given(st.lists(st.integers(1, 3), max_size=2), st.integers(1, 7), st.integers(1, 7),
       st.integers(1, 6), st.integers(1, 6), st.sampled_from(["elu+1", "exp", "relu+eps"]),
       st.integers(0, 2**31))
def test_linear_attention_matches_quadratic_form(lead, Lq, Lk, d, d_v, fmap, seed):
    """Does linear_attention equal the O(L^2) sum of feature-map similarities it reorders?"""
    phi = {"elu+1": elu_plus_one, "exp": torch.exp, "relu+eps": lambda x: F.relu(x) + 0.1}[fmap]
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(*lead, Lq, d, generator=g, dtype=torch.float64)
    k = torch.randn(*lead, Lk, d, generator=g, dtype=torch.float64)
    v = torch.randn(*lead, Lk, d_v, generator=g, dtype=torch.float64)
    got = linear_attention(q, k, v) if fmap == "elu+1" else linear_attention(q, k, v, phi)
    assert_close(got, quadratic_linear_attention(q, k, v, phi), atol=1e-10, rtol=1e-10)
