"""Lesson 05: positional information, absolute (sinusoidal, learned) and relative (RoPE, ALiBi)."""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {
    "sinusoidal_encoding": 5,
    "LearnedPositionalEmbedding": 5,
    "apply_rope": 5,
    "alibi_slopes": 5,
    "alibi_bias": 5,
}


def sinusoidal_encoding(max_len: int, d_model: int, device=None) -> Tensor:
    """Vaswani et al. (2017), sec. 3.5: PE[pos, 2i] = sin(pos / 10000^(2i/d_model)), 2i+1: cos.

    Computed in float64, returned as float32 (max_len, d_model). An odd d_model is allowed:
    its last column is a sine (the cosine partner would fall outside the width).
    """
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)  # (ceil(d_model / 2),)
    angle = pos / 10000.0 ** (two_i / d_model)  # (max_len, ceil(d_model / 2))
    pe = torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(-2)  # sin, cos interleaved
    return pe[:, :d_model].to(device=device, dtype=torch.float32)  # (max_len, d_model)


class LearnedPositionalEmbedding(nn.Module):
    """Adds a learned vector per position 0..L-1 (GPT, BERT); at most max_len positions."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def forward(self, x: Tensor) -> Tensor:
        L = x.size(1)
        if L > self.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len={self.max_len}")
        return x + self.embedding(torch.arange(L, device=x.device))  # (B, L, d_model)


def apply_rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0) -> Tensor:
    """RoFormer (Su et al., 2021): rotate pair (2i, 2i+1) of x (..., L, d_head) by pos * theta_i.

    theta_i = base^(-2i / d_head); positions default to 0..L-1 (a tensor of shape (L,)).
    """
    L, d_head = x.shape[-2:]
    if d_head % 2:
        raise ValueError(f"RoPE needs an even d_head, got {d_head}")
    dtype = torch.promote_types(x.dtype, torch.float32)  # angles in at least float32
    if positions is None:
        positions = torch.arange(L)
    positions = torch.as_tensor(positions).to(device=x.device, dtype=dtype)  # (L,)
    if positions.shape != (L,):
        raise ValueError(f"positions must have shape ({L},), got {tuple(positions.shape)}")
    two_i = torch.arange(0, d_head, 2, device=x.device, dtype=dtype)  # (d_head / 2,)
    theta = base ** (-two_i / d_head)  # (d_head / 2,)
    angle = positions[..., None] * theta  # (L, d_head / 2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]  # (..., L, d_head / 2) each
    rotated = (even * cos - odd * sin, even * sin + odd * cos)
    return torch.stack(rotated, dim=-1).flatten(-2)  # (..., L, d_head), pairs interleaved


def alibi_slopes(n_heads: int, device=None) -> Tensor:
    """ALiBi's per-head slopes, as in the authors' code (get_slopes), BLOOM and Hugging Face.

    For H a power of two, slope_h = 2^(-8 (h + 1) / H). Otherwise take the H' slopes of the
    largest power of two H' < H, then the first H - H' even-indexed entries (0, 2, 4, ...)
    of the slopes for 2H': the extra heads fall halfway (geometrically) between the others.
    """
    if n_heads < 1:
        raise ValueError(f"n_heads must be at least 1, got {n_heads}")
    closest = 2 ** (n_heads.bit_length() - 1)  # H' = 2^floor(log2 H)
    h = torch.arange(1, 2 * closest + 1, dtype=torch.float64)  # (2H',)
    slopes = 2.0 ** (-8.0 * h[:closest] / closest)  # (H',)
    extra = (2.0 ** (-8.0 * h / (2 * closest)))[0::2][: n_heads - closest]  # (H - H',)
    return torch.cat((slopes, extra)).to(device=device, dtype=torch.float32)  # (H,)


def alibi_bias(n_heads: int, L: int, device=None) -> Tensor:
    """Press et al. (2022): bias[h, i, j] = -slope_h * |i - j|, slopes from ``alibi_slopes``."""
    slopes = alibi_slopes(n_heads, device)  # (H,)
    idx = torch.arange(L, device=device)
    distance = (idx[:, None] - idx[None, :]).abs().float()  # (L, L)
    return -slopes[:, None, None] * distance  # (H, L, L)
