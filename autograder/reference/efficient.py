"""Lesson 08: attention that scales: exact tiled attention, sliding windows, linear attention."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {"tiled_attention": 8, "sliding_window_mask": 8, "linear_attention": 8}
# Kernels a lesson hands out ready-made (imported in its first cell): visible while that
# lesson is graded, withheld before it.
PROVIDED_IN = {"elu_plus_one": 8}


def elu_plus_one(x: Tensor) -> Tensor:
    """Katharopoulos et al. (2020)'s feature map elu(x) + 1: positive, so similarities are > 0."""
    return F.elu(x) + 1


def _online_softmax_rows(
    q: Tensor, k: Tensor, v: Tensor, block_size: int, row0: int, causal: bool
) -> Tensor:
    """One block of queries (from row row0) against key blocks, by the online softmax."""
    Lq_block, Lk = q.size(-2), k.size(-2)
    k_end = min(Lk, row0 + Lq_block) if causal else Lk  # later key blocks are fully masked
    m = q.new_full((*q.shape[:-1], 1), float("-inf"))  # (..., Lq_block, 1) running max
    l = q.new_zeros((*q.shape[:-1], 1))  # (..., Lq_block, 1) running denominator
    acc = q.new_zeros((*q.shape[:-1], v.size(-1)))  # (..., Lq_block, d_v) running numerator
    q = q / math.sqrt(q.size(-1))
    for j0 in range(0, k_end, block_size):
        s = q @ k[..., j0 : j0 + block_size, :].transpose(-2, -1)  # (..., Lq_block, block_size)
        if causal:
            i = torch.arange(row0, row0 + Lq_block, device=q.device)[:, None]
            j = torch.arange(j0, j0 + s.size(-1), device=q.device)
            s = s.masked_fill(j > i, float("-inf"))  # key 0 is always visible: m stays finite
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))  # (..., Lq_block, 1)
        p = torch.exp(s - m_new)  # (..., Lq_block, block_size)
        rescale = torch.exp(m - m_new)  # old sums were taken against the old max
        l = l * rescale + p.sum(-1, keepdim=True)
        acc = acc * rescale + p @ v[..., j0 : j0 + block_size, :]
        m = m_new
    return acc / l  # (..., Lq_block, d_v)


def tiled_attention(
    q: Tensor, k: Tensor, v: Tensor, block_size: int, causal: bool = False
) -> Tensor:
    """Exact softmax(q k^T / sqrt(d)) v in (block_size, block_size) tiles (FlashAttention's loop).

    Never forms the full (Lq, Lk) scores. causal: query i sees keys j <= i, aligned top-left
    like torch's scaled_dot_product_attention(is_causal=True).
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    rows = [
        _online_softmax_rows(q[..., i0 : i0 + block_size, :], k, v, block_size, i0, causal)
        for i0 in range(0, q.size(-2), block_size)
    ]
    return torch.cat(rows, dim=-2)  # (..., Lq, d_v)


def sliding_window_mask(L: int, window: int, device=None) -> Tensor:
    """(L, L) bool, True where i - window < j <= i: each query sees itself and window - 1 before."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    idx = torch.arange(L, device=device)
    distance = idx[:, None] - idx[None, :]  # (L, L): i - j
    return (distance >= 0) & (distance < window)  # (L, L)


def linear_attention(
    q: Tensor, k: Tensor, v: Tensor, feature_map: Callable[[Tensor], Tensor] = elu_plus_one
) -> Tensor:
    """Katharopoulos et al. (2020), non-causal: phi(q) (phi(k)^T v) / (phi(q) . sum_j phi(k_j))."""
    phi_q, phi_k = feature_map(q), feature_map(k)  # (..., Lq, d), (..., Lk, d)
    kv = phi_k.transpose(-2, -1) @ v  # (..., d, d_v): O(L d d_v), no (Lq, Lk) matrix
    z = phi_k.sum(-2, keepdim=True).transpose(-2, -1)  # (..., d, 1)
    return (phi_q @ kv) / (phi_q @ z)  # (..., Lq, d_v)
