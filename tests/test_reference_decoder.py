"""Lesson 07's reference decoder layer, TinyGPT with its KV cache, and generation."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from autograder.reference import DecoderLayer, TinyGPT, causal_mask, generate
from tests.seeding import seeded

FAST = settings(max_examples=25, deadline=None)
TOL = dict(atol=1e-5, rtol=1e-4)



@st.composite
def decoder_case(draw):
    B, L, S, H, d_head, d_ff = (draw(st.integers(1, 4)) for _ in range(6))
    norm_first, batch_first = draw(st.booleans()), draw(st.booleans())
    activation = draw(st.sampled_from(["relu", "gelu"]))
    seed = draw(st.integers(0, 2**31))
    layer = seeded(seed, lambda: nn.TransformerDecoderLayer(
        H * d_head, H, d_ff, dropout=0.1, activation=activation, layer_norm_eps=1e-4,
        batch_first=batch_first, norm_first=norm_first).eval())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # give the zero-initialised biases and unit norms real values
        for name, p in layer.named_parameters():
            if "bias" in name or "norm" in name:
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
    x = torch.randn(B, L, H * d_head, generator=g)
    memory = torch.randn(B, S, H * d_head, generator=g)
    memory_mask = None
    if draw(st.booleans()):  # random (L, S) mask, every query keeping one memory position
        memory_mask = torch.rand(L, S, generator=g) < 0.5
        memory_mask[torch.arange(L), torch.randint(0, S, (L,), generator=g)] = True
    return layer, x, memory, memory_mask


@FAST
@given(decoder_case())
def test_decoder_layer_from_torch_matches_torch(case):
    """Does DecoderLayer.from_torch equal TransformerDecoderLayer with causal and memory masks?"""
    layer, x, memory, memory_mask = case
    ours = DecoderLayer.from_torch(layer).eval()
    self_mask = causal_mask(x.size(1))
    kwargs = {"tgt_mask": ~self_mask}
    if memory_mask is not None:
        kwargs["memory_mask"] = ~memory_mask
    with torch.no_grad():
        if layer.self_attn.batch_first:
            want = layer(x, memory, **kwargs)
        else:
            want = layer(x.transpose(0, 1), memory.transpose(0, 1), **kwargs).transpose(0, 1)
        got, weights = ours(x, memory, self_mask, memory_mask, return_weights=True)
    assert_close(got, want, **TOL)
    B, L, S, H = x.size(0), x.size(1), memory.size(1), layer.self_attn.num_heads
    assert weights["self"].shape == (B, H, L, L) and weights["cross"].shape == (B, H, L, S)
    assert (weights["self"][..., ~self_mask] == 0).all()


def test_decoder_layer_layout():
    """Does DecoderLayer add cross_attn and norm3 to the encoder layer's parts?"""
    layer = seeded(0, lambda: DecoderLayer(8, 2, 16, norm_first=True, activation="gelu"))
    for name in ("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3"):
        assert hasattr(layer, name)
    g = torch.Generator().manual_seed(0)
    x, memory = torch.randn(2, 3, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    assert layer(x, memory).shape == x.shape


def tiny_gpt(seed=0, vocab=13, max_len=24, n_layers=2):
    return seeded(seed, lambda: TinyGPT(vocab, 16, 4, n_layers, max_len)).eval()


@FAST
@given(st.integers(1, 3), st.integers(1, 12), st.data())
def test_cached_forward_matches_uncached(B, T, data):
    """Do logits computed chunk by chunk with a KV cache equal one full forward pass?"""
    model = tiny_gpt()
    g = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    idx = torch.randint(0, 13, (B, T), generator=g)
    cuts = sorted(data.draw(st.sets(st.integers(1, T - 1), max_size=4))) if T > 1 else []
    with torch.no_grad():
        full, full_cache = model(idx)
        pieces, cache = [], None
        for start, stop in zip([0, *cuts], [*cuts, T], strict=True):
            logits, cache = model(idx[:, start:stop], cache)
            pieces.append(logits)
    assert_close(torch.cat(pieces, dim=1), full, **TOL)
    assert len(cache) == 2
    for (k, v), (k_full, v_full) in zip(cache, full_cache, strict=True):
        assert k.shape == v.shape == (B, 4, T, 4)
        assert_close(k, k_full, **TOL)
        assert_close(v, v_full, **TOL)


def test_token_by_token_cache_matches_uncached():
    """Does feeding one token at a time through the cache reproduce every uncached logit?"""
    model = tiny_gpt(seed=3)
    idx = torch.randint(0, 13, (2, 10), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        full, _ = model(idx)
        cache, steps = None, []
        for t in range(idx.size(1)):
            logits, cache = model(idx[:, t : t + 1], cache)
            steps.append(logits)
    assert_close(torch.cat(steps, dim=1), full, **TOL)


def test_tiny_gpt_is_causal():
    """Does changing a later token leave every earlier position's logits unchanged?"""
    model = tiny_gpt(seed=1)
    idx = torch.randint(0, 13, (1, 9), generator=torch.Generator().manual_seed(1))
    changed = idx.clone()
    changed[0, 6:] = (changed[0, 6:] + 1) % 13
    with torch.no_grad():
        a, b = model(idx)[0], model(changed)[0]
    assert_close(a[:, :6], b[:, :6], atol=0, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_tiny_gpt_rejects_too_long_input():
    """Do forward (with or without cache) and generate refuse to go past max_len?"""
    model = tiny_gpt(max_len=6)
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 7, dtype=torch.long))
    _, cache = model(torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 3, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_len"):
        generate(model, torch.zeros(1, 3, dtype=torch.long), max_new_tokens=4)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("temperature", [0.0, 0.7, 1.0, 2.0])
def test_generate_cached_equals_uncached(seed, temperature):
    """Do cached and uncached generation give identical tokens, greedy and sampled?"""
    model = tiny_gpt(seed=seed)
    prompt = torch.randint(0, 13, (3, 4), generator=torch.Generator().manual_seed(seed))
    runs = [generate(model, prompt, 16, temperature=temperature, use_cache=use_cache,
                     generator=torch.Generator().manual_seed(100 + seed))
            for use_cache in (False, True)]
    assert runs[0].shape == (3, 20) and torch.equal(runs[0][:, :4], prompt)
    assert torch.equal(runs[0], runs[1])


def manual_generation(model, idx, steps, pick):
    """Generation written out: full forward each step, choose with pick(last_logits)."""
    with torch.no_grad():
        for _ in range(steps):
            idx = torch.cat([idx, pick(model(idx)[0][:, -1])], dim=1)
    return idx


def test_temperature_zero_is_argmax():
    """Is temperature=0 greedy decoding: the argmax of the logits at every step?"""
    model = tiny_gpt(seed=5)
    prompt = torch.randint(0, 13, (2, 3), generator=torch.Generator().manual_seed(5))
    want = manual_generation(model, prompt, 10, lambda z: z.argmax(-1, keepdim=True))
    assert torch.equal(generate(model, prompt, 10, temperature=0), want)


def test_sampling_uses_only_the_given_generator():
    """Does sampling equal multinomial(softmax(logits / T)) drawn from the given generator?"""
    model = tiny_gpt(seed=6)
    prompt = torch.randint(0, 13, (2, 3), generator=torch.Generator().manual_seed(6))
    g = torch.Generator().manual_seed(7)
    pick = lambda z: torch.multinomial(F.softmax(z / 0.8, dim=-1), 1, generator=g)
    want = manual_generation(model, prompt, 10, pick)
    with torch.random.fork_rng():
        torch.manual_seed(12345)  # the global stream must not matter
        got = generate(model, prompt, 10, temperature=0.8,
                       generator=torch.Generator().manual_seed(7))
    assert torch.equal(got, want)


def test_generate_keeps_rank_mode_and_grad_state():
    """Does a 1-D prompt give a 1-D result, with training mode restored and no graph built?"""
    model = tiny_gpt(seed=2).train()
    out = generate(model, torch.tensor([1, 2, 3]), 5, temperature=0, use_cache=True)
    assert out.shape == (8,) and torch.equal(out[:3], torch.tensor([1, 2, 3]))
    assert model.training and not out.requires_grad
    assert torch.equal(generate(model.eval(), torch.tensor([4]), 0), torch.tensor([4]))
