"""Lesson 06: the Transformer encoder block: LayerNorm, the feed-forward sublayer, residuals.

Masks are boolean, True = may attend. torch.nn.TransformerEncoderLayer's ``src_mask`` means
the opposite when boolean (True = blocked): pass ``~mask`` there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import MultiHeadAttention

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {
    "LayerNorm": 6,
    "FeedForward": 6,
    "residual": 6,
    "attention_sublayer": 6,
    "EncoderLayer": 6,
    "activation_name": 6,
}

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}  # "gelu" is the exact (erf) GELU


class LayerNorm(nn.Module):
    """Ba et al. (2016): normalise each vector over its last dim (biased variance, eps in sqrt)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)  # (..., 1)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)  # (..., 1), divides by d_model
        return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


class FeedForward(nn.Module):
    """Position-wise MLP: linear2(dropout(activation(linear1(x)))), activation "relu" or "gelu"."""

    def __init__(
        self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = ACTIVATIONS[self.activation](self.linear1(x))  # (B, L, d_ff)
        return self.linear2(self.dropout(hidden))  # (B, L, d_model)


def residual(
    x: Tensor, norm: nn.Module, sublayer: Callable[[Tensor], tuple[Tensor, Tensor | None]],
    norm_first: bool,
) -> tuple[Tensor, Tensor | None]:
    """Pre-norm x + sublayer(norm(x)) or post-norm norm(x + sublayer(x)); passes weights through."""
    if norm_first:
        out, weights = sublayer(norm(x))
        return x + out, weights
    out, weights = sublayer(x)
    return norm(x + out), weights


def attention_sublayer(
    attn: MultiHeadAttention, dropout: nn.Module, query: Tensor, kv: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """attn(query, kv, kv, mask) followed by dropout on its output; returns (out, weights)."""
    out, weights = attn(query, kv, kv, mask)  # (B, Lq, d_model), (B, H, Lq, Lk)
    return dropout(out), weights


class EncoderLayer(nn.Module):
    """Self-attention and feed-forward sublayers, each with a residual and a LayerNorm.

    Post-norm (Vaswani et al., 2017) by default; ``norm_first=True`` is pre-norm (Xiong et al.,
    2020). Dropout sits where torch.nn.TransformerEncoderLayer puts it: on the attention
    weights, after the attention output, inside the feed-forward and after it.
    """

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
        norm_first: bool = False, activation: str = "relu", eps: float = 1e-5, bias: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation, dropout=dropout, bias=bias)
        self.norm1 = LayerNorm(d_model, eps)
        self.norm2 = LayerNorm(d_model, eps)
        self.dropout1 = nn.Dropout(dropout)  # after self-attention
        self.dropout2 = nn.Dropout(dropout)  # after the feed-forward

    def forward(
        self, x: Tensor, mask: Tensor | None = None, return_weights: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """x (B, L, d_model); mask True = may attend; weights (B, H, L, L) if return_weights."""
        self_attention = lambda h: attention_sublayer(self.self_attn, self.dropout1, h, h, mask)
        x, weights = residual(x, self.norm1, self_attention, self.norm_first)  # (B, H, L, L)
        x, _ = residual(x, self.norm2, lambda h: (self.dropout2(self.ff(h)), None),
                        self.norm_first)
        return (x, weights) if return_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy a torch TransformerEncoderLayer (batch_first or not); ours is always batch first."""
        new = cls(**_layer_config(layer)).to(layer.linear1.weight)
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        _copy_ff_and_norms(new, layer, ("norm1", "norm2"))
        return new


def activation_name(activation) -> str:
    """Our name, "relu" or "gelu", for a string, F.relu / F.gelu, nn.ReLU() or exact nn.GELU()."""
    if isinstance(activation, str) and activation.lower() in ACTIVATIONS:
        return activation.lower()
    if activation in (F.relu, torch.relu) or isinstance(activation, nn.ReLU):
        return "relu"
    exact_gelu = isinstance(activation, nn.GELU) and activation.approximate == "none"
    if activation is F.gelu or exact_gelu:
        return "gelu"
    raise ValueError(f"unsupported activation {activation!r}: use relu or exact gelu")


def _layer_config(layer: nn.Module) -> dict:
    """Constructor arguments of our layer read from a torch Transformer{Encoder,Decoder}Layer."""
    return dict(
        d_model=layer.self_attn.embed_dim,
        n_heads=layer.self_attn.num_heads,
        d_ff=layer.linear1.out_features,
        dropout=layer.dropout.p,
        norm_first=layer.norm_first,
        activation=activation_name(layer.activation),
        eps=layer.norm1.eps,
        bias=layer.linear1.bias is not None,
    )


@torch.no_grad()
def _copy_ff_and_norms(new: nn.Module, layer: nn.Module, norms: tuple[str, ...]) -> None:
    """Copy linear1/linear2 into new.ff and each named LayerNorm (absent affine = ones/zeros)."""
    new.ff.linear1.load_state_dict(layer.linear1.state_dict())
    new.ff.linear2.load_state_dict(layer.linear2.state_dict())
    for name in norms:
        ours, theirs = getattr(new, name), getattr(layer, name)
        for param in ("weight", "bias"):
            if getattr(theirs, param) is not None:
                getattr(ours, param).copy_(getattr(theirs, param))
