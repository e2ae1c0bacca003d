"""Lesson 04: causal and padding masks, NaN-safe masked attention, and a future-leak detector.

Masks are boolean, True = may attend (the opposite of torch.nn.MultiheadAttention's masks).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from .attention import _attention_weights

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {"causal_mask": 4, "padding_mask": 4, "masked_attention": 4, "leaks_future": 4}


def causal_mask(L: int, device=None) -> Tensor:
    """(L, L) bool mask, True where query i may attend to key j (j <= i)."""
    return torch.ones(L, L, dtype=torch.bool, device=device).tril()  # (L, L)


def padding_mask(lengths: Tensor | Sequence[int], max_len: int, device=None) -> Tensor:
    """(B, 1, 1, max_len) bool mask, True on the first lengths[b] (real) tokens of sequence b."""
    lengths = torch.as_tensor(lengths, device=device)  # (B,)
    if lengths.ndim != 1 or ((lengths < 0) | (lengths > max_len)).any():
        raise ValueError(f"lengths must be a 1-D list of ints in [0, {max_len}], got {lengths}")
    positions = torch.arange(max_len, device=lengths.device)  # (max_len,)
    return (positions < lengths[:, None])[:, None, None, :]  # (B, 1, 1, max_len)


def masked_attention(
    q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention, NaN-safe: a query whose keys are all masked gets zeros."""
    weights = _attention_weights(q, k, mask, nan_safe=True)  # (..., Lq, Lk)
    return weights @ v, weights  # (..., Lq, d_v), (..., Lq, Lk)


def leaks_future(
    fn: Callable[[Tensor], Tensor | tuple],
    L: int,
    d_model: int,
    generator: torch.Generator,
    trials: int = 3,
    rtol: float = 1e-5,
) -> bool:
    """True if fn's output at some position i changes when only inputs at positions > i change."""

    def run(x: Tensor) -> Tensor:
        out = fn(x)
        return out[0] if isinstance(out, tuple) else out  # (1, L, d_model)

    def randn(n: int) -> Tensor:
        return torch.randn(1, n, d_model, generator=generator, device=generator.device)

    with torch.no_grad():
        for _ in range(trials):
            x = randn(L)  # (1, L, d_model)
            y = run(x)  # (1, L, d_model)
            atol = rtol * max(1.0, y.abs().max().item())
            for i in range(L - 1):
                x2 = torch.cat([x[:, : i + 1], randn(L - i - 1)], dim=1)  # new suffix only
                if not torch.allclose(run(x2)[:, : i + 1], y[:, : i + 1], rtol=rtol, atol=atol):
                    return True
    return False
