"""Lessons 02-03: scaled dot-product attention, a single self-attention head, multi-head attention.

Masks are boolean, True = may attend, broadcastable to (..., Lq, Lk). This is the opposite of
``torch.nn.MultiheadAttention``'s boolean masks (True = blocked): pass ``~mask`` there.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {
    "scaled_dot_product_attention": 2,
    "SelfAttention": 2,
    "split_heads": 3,
    "merge_heads": 3,
    "MultiHeadAttention": 3,
}


def _attention_weights(q: Tensor, k: Tensor, mask: Tensor | None, nan_safe: bool) -> Tensor:
    """softmax(q k^T / sqrt(d_head)) over keys; masked scores are -inf before the softmax.

    With ``nan_safe`` a query row whose keys are all masked gets zero weights (not NaN) and
    every masked weight is exactly 0; gradients stay finite.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk)
    if mask is None:
        return torch.softmax(scores, dim=-1)
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor (True = may attend), got {mask.dtype}")
    mask = mask.to(scores.device)
    scores = torch.where(mask, scores, float("-inf"))  # (..., Lq, Lk)
    if not nan_safe:
        return torch.softmax(scores, dim=-1)
    scores = torch.where(mask.any(-1, keepdim=True), scores, 0.0)  # all-masked rows: finite
    return torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)  # (..., Lq, Lk)


def scaled_dot_product_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Vaswani et al. (2017) eq. 1. A fully masked row gives NaN: see masking.masked_attention."""
    weights = _attention_weights(q, k, mask, nan_safe=False)  # (..., Lq, Lk)
    return weights @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)


class SelfAttention(nn.Module):
    """One head; W_q, W_k, W_v are nn.Linear(d_model, d_k, bias=False); output (B, L, d_k)."""

    def __init__(self, d_model: int, d_k: int):
        super().__init__()
        self.W_q = nn.Linear(d_model, d_k, bias=False)
        self.W_k = nn.Linear(d_model, d_k, bias=False)
        self.W_v = nn.Linear(d_model, d_k, bias=False)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # (B, L, d_k) each
        return scaled_dot_product_attention(q, k, v, mask)  # (B, L, d_k), (B, L, L)


def split_heads(x: Tensor, n_heads: int) -> Tensor:
    """(B, L, d_model) -> (B, H, L, d_head): head h gets features h*d_head .. (h+1)*d_head - 1."""
    if x.size(-1) % n_heads:
        raise ValueError(f"d_model={x.size(-1)} is not divisible by n_heads={n_heads}")
    return x.unflatten(-1, (n_heads, -1)).transpose(-3, -2)  # (B, H, L, d_head)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, d_head) -> (B, L, H * d_head), the inverse of split_heads."""
    return x.transpose(-3, -2).flatten(-2)  # (B, L, d_model)


class MultiHeadAttention(nn.Module):
    """H heads of width d_head = d_model // H, concatenated and projected back to d_model.

    Masks: True = may attend, broadcastable to (B, H, Lq, Lk); fully masked query rows give
    zero weights and a zero attention output (before out_proj's bias). Weights are returned
    per head, (B, H, Lq, Lk), never averaged, and before attention dropout.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)  # on the attention weights, as in torch

    def project(self, query: Tensor, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Project and split into heads: q (B, H, Lq, d_head), k and v (B, H, Lk, d_head)."""
        return (
            split_heads(self.q_proj(query), self.n_heads),
            split_heads(self.k_proj(key), self.n_heads),
            split_heads(self.v_proj(value), self.n_heads),
        )

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """NaN-safe attention (as masking.masked_attention) on projected heads, merge, out_proj."""
        weights = _attention_weights(q, k, mask, nan_safe=True)  # (B, H, Lq, Lk)
        heads = self.dropout(weights) @ v  # (B, H, Lq, d_head)
        return self.out_proj(merge_heads(heads)), weights  # (B, Lq, d_model), (B, H, Lq, Lk)

    def forward(
        self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        return self.attend(*self.project(query, key, value), mask)

    @classmethod
    def from_torch(cls, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy a torch.nn.MultiheadAttention (batch_first or not); ours is always batch first."""
        if not mha._qkv_same_embed_dim:
            raise ValueError("from_torch needs kdim == vdim == embed_dim (one packed in_proj)")
        if mha.bias_k is not None or mha.add_zero_attn:
            raise ValueError("from_torch does not support add_bias_kv or add_zero_attn")
        bias = mha.in_proj_bias is not None
        new = cls(mha.embed_dim, mha.num_heads, bias=bias, dropout=mha.dropout)
        new = new.to(mha.in_proj_weight)  # same device and dtype
        names = ("q_proj", "k_proj", "v_proj")
        state = {f"{n}.weight": w for n, w in zip(names, mha.in_proj_weight.chunk(3), strict=True)}
        if bias:
            state |= {f"{n}.bias": b for n, b in zip(names, mha.in_proj_bias.chunk(3), strict=True)}
        state.update({f"out_proj.{name}": t for name, t in mha.out_proj.state_dict().items()})
        new.load_state_dict(state)
        return new
