"""Do the reference kernels follow their inputs' device and dtype (not just float32 on CPU)?

The "meta" device stands in for a GPU: tensors there have shapes but no data, so any constant
built on the CPU by mistake makes the kernel fail or return a CPU tensor.
"""

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import autograder.reference as R

META = torch.device("meta")


def kernel_outputs(device, dtype):
    """One output of every tensor kernel, run on inputs of the given device and dtype."""
    q = torch.ones(2, 3, 5, 8, device=device, dtype=dtype)
    x = torch.ones(2, 5, 8, device=device, dtype=dtype)
    mask = R.causal_mask(5)  # on the CPU on purpose: kernels move masks to the scores
    modules = {name: factory().to(device=device, dtype=dtype) for name, factory in {
        "mha": lambda: R.MultiHeadAttention(8, 2),
        "enc": lambda: R.EncoderLayer(8, 2, 16, norm_first=True),
        "dec": lambda: R.DecoderLayer(8, 2, 16),
        "pos": lambda: R.LearnedPositionalEmbedding(10, 8),
        "gpt": lambda: R.TinyGPT(10, 8, 2, 2, 16),
    }.items()}
    return {
        "sdpa": R.scaled_dot_product_attention(q, q, q, mask)[0],
        "masked": R.masked_attention(q, q, q, R.padding_mask([3, 5], 5))[1],
        "rope": R.apply_rope(q),
        "tiled": R.tiled_attention(q, q, q, 2, causal=True),
        "linear": R.linear_attention(q, q, q),
        "mha": modules["mha"](x, x, x, mask)[0],
        "encoder": modules["enc"](x, mask),
        "decoder": modules["dec"](x, x, mask),
        "learned": modules["pos"](x),
        "gpt": modules["gpt"](torch.zeros(2, 4, dtype=torch.long, device=device))[0],
    }


def test_kernels_stay_on_the_input_device():
    """Does every kernel return its result on the device of its inputs?"""
    for name, out in kernel_outputs(META, torch.float32).items():
        assert out.device == META, name


def test_kernels_keep_float64():
    """Do float64 inputs give float64 results?"""
    for name, out in kernel_outputs(torch.device("cpu"), torch.float64).items():
        assert out.dtype == torch.float64, name


@pytest.mark.parametrize("make", [
    lambda L: R.causal_mask(L, device=META),
    lambda L: R.sliding_window_mask(L, 2, device=META),
    lambda L: R.alibi_bias(3, L, device=META),
    lambda L: R.sinusoidal_encoding(L, 6, device=META),
])
def test_constructors_build_on_the_requested_device(make):
    """Do the mask and encoding constructors honour device=?"""
    assert make(4).device == META


def test_float64_attention_is_tight():
    """In float64 does the reference agree with torch to 1e-12 (no float32 constant inside)?"""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 7, 6, generator=g, dtype=torch.float64) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    tight = dict(atol=1e-12, rtol=1e-12)
    assert_close(R.scaled_dot_product_attention(q, k, v, R.causal_mask(7))[0], want, **tight)
    assert_close(R.tiled_attention(q, k, v, 3, causal=True), want, **tight)
