"""Lesson 10: today's decoder block, Llama-style (Touvron et al., 2023).

RMSNorm (Zhang & Sennrich, 2019), the SwiGLU feed-forward (Shazeer, 2020), grouped-query
attention (Ainslie et al., 2023; multi-query: Shazeer, 2019) with RoPE and a KV cache, the
pre-norm block, a tiny language model with tied embeddings, KV-cache accounting and top-k /
top-p sampling filters (Holtzman et al., 2020).

Names follow the Llama code: ``w1`` (gate), ``w3`` (up), ``w2`` (down) as in Meta's
reference; ``q_proj, k_proj, v_proj, o_proj``, ``input_layernorm``, ``post_attention_layernorm``,
``embed_tokens``, ``norm``, ``lm_head`` as in Hugging Face's. Every linear map is bias-free.

RoPE here is lesson 05's ``apply_rope``: pairs (2i, 2i+1) interleaved, as in RoFormer and Meta's
Llama code. Hugging Face's Llama rotates the half-split pairs (i, i + d_head/2) instead;
``interleave_rows`` / ``half_split_rows`` permute q_proj/k_proj weights between the layouts.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .attention import scaled_dot_product_attention
from .positional import apply_rope

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {
    "RMSNorm": 10,
    "SwiGLU": 10,
    "repeat_kv": 10,
    "cached_causal_mask": 10,
    "GroupedQueryAttention": 10,
    "LlamaBlock": 10,
    "TinyLlama": 10,
    "half_split_rows": 10,
    "interleave_rows": 10,
    "kv_cache_bytes": 10,
    "llama_param_count": 10,
    "top_k_top_p": 10,
}

KVPair = tuple[Tensor, Tensor]  # keys, values, each (B, H_kv, T_so_far, d_head), RoPE applied


class RMSNorm(nn.Module):
    """Zhang & Sennrich (2019): x / sqrt(mean(x^2) + eps) * weight over the last dim; no mean,
    no bias (equal to torch.nn.RMSNorm with elementwise_affine=True)."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x: Tensor) -> Tensor:
        ms = (x * x).mean(-1, keepdim=True)  # (..., 1): mean square, no centring
        return x * torch.rsqrt(ms + self.eps) * self.weight


class SwiGLU(nn.Module):
    """Shazeer (2020): w2(silu(w1 x) * w3 x), all bias-free; w1 is the gate, w3 the up map."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)  # gate
        self.w3 = nn.Linear(d_model, d_ff, bias=False)  # up
        self.w2 = nn.Linear(d_ff, d_model, bias=False)  # down

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))  # (..., d_model)


def repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """(B, H_kv, L, d_head) -> (B, H_kv * n_rep, L, d_head): kv head g serves query heads
    g * n_rep ... (g + 1) * n_rep - 1 (repeat_interleave order, as in Llama and SDPA's GQA)."""
    if n_rep == 1:
        return x
    B, H_kv, L, d_head = x.shape
    x = x[:, :, None].expand(B, H_kv, n_rep, L, d_head)  # (B, H_kv, n_rep, L, d_head)
    return x.reshape(B, H_kv * n_rep, L, d_head)


def cached_causal_mask(t_new: int, t_past: int, device=None) -> Tensor:
    """(T, T_past + T) bool, bottom-right aligned: new query i is position T_past + i and may
    attend to keys j <= T_past + i. (``is_causal=True`` in PyTorch is top-left: j <= i.)"""
    ones = torch.ones(t_new, t_past + t_new, dtype=torch.bool, device=device)
    return ones.tril(diagonal=t_past)


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with n_kv_heads <= n_heads (1: multi-query; n_heads: multi-head).

    ``forward(x, positions=None, cache=None) -> (output, (keys, values))``: x (B, T, d_model)
    holds the new positions; positions default to T_past ... T_past + T - 1; RoPE (interleaved)
    rotates queries and keys; the cache holds the rotated keys and the values of all positions
    so far, un-repeated, (B, H_kv, T_past + T, d_head).
    """

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, rope_base: float = 10000.0):
        super().__init__()
        if d_model % n_heads or n_heads % n_kv_heads:
            raise ValueError(f"need d_model % n_heads == 0 and n_heads % n_kv_heads == 0, got "
                             f"d_model={d_model}, n_heads={n_heads}, n_kv_heads={n_kv_heads}")
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads
        self.d_head = d_model // n_heads
        self.rope_base = rope_base
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.o_proj = nn.Linear(n_heads * self.d_head, d_model, bias=False)

    def _heads(self, x: Tensor, n: int) -> Tensor:
        B, T, _ = x.shape
        return x.view(B, T, n, self.d_head).transpose(1, 2)  # (B, n, T, d_head)

    def forward(
        self, x: Tensor, positions: Tensor | None = None, cache: KVPair | None = None
    ) -> tuple[Tensor, KVPair]:
        B, T, _ = x.shape
        t_past = 0 if cache is None else cache[0].size(-2)
        if positions is None:
            positions = torch.arange(t_past, t_past + T, device=x.device)  # (T,)
        q = apply_rope(self._heads(self.q_proj(x), self.n_heads), positions, self.rope_base)
        k = apply_rope(self._heads(self.k_proj(x), self.n_kv_heads), positions, self.rope_base)
        v = self._heads(self.v_proj(x), self.n_kv_heads)  # (B, H_kv, T, d_head)
        if cache is not None:
            k = torch.cat([cache[0], k], dim=-2)  # (B, H_kv, T_past + T, d_head)
            v = torch.cat([cache[1], v], dim=-2)
        n_rep = self.n_heads // self.n_kv_heads
        mask = cached_causal_mask(T, t_past, x.device)  # (T, T_past + T)
        out, _ = scaled_dot_product_attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_head)  # (B, T, H d_head)
        return self.o_proj(out), (k, v)


class LlamaBlock(nn.Module):
    """Pre-norm: x + attn(RMSNorm(x)), then x + SwiGLU(RMSNorm(x)); no biases anywhere."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int,
                 eps: float = 1e-6):
        super().__init__()
        self.input_layernorm = RMSNorm(d_model, eps)
        self.self_attn = GroupedQueryAttention(d_model, n_heads, n_kv_heads)
        self.post_attention_layernorm = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)

    def forward(
        self, x: Tensor, positions: Tensor | None = None, cache: KVPair | None = None
    ) -> tuple[Tensor, KVPair]:
        out, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        x = x + out  # (B, T, d_model)
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class TinyLlama(nn.Module):
    """Token embeddings (no position embeddings: RoPE), LlamaBlocks, a final RMSNorm, and an
    output head tied to the embeddings (lm_head.weight is embed_tokens.weight)."""

    def __init__(self, vocab_size: int, d_model: int, n_heads: int, n_kv_heads: int,
                 n_layers: int, d_ff: int, max_len: int, eps: float = 1e-6):
        super().__init__()
        self.max_len = max_len
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(LlamaBlock(d_model, n_heads, n_kv_heads, d_ff, eps)
                                    for _ in range(n_layers))
        self.norm = RMSNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight  # tied: one Parameter, two uses

    def forward(self, idx: Tensor, cache: list[KVPair] | None = None
                ) -> tuple[Tensor, list[KVPair]]:
        """idx (B, T) new tokens after the cache -> (logits (B, T, vocab), cache per layer)."""
        t_past = 0 if cache is None else cache[0][0].size(-2)
        if t_past + idx.size(1) > self.max_len:
            raise ValueError(f"{t_past} cached + {idx.size(1)} new tokens exceed "
                             f"max_len={self.max_len}")
        x = self.embed_tokens(idx)  # (B, T, d_model)
        new_cache = []
        for layer, past in zip(self.layers, cache or [None] * len(self.layers), strict=True):
            x, kv = layer(x, cache=past)
            new_cache.append(kv)
        return self.lm_head(self.norm(x)), new_cache  # (B, T, vocab)


def half_split_rows(w: Tensor, n_heads: int) -> Tensor:
    """Reorder a q/k projection's output rows, per head, from interleaved RoPE pairs
    (2i, 2i+1) to half-split pairs (i, i + d_head/2): Meta's Llama -> Hugging Face's
    (the ``permute`` of transformers' convert_llama_weights_to_hf.py)."""
    out_dim, in_dim = w.shape
    d_head = out_dim // n_heads
    return w.view(n_heads, d_head // 2, 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def interleave_rows(w: Tensor, n_heads: int) -> Tensor:
    """The inverse of :func:`half_split_rows`: Hugging Face's layout -> interleaved pairs."""
    out_dim, in_dim = w.shape
    d_head = out_dim // n_heads
    return w.view(n_heads, 2, d_head // 2, in_dim).transpose(1, 2).reshape(out_dim, in_dim)


def kv_cache_bytes(n_layers: int, n_kv_heads: int, d_head: int, seq_len: int, batch: int = 1,
                   bytes_per_value: int = 2) -> int:
    """Memory of a KV cache: keys and values (2) per layer, kv head, position and sequence."""
    return 2 * n_layers * n_kv_heads * d_head * seq_len * batch * bytes_per_value


def llama_param_count(vocab_size: int, d_model: int, n_layers: int, n_heads: int,
                      n_kv_heads: int, d_ff: int, tied: bool = False) -> int:
    """Parameters of a Llama-style model: embeddings, per layer q/k/v/o + SwiGLU + 2 RMSNorm
    weights, a final RMSNorm and the output head (none extra when tied)."""
    d_head = d_model // n_heads
    attn = 2 * d_model * n_heads * d_head + 2 * d_model * n_kv_heads * d_head  # q, o; k, v
    layer = attn + 3 * d_model * d_ff + 2 * d_model
    head = 0 if tied else vocab_size * d_model
    return vocab_size * d_model + n_layers * layer + d_model + head


def top_k_top_p(logits: Tensor, top_k: int | None = None, top_p: float | None = None) -> Tensor:
    """Logits (..., vocab) with the filtered-out entries set to -inf (a new tensor).

    top-k keeps every logit >= the k-th largest; top-p (Holtzman et al., 2020), applied after
    top-k to what is left, keeps the most likely tokens until their probability reaches p,
    the token that crosses p included. Ties at either cut-off are kept; so is the top token.
    """
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p}")
    out = logits.clone()
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(out, top_k, dim=-1).values[..., -1:]  # (..., 1)
        out = out.masked_fill(out < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, _ = out.sort(dim=-1, descending=True)  # (..., vocab)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        before = probs.cumsum(-1) - probs  # mass of the tokens ranked above each one
        kept = (before < top_p).sum(-1, keepdim=True)  # (..., 1), at least 1
        cutoff = sorted_logits.gather(-1, kept - 1)  # (..., 1): the last kept logit
        out = out.masked_fill(out < cutoff, float("-inf"))
    return out
