"""Lesson 07: the decoder layer (self- and cross-attention), a tiny GPT with a KV cache, sampling.

Masks are boolean, True = may attend. torch.nn.TransformerDecoderLayer's boolean ``tgt_mask``
and ``memory_mask`` mean the opposite (True = blocked): pass ``~mask`` there.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .attention import MultiHeadAttention
from .block import (
    FeedForward,
    LayerNorm,
    _copy_ff_and_norms,
    _layer_config,
    attention_sublayer,
    residual,
)
from .masking import causal_mask

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {"DecoderLayer": 7, "TinyGPT": 7, "generate": 7}
# Kernels a lesson hands out ready-made (imported in its first cell): visible while that
# lesson is graded, withheld before it.
PROVIDED_IN = {"GPTBlock": 7}

KVCache = list[tuple[Tensor, Tensor]]  # per layer: keys, values, each (B, H, T_past, d_head)


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder's memory, feed-forward; each residual.

    Norms and dropouts are numbered as in torch.nn.TransformerDecoderLayer: 1 self-attention,
    2 cross-attention, 3 feed-forward.
    """

    def __init__(
        self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
        norm_first: bool = False, activation: str = "relu", eps: float = 1e-5, bias: bool = True,
    ):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, bias=bias, dropout=dropout)
        self.ff = FeedForward(d_model, d_ff, activation, dropout=dropout, bias=bias)
        self.norm1, self.norm2, self.norm3 = (LayerNorm(d_model, eps) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))

    def forward(
        self, x: Tensor, memory: Tensor, self_mask: Tensor | None = None,
        memory_mask: Tensor | None = None, return_weights: bool = False,
    ) -> Tensor | tuple[Tensor, dict[str, Tensor]]:
        """x (B, L, d_model), memory (B, S, d_model); with return_weights also {"self", "cross"}."""
        self_attention = lambda h: attention_sublayer(
            self.self_attn, self.dropout1, h, h, self_mask)
        cross_attention = lambda h: attention_sublayer(
            self.cross_attn, self.dropout2, h, memory, memory_mask)
        x, w_self = residual(x, self.norm1, self_attention, self.norm_first)  # (B, H, L, L)
        x, w_cross = residual(x, self.norm2, cross_attention, self.norm_first)  # (B, H, L, S)
        x, _ = residual(x, self.norm3, lambda h: (self.dropout3(self.ff(h)), None),
                        self.norm_first)
        return (x, {"self": w_self, "cross": w_cross}) if return_weights else x

    @classmethod
    def from_torch(cls, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
        """Copy a torch TransformerDecoderLayer (batch_first or not); ours is always batch first."""
        new = cls(**_layer_config(layer)).to(layer.linear1.weight)
        new.self_attn = MultiHeadAttention.from_torch(layer.self_attn)
        new.cross_attn = MultiHeadAttention.from_torch(layer.multihead_attn)
        _copy_ff_and_norms(new, layer, ("norm1", "norm2", "norm3"))
        return new


class GPTBlock(nn.Module):
    """Pre-norm causal block: x + attn(ln1(x)), then x + ff(ln2(x)) with a GELU MLP."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.ln1 = LayerNorm(d_model)
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.ln2 = LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, activation="gelu")

    def forward(
        self, x: Tensor, past: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """x (B, T, d_model) holds the new positions only; returns x and all keys/values so far."""
        h = self.ln1(x)
        q, k, v = self.attn.project(h, h, h)  # (B, H, T, d_head) each
        if past is not None:
            k = torch.cat([past[0], k], dim=-2)  # (B, H, T_past + T, d_head)
            v = torch.cat([past[1], v], dim=-2)
        t_past = k.size(-2) - x.size(1)
        mask = causal_mask(k.size(-2), device=x.device)[t_past:]  # (T, T_past + T)
        x = x + self.attn.attend(q, k, v, mask)[0]  # (B, T, d_model)
        return x + self.ff(self.ln2(x)), (k, v)


class TinyGPT(nn.Module):
    """Decoder-only language model (Radford et al., 2018) small enough to train on a laptop CPU.

    Token + learned position embeddings, n_layers pre-norm causal GPTBlocks (d_ff = 4 d_model,
    GELU), a final LayerNorm and an untied linear head to vocabulary logits.
    """

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_layers: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.tok_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(
            GPTBlock(d_model, n_heads, 4 * d_model) for _ in range(n_layers))
        self.ln_f = LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        """idx (B, T) new tokens, positions continuing after the cache; logits (B, T, vocab)."""
        t_past = 0 if cache is None else cache[0][0].size(-2)
        T = idx.size(1)
        if t_past + T > self.max_len:
            raise ValueError(f"{t_past} cached + {T} new tokens exceed max_len={self.max_len}")
        positions = torch.arange(t_past, t_past + T, device=idx.device)  # (T,)
        x = self.tok_emb(idx) + self.pos_emb(positions)  # (B, T, d_model)
        new_cache = []
        for block, past in zip(self.blocks, cache or [None] * len(self.blocks), strict=True):
            x, kv = block(x, past)
            new_cache.append(kv)
        return self.head(self.ln_f(x)), new_cache  # (B, T, vocab)


def _next_token(logits: Tensor, temperature: float, generator: torch.Generator | None) -> Tensor:
    """(B, vocab) logits -> (B, 1) tokens: argmax if temperature == 0, else a sample."""
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = torch.softmax(logits / temperature, dim=-1)  # (B, vocab)
    return torch.multinomial(probs, 1, generator=generator)  # (B, 1)


@torch.no_grad()
def generate(
    model: nn.Module, prompt: Tensor, max_new_tokens: int, temperature: float = 1.0,
    use_cache: bool = False, generator: torch.Generator | None = None,
) -> Tensor:
    """Prompt (B, T) or (T,) plus max_new_tokens tokens, same rank; temperature 0 is greedy.

    The whole result must fit the context: T + max_new_tokens <= model.max_len (no cropping),
    so cached and uncached generation see the same context and give identical tokens.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    idx = prompt[None] if prompt.dim() == 1 else prompt  # (B, T)
    if idx.size(1) == 0:
        raise ValueError("the prompt must hold at least one token")
    max_len = getattr(model, "max_len", None)
    if max_len is not None and idx.size(1) + max_new_tokens > max_len:
        raise ValueError(f"prompt length {idx.size(1)} + max_new_tokens {max_new_tokens} "
                         f"exceeds the model's max_len={max_len}")
    was_training = model.training
    model.eval()
    try:
        feed, cache = idx, None
        for _ in range(max_new_tokens):
            logits, cache = model(feed, cache)  # (B, T_feed, vocab)
            token = _next_token(logits[:, -1], temperature, generator)  # (B, 1)
            idx = torch.cat([idx, token], dim=1)  # (B, T + 1)
            feed, cache = (token, cache) if use_cache else (idx, None)
    finally:
        model.train(was_training)
    return idx[0] if prompt.dim() == 1 else idx
