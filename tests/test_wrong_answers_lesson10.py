"""Lesson 10's checks against realistic wrong answers: each gets the message meant for it."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnlab
from autograder.checks import REGISTRY, CheckFailed, check
from autograder.checks.lesson10 import cases
from autograder.checks.lesson10.cases import RECORDS

from .wrong_answers import fails, passes, row_test

LESSON10 = sorted(RECORDS)


def not_written(*args, **kwargs):
    raise NotImplementedError()


def contains(*fragments: str) -> str:
    """A pattern that every fragment occurs in the message (in any order), taken literally."""
    return "(?s)^" + "".join(f"(?=.*{re.escape(f)})" for f in fragments)


# --------------------------------------------------------------------------- good answers
# Written independently of the reference and the notebook (other idioms on purpose).


class GoodRMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def normalise(self, x):
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)

    def forward(self, x):
        return self.weight * self.normalise(x)


class GoodSwiGLU(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)

    def hidden(self, x):
        gate = self.w1(x)
        return gate * torch.sigmoid(gate) * self.w3(x)

    def forward(self, x):
        return self.w2(self.hidden(x))


def good_repeat_kv(x, n_rep):
    return torch.repeat_interleave(x, n_rep, dim=1)


def interleaved_rope(x, positions):
    d = x.size(-1)
    freqs = 1.0 / 10000.0 ** (torch.arange(0, d, 2).float() / d)
    angle = positions.float()[:, None] * freqs
    z = torch.view_as_complex(x.float().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * torch.polar(torch.ones_like(angle), angle)).flatten(-2)


class GoodGQA(nn.Module):
    repeat = staticmethod(good_repeat_kv)

    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__()
        self.h, self.h_kv, self.dh = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.dh, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.dh, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.dh, bias=False)
        self.o_proj = nn.Linear(n_heads * self.dh, d_model, bias=False)

    def rope(self, t, positions):
        return interleaved_rope(t, positions)

    def mask(self, T, t_past):
        i = torch.arange(T)[:, None] + t_past
        return torch.arange(t_past + T)[None, :] <= i

    def start(self, t_past):
        return t_past

    def join(self, cache, k, v):
        if cache is None:
            return k, v
        return torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)

    def forward(self, x, positions=None, cache=None):
        B, T, _ = x.shape
        t_past = 0 if cache is None else cache[0].shape[2]
        if positions is None:
            positions = torch.arange(T) + self.start(t_past)
        split = lambda t, n: t.view(B, T, n, self.dh).permute(0, 2, 1, 3)  # noqa: E731
        q = self.rope(split(self.q_proj(x), self.h), positions)
        k = self.rope(split(self.k_proj(x), self.h_kv), positions)
        v = split(self.v_proj(x), self.h_kv)
        k, v = self.join(cache, k, v)
        n_rep = self.h // self.h_kv
        kk, vv = self.repeat(k, n_rep), self.repeat(v, n_rep)
        scores = torch.einsum("bhqd,bhkd->bhqk", q, kk) / math.sqrt(self.dh)
        scores = scores.masked_fill(~self.mask(T, t_past), float("-inf"))
        out = torch.einsum("bhqk,bhkd->bhqd", scores.softmax(-1), vv)
        return self.o_proj(out.permute(0, 2, 1, 3).reshape(B, T, -1)), self.cached(k, v)

    def cached(self, k, v):
        return k, v


class GoodBlock(nn.Module):
    Attention = GoodGQA

    def __init__(self, d_model, n_heads, n_kv_heads, d_ff, eps=1e-6):
        super().__init__()
        self.input_layernorm = GoodRMSNorm(d_model, eps)
        self.self_attn = self.Attention(d_model, n_heads, n_kv_heads)
        self.post_attention_layernorm = GoodRMSNorm(d_model, eps)
        self.mlp = GoodSwiGLU(d_model, d_ff)

    def forward(self, x, positions=None, cache=None):
        h, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class GoodTiny(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, n_kv_heads, n_layers, d_ff, max_len,
                 eps=1e-6):
        super().__init__()
        self.max_len = max_len
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList([GoodBlock(d_model, n_heads, n_kv_heads, d_ff, eps)
                                     for _ in range(n_layers)])
        self.norm = GoodRMSNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.tie()

    def tie(self):
        self.lm_head.weight = self.embed_tokens.weight

    def forward(self, idx, cache=None):
        x = self.embed_tokens(idx)
        caches = []
        for i, layer in enumerate(self.layers):
            x, c = layer(x, cache=None if cache is None else cache[i])
            caches.append(c)
        return self.lm_head(self.norm(x)), caches


def good_kv_cache_bytes(n_layers, n_kv_heads, d_head, seq_len, batch=1, bytes_per_value=2):
    return n_layers * 2 * seq_len * batch * n_kv_heads * d_head * bytes_per_value


def good_top_k_top_p(logits, top_k=None, top_p=None):
    out = logits.clone()
    if top_k is not None:
        k = min(top_k, out.shape[-1])
        out[out < out.topk(k, dim=-1).values[..., -1:]] = -math.inf
    if top_p is not None:
        p_sorted, _ = out.softmax(-1).sort(-1, descending=True)
        above = torch.cumsum(p_sorted, -1) - p_sorted
        smallest = torch.where(above < top_p, p_sorted, torch.ones_like(p_sorted))
        out[out.softmax(-1) < smallest.min(-1, keepdim=True).values] = -math.inf
    return out


GOOD = {"rmsnorm": GoodRMSNorm, "swiglu": GoodSwiGLU, "repeat_kv": good_repeat_kv,
        "gqa": GoodGQA, "llama": GoodBlock, "tinyllama": GoodTiny,
        "kv_cache": good_kv_cache_bytes, "sampling": good_top_k_top_p}


STUB = type("Stub", (nn.Module,), {"__init__": not_written, "forward": not_written})

# an independent correct answer passes each check; one still raising NotImplementedError is
# told so, for every check
GOOD_ROWS = [row for cid in LESSON10 for row in passes(GOOD[cid.split(".")[0]], cid)]
UNANSWERED_ROWS = [fails(STUB if isinstance(GOOD[cid.split(".")[0]], type) else not_written,
                         cid, "NotImplementedError", name="not-written") for cid in LESSON10]


# --------------------------------------------------------------------------- RMSNorm


class CentredRMS(GoodRMSNorm):
    def normalise(self, x):
        x = x - x.mean(-1, keepdim=True)
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)


class EpsOutsideRMS(GoodRMSNorm):
    def normalise(self, x):
        return x / (x.pow(2).mean(-1, keepdim=True).sqrt() + self.eps)


class SumRMS(GoodRMSNorm):
    def normalise(self, x):
        return x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + self.eps)


class LayerNormEpsRMS(GoodRMSNorm):
    def __init__(self, d_model, eps=1e-5):
        super().__init__(d_model, eps)


class BiasRMS(GoodRMSNorm):
    def __init__(self, d_model, eps=1e-6):
        super().__init__(d_model, eps)
        self.bias = nn.Parameter(torch.zeros(d_model))


class TorchRMS(GoodRMSNorm):
    def forward(self, x):
        return F.rms_norm(x, x.shape[-1:], self.weight, self.eps)


# Is each RMSNorm mistake named?
WRONG_RMSNORMS = [
    ("rmsnorm.values", CentredRMS, ["does not subtract the mean"]),
    ("rmsnorm.values", EpsOutsideRMS, ["eps is added outside the square root"]),
    ("rmsnorm.values", SumRMS, ["sum of squares instead of their mean"]),
    ("rmsnorm.hidden", LayerNormEpsRMS, ["eps = 1e-5"]),
    ("rmsnorm.params", LayerNormEpsRMS, ["eps = 1e-6 by default"]),
    ("rmsnorm.params", BiasRMS, ["extra parameters ['bias']"]),
    ("rmsnorm.values", TorchRMS, ["PyTorch's RMSNorm"]),
]


# --------------------------------------------------------------------------- SwiGLU


class SwappedSwiGLU(GoodSwiGLU):
    def hidden(self, x):
        return F.silu(self.w3(x)) * self.w1(x)


class GeluSwiGLU(GoodSwiGLU):
    def hidden(self, x):
        return F.gelu(self.w1(x)) * self.w3(x)


class UngatedSwiGLU(GoodSwiGLU):
    def hidden(self, x):
        return F.silu(self.w1(x))


class BiasedSwiGLU(GoodSwiGLU):
    def __init__(self, d_model, d_ff):
        super().__init__(d_model, d_ff)
        self.w1 = nn.Linear(d_model, d_ff)


# Is each SwiGLU mistake named?
WRONG_SWIGLUS = [
    (SwappedSwiGLU, ["gate and the up projection are swapped"]),
    (GeluSwiGLU, ["GEGLU"]),
    (UngatedSwiGLU, ["gating product is missing"]),
    (BiasedSwiGLU, ["has biases (w1.bias)"]),
]


# --------------------------------------------------------------------------- repeat_kv


def tiled_repeat_kv(x, n_rep):
    return x.repeat(1, n_rep, 1, 1)


# x.repeat (tiled heads) is told apart from repeat_interleave
WRONG_REPEAT_KV = [fails(tiled_repeat_kv, "repeat_kv.values",
                         contains("repeat(1, n_rep, 1, 1)", "repeat_interleave"))]


# --------------------------------------------------------------------------- attention


class TopLeftGQA(GoodGQA):
    def mask(self, T, t_past):
        return torch.ones(T, t_past + T, dtype=torch.bool).tril()


class RestartGQA(GoodGQA):
    def start(self, t_past):
        return 0


class HalfSplitGQA(GoodGQA):
    def rope(self, t, positions):
        d = t.size(-1)
        freqs = 1.0 / 10000.0 ** (torch.arange(0, d, 2).float() / d)
        angle = torch.cat([positions.float()[:, None] * freqs] * 2, -1)
        rotated = torch.cat([-t[..., d // 2:], t[..., :d // 2]], -1)
        return t * angle.cos() + rotated * angle.sin()


class NoRopeGQA(GoodGQA):
    def rope(self, t, positions):
        return t


class TiledGQA(GoodGQA):
    repeat = staticmethod(tiled_repeat_kv)


class RepeatedCacheGQA(GoodGQA):
    def cached(self, k, v):
        n_rep = self.h // self.h_kv
        return good_repeat_kv(k, n_rep), good_repeat_kv(v, n_rep)


class SdpaGQA(GoodGQA):
    def forward(self, x, positions=None, cache=None):
        B, T, _ = x.shape
        positions = torch.arange(T) if positions is None else positions
        split = lambda t, n: t.view(B, T, n, self.dh).transpose(1, 2)  # noqa: E731
        q = self.rope(split(self.q_proj(x), self.h), positions)
        k = self.rope(split(self.k_proj(x), self.h_kv), positions)
        v = split(self.v_proj(x), self.h_kv)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1)), (k, v)


# Is each attention mistake (layout, alignment, positions, grouping) named?
WRONG_ATTENTIONS = [
    ("gqa.cache", TopLeftGQA, ["TOP-LEFT", "tril(diagonal=T_past)"]),
    ("gqa.cache", RestartGQA, ["restarting at 0"]),
    ("gqa.values", HalfSplitGQA, ["half-split RoPE layout"]),
    ("gqa.values", NoRopeGQA, ["without RoPE"]),
    ("gqa.values", TiledGQA, ["tiled with .repeat"]),
    ("gqa.values", RepeatedCacheGQA, ["after repeat_kv"]),
    ("gqa.values", SdpaGQA, ["PyTorch's built-in attention"]),
    ("llama.values", type("TopLeftBlock", (GoodBlock,), {"Attention": TopLeftGQA}),
     ["TOP-LEFT"]),
]


# --------------------------------------------------------------------------- LlamaBlock


class PostNormBlock(GoodBlock):
    def forward(self, x, positions=None, cache=None):
        h, cache = self.self_attn(x, positions, cache)
        x = self.input_layernorm(x + h)
        return self.post_attention_layernorm(x + self.mlp(x)), cache


class OneNormBlock(GoodBlock):
    def forward(self, x, positions=None, cache=None):
        h, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        x = x + h
        return x + self.mlp(self.input_layernorm(x)), cache


class NoResidualBlock(GoodBlock):
    def forward(self, x, positions=None, cache=None):
        h, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        return h + self.mlp(self.post_attention_layernorm(h)), cache


# Is each block-wiring mistake named?
WRONG_BLOCKS = [
    (PostNormBlock, ["POST-norm block"]),
    (OneNormBlock, ["one RMSNorm (input_layernorm) used before both"]),
    (NoResidualBlock, ["without the residual around attention"]),
]


# --------------------------------------------------------------------------- TinyLlama


class ClonedTiny(GoodTiny):
    def tie(self):
        self.lm_head.weight = nn.Parameter(self.embed_tokens.weight.detach().clone())


class DataTiny(GoodTiny):
    def tie(self):
        self.lm_head.weight.data = self.embed_tokens.weight.data


class UntiedTiny(GoodTiny):
    def tie(self):
        pass


# Is a copied, .data-shared or missing tie named?
WRONG_TYINGS = [
    (ClonedTiny, ["is a copy"]), (DataTiny, ["two Parameters"]), (UntiedTiny, ["not tied"]),
]


# --------------------------------------------------------------------------- kv_cache_bytes


# Is each accounting mistake named?
WRONG_KV_CACHE_BYTES = [
    (lambda L, h, d, t, batch=1, bytes_per_value=2: L * h * d * t * batch * bytes_per_value,
     "only one of keys and values"),
    (lambda L, h, d, t, batch=1, bytes_per_value=2: 2 * L * h * d * t * bytes_per_value,
     "the batch missing"),
    (lambda L, h, d, t, batch=1, bytes_per_value=2: 16 * L * h * d * t * batch * bytes_per_value,
     "bits, not bytes"),
    (lambda L, h, d, t, batch=1, bytes_per_value=2: 2.0 * L * h * d * t * batch * bytes_per_value,
     "return an int"),
]


# --------------------------------------------------------------------------- top_k_top_p


def topk_indices(logits, top_k=None, top_p=None):
    """Ties at the cut-off dropped: keeps exactly k positions."""
    out = torch.full_like(logits, -math.inf)
    idx = logits.topk(top_k, dim=-1).indices
    return out.scatter(-1, idx, logits.gather(-1, idx))


def excludes_crossing(logits, top_k=None, top_p=None):
    probs, order = logits.softmax(-1).sort(-1, descending=True)
    keep_sorted = probs.cumsum(-1) <= top_p
    keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, -math.inf)


def zeros_not_inf(logits, top_k=None, top_p=None):
    kept = good_top_k_top_p(logits, top_k, top_p)
    return kept.masked_fill(kept.isinf(), 0.0)


def in_place(logits, top_k=None, top_p=None):
    logits[logits < logits.topk(top_k, dim=-1).values[..., -1:]] = -math.inf
    return logits


# Is each filtering mistake named?
WRONG_SAMPLINGS = [
    ("sampling.top_k", topk_indices, ["tied with the last kept one"]),
    ("sampling.top_p", excludes_crossing, ["the token that crosses p"]),
    ("sampling.top_k", zeros_not_inf, ["set removed logits to 0"]),
    ("sampling.top_k", in_place, ["changed its input"]),
]


class WrapsCourseRMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.inner = attnlab.RMSNorm(d_model, eps)
        self.weight = self.inner.weight

    def forward(self, x):
        return self.inner(x)


# calling the course's own RMSNorm is refused as the answer
COURSE_BLOCKS = [fails(WrapsCourseRMSNorm, "rmsnorm.values",
                       contains("the course's own RMSNorm"), name="Wrapped")]


# ------------------------------------------------------------------------ one mistake, once

# A learner's notebook: every earlier part is wrong (RMSNorm centres, SwiGLU swaps its gate,
# repeat_kv tiles), and the parts built on them are wired correctly, calling them by name.
NOTEBOOK: dict = {"math": math, "torch": torch, "nn": nn, "apply_rope": attnlab.apply_rope}
exec('''
class RMSNorm(nn.Module):
    def __init__(self, d_model, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        x = x - x.mean(-1, keepdim=True)
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SwiGLU(nn.Module):
    def __init__(self, d_model, d_ff):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)

    def forward(self, x):
        return self.w2(torch.nn.functional.silu(self.w3(x)) * self.w1(x))


def repeat_kv(x, n_rep):
    return x.repeat(1, n_rep, 1, 1)


class GroupedQueryAttention(nn.Module):
    def __init__(self, d_model, n_heads, n_kv_heads):
        super().__init__()
        self.h, self.h_kv, self.dh = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.dh, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.dh, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.dh, bias=False)
        self.o_proj = nn.Linear(n_heads * self.dh, d_model, bias=False)

    def forward(self, x, positions=None, cache=None):
        B, T, _ = x.shape
        t_past = 0 if cache is None else cache[0].size(-2)
        if positions is None:
            positions = torch.arange(t_past, t_past + T)
        q = apply_rope(self.q_proj(x).view(B, T, self.h, self.dh).transpose(1, 2), positions)
        k = apply_rope(self.k_proj(x).view(B, T, self.h_kv, self.dh).transpose(1, 2), positions)
        v = self.v_proj(x).view(B, T, self.h_kv, self.dh).transpose(1, 2)
        if cache is not None:
            k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
        n_rep = self.h // self.h_kv
        scores = q @ repeat_kv(k, n_rep).transpose(-2, -1) / math.sqrt(self.dh)
        mask = torch.ones(T, t_past + T, dtype=torch.bool).tril(t_past)
        weights = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        out = (weights @ repeat_kv(v, n_rep)).transpose(1, 2).reshape(B, T, -1)
        return self.o_proj(out), (k, v)


class LlamaBlock(nn.Module):
    def __init__(self, d_model, n_heads, n_kv_heads, d_ff, eps=1e-6):
        super().__init__()
        self.input_layernorm = RMSNorm(d_model, eps)
        self.self_attn = GroupedQueryAttention(d_model, n_heads, n_kv_heads)
        self.post_attention_layernorm = RMSNorm(d_model, eps)
        self.mlp = SwiGLU(d_model, d_ff)

    def forward(self, x, positions=None, cache=None):
        h, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        x = x + h
        return x + self.mlp(self.post_attention_layernorm(x)), cache


class TinyLlama(nn.Module):
    def __init__(self, vocab_size, d_model, n_heads, n_kv_heads, n_layers, d_ff, max_len,
                 eps=1e-6):
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(LlamaBlock(d_model, n_heads, n_kv_heads, d_ff, eps)
                                    for _ in range(n_layers))
        self.norm = RMSNorm(d_model, eps)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        self.lm_head.weight = self.embed_tokens.weight

    def forward(self, idx, cache=None):
        x, new = self.embed_tokens(idx), []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, cache=None if cache is None else cache[i])
            new.append(kv)
        return self.lm_head(self.norm(x)), new


from autograder.checks.lesson10.cases import (StandInGroupedQueryAttention, StandInLlamaBlock,
                                              StandInRMSNorm, StandInSwiGLU, stand_in_repeat_kv)


class RMSNormStealing(StandInRMSNorm):
    pass


class SwiGLUStealing(StandInSwiGLU):
    pass


def repeat_kv_stealing(x, n_rep):
    return stand_in_repeat_kv(x, n_rep)


class GQAStealing(StandInGroupedQueryAttention):
    pass


class LlamaBlockStealing(StandInLlamaBlock):
    pass
''', NOTEBOOK)

OWN = {"RMSNorm": ("rmsnorm.values", "does not subtract the mean"),
       "SwiGLU": ("swiglu.values", "gate and the up projection are swapped"),
       "repeat_kv": ("repeat_kv.values", re.escape("repeat(1, n_rep, 1, 1)"))}
STOLEN = {"RMSNormStealing": ("RMSNorm", ("rmsnorm.values", "rmsnorm.hidden", "rmsnorm.torch")),
          "SwiGLUStealing": ("SwiGLU", ("swiglu.values", "swiglu.hidden")),
          "repeat_kv_stealing": ("repeat_kv", ("repeat_kv.values", "repeat_kv.hidden")),
          "GQAStealing": ("GroupedQueryAttention", ("gqa.values", "gqa.hidden", "gqa.cache",
                                                    "gqa.cache_hidden")),
          "LlamaBlockStealing": ("LlamaBlock", ("llama.values", "llama.hidden"))}
BUILT_ON = {"GroupedQueryAttention": "gqa", "LlamaBlock": "llama", "TinyLlama": "tinyllama"}

ISOLATION = [
    *[fails(NOTEBOOK[name], cid, match, name=f"own-{name}") for name, (cid, match) in OWN.items()],
    # each part built on them is judged on its own: their mistakes cost their own checks only
    *[row for name, kind in BUILT_ON.items() for row in passes(
        NOTEBOOK[name], *[c for c in LESSON10 if c.split(".")[0] == kind],
        name=f"{name}-over-own-wrong-parts")],
    *[fails(NOTEBOOK[name], cid, f"the grader's stand-in {part}", name=f"{name}")
      for name, (part, ids) in STOLEN.items() for cid in ids],
]


# ------------------------------------------------------------------------ the rows

ROWS = [
    *GOOD_ROWS,
    *UNANSWERED_ROWS,
    *[fails(cls, cid, contains(*fragments)) for cid, cls, fragments in WRONG_RMSNORMS],
    *[fails(cls, "swiglu.values", contains(*fragments)) for cls, fragments in WRONG_SWIGLUS],
    *WRONG_REPEAT_KV,
    *[fails(cls, cid, contains(*fragments)) for cid, cls, fragments in WRONG_ATTENTIONS],
    *[fails(cls, "llama.values", contains(*fragments)) for cls, fragments in WRONG_BLOCKS],
    *[fails(cls, "tinyllama.tying", contains(*fragments)) for cls, fragments in WRONG_TYINGS],
    *[fails(fn, "kv_cache.values", contains(fragment), name=f"kv-bytes-{i}")
      for i, (fn, fragment) in enumerate(WRONG_KV_CACHE_BYTES)],
    *[fails(fn, cid, contains(*fragments)) for cid, fn, fragments in WRONG_SAMPLINGS],
    *COURSE_BLOCKS,
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_every_lesson10_check_is_exercised():
    """Does every check this lesson registers have a passing and an unanswered row?"""
    assert set(LESSON10) == {r.check_id for r in GOOD_ROWS} == \
        {r.check_id for r in UNANSWERED_ROWS}
    assert set(LESSON10) <= set(REGISTRY)


@pytest.mark.parametrize("name, check_id", [("GroupedQueryAttention", "gqa.values"),
                                            ("LlamaBlock", "llama.values"),
                                            ("TinyLlama", "tinyllama.logits")])
def test_isolation_rows_can_fail(name, check_id, monkeypatch):
    """Without the stand-ins, each part would pay again for the wrong parts it builds on:
    the isolation rows above are not true by construction."""
    for stand_ins in (cases.GQA_STAND_INS, cases.BLOCK_STAND_INS, cases.TINY_STAND_INS):
        for part in list(stand_ins):
            monkeypatch.delitem(stand_ins, part)
    with pytest.raises(CheckFailed):
        check(check_id, NOTEBOOK[name])
