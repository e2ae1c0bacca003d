"""Lesson 10's reference (the Llama-style block) against PyTorch and Hugging Face transformers.

torch.nn.RMSNorm, F.scaled_dot_product_attention(..., enable_gqa=True), transformers'
LlamaDecoderLayer, LlamaForCausalLM, its DynamicCache and its top-k / top-p logits
processors are independent implementations; ours must agree with each of them.
"""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import (
    GroupedQueryAttention,
    LlamaBlock,
    RMSNorm,
    SwiGLU,
    TinyLlama,
    apply_rope,
    kv_cache_bytes,
    repeat_kv,
    top_k_top_p,
)
from autograder.reference.modern import (
    cached_causal_mask,
    half_split_rows,
    interleave_rows,
    llama_param_count,
)
from tests.seeding import seeded

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-4)



def randomise(module: nn.Module, seed: int, std: float = 0.3) -> nn.Module:
    """Weights large enough that every sublayer matters (norm gains around 1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in sorted(module.named_parameters()):
            base = 1.0 if p.dim() == 1 else 0.0
            p.copy_(base + std * torch.randn(p.shape, generator=g))
    return module.eval()


# ----------------------------------------------------------------------------- RMSNorm


@FAST
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.integers(1, 16),
       st.sampled_from([1e-6, 1e-3, 0.5]), st.integers(0, 2**31))
def test_rms_norm_matches_torch(lead, d_model, eps, seed):
    """Does RMSNorm equal torch.nn.RMSNorm (no centring, eps inside the sqrt, a weight)?"""
    g = torch.Generator().manual_seed(seed)
    ours, theirs = RMSNorm(d_model, eps), nn.RMSNorm(d_model, eps=eps)
    with torch.no_grad():
        ours.weight.copy_(torch.randn(d_model, generator=g))
        theirs.weight.copy_(ours.weight)
    x = torch.randn(*lead, d_model, generator=g) * 3 + 1
    assert_close(ours(x), theirs(x), **TOL)


def test_rms_norm_has_one_parameter_and_the_llama_default_eps():
    """Is weight (ones) its only parameter, with eps = 1e-6 by default (Llama's)?"""
    norm = RMSNorm(6)
    assert norm.eps == 1e-6 and dict(norm.named_parameters()).keys() == {"weight"}
    assert torch.equal(norm.weight, torch.ones(6))


# ----------------------------------------------------------------------------- SwiGLU


def test_swiglu_matches_llama_mlp():
    """Is SwiGLU transformers' LlamaMLP, with w1 = gate_proj, w3 = up_proj, w2 = down_proj?"""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    cfg = LlamaConfig(hidden_size=8, intermediate_size=20, num_attention_heads=2,
                      num_key_value_heads=2)
    theirs = randomise(seeded(0, lambda: LlamaMLP(cfg)), 1)
    ours = SwiGLU(8, 20)
    with torch.no_grad():
        for mine, hf in (("w1", "gate_proj"), ("w3", "up_proj"), ("w2", "down_proj")):
            getattr(ours, mine).weight.copy_(getattr(theirs, hf).weight)
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(2))
    assert_close(ours(x), theirs(x), **TOL)
    assert all(p.dim() == 2 for p in ours.parameters())  # bias-free


# ----------------------------------------------------------------------------- GQA


@pytest.mark.parametrize("n_kv, n_rep", [(1, 4), (2, 3), (4, 1)])
def test_repeat_kv_is_repeat_interleave(n_kv, n_rep):
    """Does kv head g serve query heads g * n_rep ... (g + 1) * n_rep - 1?"""
    x = torch.randn(2, n_kv, 5, 3, generator=torch.Generator().manual_seed(n_kv))
    assert torch.equal(repeat_kv(x, n_rep), x.repeat_interleave(n_rep, dim=1))


def _sdpa_gqa(attn: GroupedQueryAttention, x: torch.Tensor) -> torch.Tensor:
    """The same projections and RoPE, attention by PyTorch's kernel with enable_gqa=True."""
    B, T, _ = x.shape
    q = apply_rope(attn.q_proj(x).view(B, T, attn.n_heads, -1).transpose(1, 2))
    k = apply_rope(attn.k_proj(x).view(B, T, attn.n_kv_heads, -1).transpose(1, 2))
    v = attn.v_proj(x).view(B, T, attn.n_kv_heads, -1).transpose(1, 2)
    out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    return attn.o_proj(out.transpose(1, 2).reshape(B, T, -1))


@FAST
@given(st.sampled_from([(4, 1), (4, 2), (4, 4), (6, 3), (6, 2)]), st.integers(1, 7),
       st.integers(0, 2**31))
def test_gqa_matches_sdpa_enable_gqa(heads, T, seed):
    """Does GroupedQueryAttention equal F.scaled_dot_product_attention(enable_gqa=True)?"""
    n_heads, n_kv = heads
    attn = randomise(seeded(seed, lambda: GroupedQueryAttention(4 * n_heads, n_heads, n_kv)),
                     seed)
    x = torch.randn(2, T, 4 * n_heads, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out, (k, v) = attn(x)
        assert_close(out, _sdpa_gqa(attn, x), **TOL)
    assert k.shape == v.shape == (2, n_kv, T, 4)  # the cache is not repeated


@pytest.mark.parametrize("split", [1, 3, 6])
def test_gqa_cache_gives_the_same_output_in_pieces(split):
    """Fed in two pieces (the second with the first's cache), is the output unchanged?"""
    attn = randomise(seeded(0, lambda: GroupedQueryAttention(16, 4, 2)), 3)
    x = torch.randn(2, 7, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        whole, cache = attn(x)
        first, part = attn(x[:, :split])
        rest, full = attn(x[:, split:], cache=part)
    assert_close(torch.cat([first, rest], 1), whole, **TOL)
    assert_close(full[0], cache[0], **TOL)


def test_top_left_alignment_is_the_bug_a_cache_gets():
    """With a cache, does top-left alignment (is_causal=True) differ from bottom-right?"""
    mask = cached_causal_mask(3, 4)  # 3 new queries after 4 cached keys
    assert mask.tolist() == [[True] * 5 + [False] * 2, [True] * 6 + [False], [True] * 7]
    top_left = torch.ones(3, 7, dtype=torch.bool).tril()  # what is_causal=True means
    assert not torch.equal(mask, top_left)
    q, k, v = (torch.randn(1, 2, n, 4, generator=torch.Generator().manual_seed(n))
               for n in (3, 7, 7))
    bottom_right = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert not torch.allclose(bottom_right, F.scaled_dot_product_attention(q, k, v,
                                                                          is_causal=True))


# ----------------------------------------------------------------------------- RoPE layouts


def test_weight_permutations_are_inverse():
    """Does interleave_rows undo half_split_rows?"""
    w = torch.randn(24, 5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(interleave_rows(half_split_rows(w, 3), 3), w)
    assert not torch.equal(half_split_rows(w, 3), w)


def test_half_split_rope_on_permuted_rows_equals_interleaved_rope():
    """Is transformers' half-split RoPE on half_split_rows(W) x our RoPE on W x, permuted?"""
    from transformers.models.llama.modeling_llama import rotate_half

    n_heads, d_head, L = 2, 8, 6
    w = torch.randn(n_heads * d_head, 5, generator=torch.Generator().manual_seed(1))
    x = torch.randn(L, 5, generator=torch.Generator().manual_seed(2))
    ours = apply_rope((x @ w.T).view(L, n_heads, d_head).transpose(0, 1))  # (H, L, d_head)
    theta = 10000.0 ** (-torch.arange(0, d_head, 2).float() / d_head)
    angle = torch.arange(L).float()[:, None] * theta
    cos, sin = torch.cat([angle, angle], -1).cos(), torch.cat([angle, angle], -1).sin()
    hq = (x @ half_split_rows(w, n_heads).T).view(L, n_heads, d_head).transpose(0, 1)
    theirs = hq * cos + rotate_half(hq) * sin  # transformers' apply_rotary_pos_emb
    perm = half_split_rows(torch.arange(d_head).float()[:, None], 1).long().flatten()
    assert_close(theirs, ours[..., perm], **TOL)


# ----------------------------------------------------------------------------- transformers


def _hf_config(**kw):
    from transformers import LlamaConfig

    base = dict(vocab_size=37, hidden_size=24, intermediate_size=40, num_hidden_layers=2,
                num_attention_heads=6, num_key_value_heads=2, rms_norm_eps=1e-6,
                max_position_embeddings=32, tie_word_embeddings=True,
                attn_implementation="eager")
    return LlamaConfig(**{**base, **kw})


def _copy_layer(ours: LlamaBlock, theirs, n_heads: int, n_kv: int, permute: bool = True):
    """transformers' layer weights into ours; q/k rows to the interleaved RoPE layout."""
    fix = interleave_rows if permute else (lambda w, n: w)
    a, h = ours.self_attn, theirs.self_attn
    pairs = [(ours.input_layernorm.weight, theirs.input_layernorm.weight),
             (ours.post_attention_layernorm.weight, theirs.post_attention_layernorm.weight),
             (a.q_proj.weight, fix(h.q_proj.weight, n_heads)),
             (a.k_proj.weight, fix(h.k_proj.weight, n_kv)),
             (a.v_proj.weight, h.v_proj.weight), (a.o_proj.weight, h.o_proj.weight),
             (ours.mlp.w1.weight, theirs.mlp.gate_proj.weight),
             (ours.mlp.w3.weight, theirs.mlp.up_proj.weight),
             (ours.mlp.w2.weight, theirs.mlp.down_proj.weight)]
    with torch.no_grad():
        for mine, hf in pairs:
            mine.copy_(hf)


@pytest.mark.parametrize("n_heads, n_kv", [(6, 2), (6, 1), (6, 6)])
def test_llama_block_matches_transformers_decoder_layer(n_heads, n_kv):
    """Does LlamaBlock equal transformers' LlamaDecoderLayer (GQA, MQA, MHA), and only with
    the q/k weights permuted between RoPE layouts?"""
    from transformers.models.llama.modeling_llama import LlamaDecoderLayer, LlamaRotaryEmbedding

    cfg = _hf_config(num_attention_heads=n_heads, num_key_value_heads=n_kv)
    theirs = randomise(seeded(0, lambda: LlamaDecoderLayer(cfg, layer_idx=0)), 1)
    ours = seeded(0, lambda: LlamaBlock(24, n_heads, n_kv, 40)).eval()
    _copy_layer(ours, theirs, n_heads, n_kv)
    x = torch.randn(2, 9, 24, generator=torch.Generator().manual_seed(2))
    positions = torch.arange(9)[None]
    cos_sin = LlamaRotaryEmbedding(cfg)(x, positions)
    causal = torch.full((9, 9), float("-inf")).triu(1)[None, None]  # additive, (1, 1, L, L)
    with torch.no_grad():
        want = theirs(x, attention_mask=causal, position_ids=positions,
                      position_embeddings=cos_sin)
        got, _ = ours(x)
        assert_close(got, want, **TOL)
        _copy_layer(ours, theirs, n_heads, n_kv, permute=False)
        assert (ours(x)[0] - want).abs().max() > 1e-2  # the layouts do differ


def _tiny_pair(seed: int = 0):
    from transformers import LlamaForCausalLM

    cfg = _hf_config()
    theirs = randomise(seeded(seed, lambda: LlamaForCausalLM(cfg)), seed + 1, std=0.2)
    ours = seeded(seed, lambda: TinyLlama(37, 24, 6, 2, 2, 40, max_len=32)).eval()
    with torch.no_grad():
        ours.embed_tokens.weight.copy_(theirs.model.embed_tokens.weight)
        ours.norm.weight.copy_(theirs.model.norm.weight)
    for mine, hf in zip(ours.layers, theirs.model.layers, strict=True):
        _copy_layer(mine, hf, 6, 2)
    return ours, theirs


def test_tiny_llama_matches_llama_for_causal_lm_logits():
    """Are TinyLlama's logits those of transformers' LlamaForCausalLM, cached and not?"""
    ours, theirs = _tiny_pair()
    assert theirs.lm_head.weight is theirs.model.embed_tokens.weight  # tied there too
    assert ours.lm_head.weight is ours.embed_tokens.weight
    idx = torch.randint(0, 37, (2, 11), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = theirs(idx).logits
        got, _ = ours(idx)
        first, cache = ours(idx[:, :7])
        rest, _ = ours(idx[:, 7:], cache)
    assert_close(got, want, **TOL)
    assert_close(torch.cat([first, rest], 1), want, **TOL)


def test_param_count_matches_transformers():
    """Does llama_param_count count what LlamaForCausalLM holds, tied and untied?"""
    from transformers import LlamaForCausalLM

    for tied in (True, False):
        config = _hf_config(tie_word_embeddings=tied)
        model = seeded(0, lambda c=config: LlamaForCausalLM(c))
        assert llama_param_count(37, 24, 2, 6, 2, 40, tied=tied) == model.num_parameters()
    ours = seeded(0, lambda: TinyLlama(37, 24, 6, 2, 2, 40, max_len=32))
    assert llama_param_count(37, 24, 2, 6, 2, 40, tied=True) == \
        sum(p.numel() for p in ours.parameters())


def test_kv_cache_bytes_matches_transformers_cache():
    """Is kv_cache_bytes the size of the cache transformers keeps, in float16 and float32?"""
    _, theirs = _tiny_pair()
    idx = torch.randint(0, 37, (3, 10), generator=torch.Generator().manual_seed(4))
    for dtype, size in ((torch.float32, 4), (torch.float16, 2)):
        with torch.no_grad():
            cache = theirs.to(dtype)(idx, use_cache=True).past_key_values
        held = sum(t.numel() * t.element_size() for layer in cache.layers
                   for t in (layer.keys, layer.values))
        assert held == kv_cache_bytes(2, 2, 4, 10, batch=3, bytes_per_value=size)


# ----------------------------------------------------------------------------- sampling


@FAST
@given(st.integers(1, 12), st.floats(0.05, 0.99), st.integers(0, 2**31))
def test_top_k_top_p_match_transformers_processors(k, p, seed):
    """Without ties, do our filters equal transformers' TopK and TopP logits processors?"""
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = 3 * torch.randn(4, 12, generator=torch.Generator().manual_seed(seed))
    want_k = TopKLogitsWarper(top_k=k)(None, logits.clone())
    assert torch.equal(top_k_top_p(logits, top_k=k), want_k)
    want_p = TopPLogitsWarper(top_p=p)(None, logits.clone())
    probs = torch.softmax(logits, -1).sort(-1, descending=True).values.cumsum(-1)
    if ((probs - p).abs() < 1e-5).any():  # a cumulative sum at p: rounding decides
        return
    assert torch.equal(top_k_top_p(logits, top_p=p).isinf(), want_p.isinf())


def test_top_p_keeps_the_token_that_crosses_p_ties_and_one_token():
    """Does top-p keep the crossing token, every token tied at the cut-off, and the top one?"""
    logits = torch.log(torch.tensor([0.5, 0.2, 0.2, 0.1]))
    kept = lambda **kw: (~top_k_top_p(logits, **kw).isinf()).tolist()  # noqa: E731
    assert kept(top_p=0.6) == [True, True, True, False]  # 0.5 + 0.2 crosses 0.6; tie kept
    assert kept(top_p=0.5) == [True, False, False, False]
    assert kept(top_p=0.01) == [True, False, False, False]  # at least one token
    assert kept(top_k=2) == [True, True, True, False]  # tie at the k-th value kept
    assert kept(top_k=1, top_p=1.0) == [True, False, False, False]
    assert torch.equal(top_k_top_p(logits), logits)


@pytest.mark.parametrize("kw, why", [({"top_k": 0}, "top_k"), ({"top_p": 0.0}, "top_p"),
                                     ({"top_p": 1.5}, "top_p")])
def test_top_k_top_p_refuses_bad_arguments(kw, why):
    """Is a meaningless top_k or top_p refused with a one-line error naming it?"""
    with pytest.raises(ValueError, match=why):
        top_k_top_p(torch.zeros(3), **kw)
