"""Lesson 10's verdicts: reference oracles, known mistakes and messages (trusted side only).

``compare`` loads the same fixed-seed values as the record half (``cases.py``) into the
reference and, when the numbers differ, tries a catalogue of realistic mistakes written here
as small functions (mean subtracted, eps outside the square root, ``repeat`` instead of
``repeat_interleave``, the half-split RoPE layout, top-left causal alignment with a cache,
top-p dropping the token that crosses p...).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import GroupedQueryAttention as RefGQA
from autograder.reference import LlamaBlock as RefBlock
from autograder.reference import RMSNorm as RefRMS
from autograder.reference import SwiGLU as RefSwiGLU
from autograder.reference import TinyLlama as RefTiny
from autograder.reference import apply_rope
from autograder.reference import kv_cache_bytes as ref_kv_bytes
from autograder.reference import repeat_kv as ref_repeat_kv
from autograder.reference import top_k_top_p as ref_top_k_top_p

from .._core import Outcome
from .._module_verdicts import (
    check_built,
    expect_known,
    explain_load,
    module_output,
    reference_module,
    reference_output,
    to_numpy,
)
from .._verdict import (
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_shape,
    fail,
)
from .cases import (
    BLOCK_CASES,
    BLOCK_HIDDEN_CASES,
    CACHE_CASES,
    CACHE_HIDDEN_CASES,
    GQA_CASES,
    GQA_HIDDEN_CASES,
    KV_CASES,
    KV_HIDDEN_CASES,
    REP_CASES,
    REP_HIDDEN_CASES,
    RMS_CASES,
    RMS_HIDDEN_CASES,
    RMS_TORCH_CASES,
    SWI_CASES,
    SWI_HIDDEN_CASES,
    TINY_ARGS,
    TKP_HIDDEN_CASES,
    TOP_K_CASES,
    TOP_P_CASES,
    BlockCase,
    GqaCase,
    RmsCase,
    SwiCase,
    block_params,
    gqa_input,
    gqa_params,
    rep_input,
    rms_input,
    rms_params,
    swi_input,
    swi_params,
    tiny_params,
    tiny_tokens,
    tkp_input,
)
from .cases import positions as case_positions

RMS, SWI, REP, GQA, BLOCK, TINY = ("Your RMSNorm", "Your SwiGLU", "Your repeat_kv",
                                   "Your GroupedQueryAttention", "Your LlamaBlock",
                                   "Your TinyLlama")
KVB, TKP = "Your kv_cache_bytes", "Your top_k_top_p"


# ============================================================================= RMSNorm


def _rms(x: Tensor, w: Tensor, eps: float, *, center: bool = False, eps_outside: bool = False,
         power: float = 0.5, reduce: str = "mean", dims=(-1,)) -> Tensor:
    """An RMS norm with optional, deliberate mistakes."""
    x0 = x - x.mean(dims, keepdim=True) if center else x
    ms = (x0 * x0).sum(dims, keepdim=True) if reduce == "sum" else \
        (x0 * x0).mean(dims, keepdim=True)
    if eps_outside:
        return x0 / (ms ** power + eps) * w
    return x0 / (ms + eps) ** power * w


M_RMS_CENTER = ("It matches (x - mean) / sqrt(mean((x - mean)**2) + eps), a layer norm without "
                "bias. RMSNorm does not subtract the mean: divide x itself by "
                "sqrt(mean(x**2) + eps).")
M_RMS_EPS_OUTSIDE = ("It matches x / (sqrt(mean(x**2)) + eps): eps is added outside the square "
                     "root. It belongs inside: x / sqrt(mean(x**2) + eps) (torch.rsqrt helps).")
M_RMS_NO_EPS = "It matches x / sqrt(mean(x**2)) without eps: add eps inside the square root."
M_RMS_MS = ("It matches dividing by mean(x**2) + eps instead of its square root: divide by "
            "sqrt(mean(x**2) + eps), the root of the mean square.")
M_RMS_SUM = ("It matches the sum of squares instead of their mean (the L2 norm): divide the sum "
             "by d_model, x.pow(2).mean(-1, keepdim=True).")
M_RMS_NO_WEIGHT = "It matches the output without the weight: multiply by self.weight at the end."
M_RMS_ALL = ("It matches one mean square for the whole tensor. RMSNorm normalises each token on "
             "its own: x.pow(2).mean(-1, keepdim=True).")


def _rms_mistakes(case: RmsCase, x: Tensor, w: Tensor) -> list[tuple[str, np.ndarray]]:
    eps = case.eps_value
    out = [(M_RMS_CENTER, _rms(x, w, eps, center=True)),
           (M_RMS_EPS_OUTSIDE, _rms(x, w, eps, eps_outside=True))]
    if not math.isclose(eps, 1e-5):
        out.append((f"It matches eps = 1e-5 (torch's LayerNorm default), but this RMSNorm has "
                    f"eps={eps} (Llama's default is 1e-6): store the argument, self.eps = eps, "
                    "and use it.", _rms(x, w, 1e-5)))
    out += [(M_RMS_NO_EPS, _rms(x, w, 0.0)), (M_RMS_MS, _rms(x, w, eps, power=1.0)),
            (M_RMS_SUM, _rms(x, w, eps, reduce="sum")),
            (M_RMS_NO_WEIGHT, _rms(x, torch.ones_like(w), eps)),
            (M_RMS_ALL, _rms(x, w, eps, dims=tuple(range(x.dim()))))]
    return [(m, to_numpy(v)) for m, v in out]


RMS_FIX = {"weight": "self.weight = nn.Parameter(torch.ones(d_model))"}


def _rms_output(info: dict, case: RmsCase) -> np.ndarray:
    return module_output(info, case, RMS, lambda: explain_load(
        info["seen"], RMS, case.built, RMS_FIX, {"weight": (case.d,)}),
        "A norm keeps the shape of its input.", "Is eps inside the square root?")


def _compare_rms(cases: list[RmsCase], oracle: str = "reference"):
    def compare(rec: dict) -> None:
        for case in cases:
            got = _rms_output(rec[case.desc], case)
            x, w = rms_input(case), rms_params(case)["weight"]
            ref = reference_module(RefRMS, (case.d, case.eps_value), {}, {"weight": w}) \
                if oracle == "reference" else \
                reference_module(nn.RMSNorm, (case.d,), {"eps": case.eps_value}, {"weight": w})
            want = reference_output(ref, x)
            expect_known(got, want, RMS, case.desc, _rms_mistakes(case, x, w), atol=1e-5)
    return compare


def _compare_rms_params(rec: dict) -> None:
    check_outcome(rec["construct"], "RMSNorm(12)")
    params = {n: (s, v) for n, s, v in rec["params"] or []}
    if "weight" not in params:
        fail(f"{RMS} has no learnable `weight` (RMSNorm(12)). {RMS_FIX['weight']}.")
    extra = sorted(set(params) - {"weight"})
    if extra:
        fail(f"{RMS} has extra parameters {extra}. RMSNorm learns a weight only: no bias (it "
             "does not centre, so there is nothing to shift back), and eps stays a number.")
    shape, value = params["weight"]
    if shape != (12,) or not np.array_equal(value, np.ones(12)):
        fail(f"A new RMSNorm(12) should start with weight = ones of shape (12,); yours has "
             f"shape {shape}. {RMS_FIX['weight']}.")
    if not isinstance(rec["eps"], float) or not math.isclose(rec["eps"], 1e-6):
        fail(f"RMSNorm(12) should have eps = 1e-6 by default (Llama's value) stored as "
             f"self.eps; yours has {rec['eps']!r}.")




# ============================================================================= SwiGLU


def _swi(x: Tensor, p: dict[str, Tensor], act=F.silu, gate: str = "w1", up: str | None = "w3"
         ) -> Tensor:
    hidden = act(x @ p[f"{gate}.weight"].T)
    if up is not None:
        hidden = hidden * (x @ p[f"{up}.weight"].T)
    return hidden @ p["w2.weight"].T


M_SWI_SWAPPED = ("It matches silu(w3 x) * w1 x: the gate and the up projection are swapped. w1 "
                 "is the gate (it goes through SiLU), w3 the plain up projection: "
                 "w2(silu(w1(x)) * w3(x)).")
M_SWI_NO_GATE = ("It matches w2(silu(w1 x)), a plain MLP with SiLU: the gating product is "
                 "missing. Multiply by the second projection: silu(w1(x)) * w3(x).")
M_SWI_RELU = ("It matches ReLU instead of SiLU on the gate (that is ReGLU). SwiGLU uses "
              "silu(z) = z * sigmoid(z): F.silu.")
M_SWI_GELU = ("It matches GELU instead of SiLU on the gate (that is GEGLU). SwiGLU uses "
              "silu(z) = z * sigmoid(z): F.silu.")
M_SWI_SIGMOID = ("It matches sigmoid(w1 x) * w3 x (the original GLU gate). SwiGLU uses the "
                 "Swish/SiLU gate, silu(z) = z * sigmoid(z): F.silu.")
M_SWI_BOTH = ("It matches silu applied to both projections. Only the gate w1(x) goes through "
              "SiLU; w3(x) is used as it is.")


def _swi_mistakes(case: SwiCase) -> list[tuple[str, np.ndarray]]:
    x, p = swi_input(case), swi_params(case)
    both = (F.silu(x @ p["w1.weight"].T) * F.silu(x @ p["w3.weight"].T)) @ p["w2.weight"].T
    out = [(M_SWI_SWAPPED, _swi(x, p, gate="w3", up="w1")),
           (M_SWI_NO_GATE, _swi(x, p, up=None)), (M_SWI_RELU, _swi(x, p, act=F.relu)),
           (M_SWI_GELU, _swi(x, p, act=F.gelu)), (M_SWI_SIGMOID, _swi(x, p, act=torch.sigmoid)),
           (M_SWI_BOTH, both)]
    return [(m, to_numpy(v)) for m, v in out]


SWI_FIX = {"w1": "self.w1 = nn.Linear(d_model, d_ff, bias=False) (the gate).",
           "w3": "self.w3 = nn.Linear(d_model, d_ff, bias=False) (the up projection).",
           "w2": "self.w2 = nn.Linear(d_ff, d_model, bias=False) (the down projection)."}


def _compare_swi(cases: list[SwiCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            built = case.built
            check_built(info, built, SWI)
            p = swi_params(case)
            explain_load(info["seen"], SWI, built, SWI_FIX,
                         {k: tuple(v.shape) for k, v in p.items()})
            biases = [n for n, _ in info.get("params") or [] if n.endswith("bias")]
            if biases:
                fail(f"{SWI} has biases ({', '.join(biases)}). Llama's linear maps have none: "
                     "nn.Linear(..., bias=False).")
            got = as_array(check_outcome(info["forward"], SWI, case.desc), SWI, case.desc)
            want = reference_output(reference_module(RefSwiGLU, *case.args(), p), swi_input(case))
            expect_known(got, want, SWI, case.desc, _swi_mistakes(case))
    return compare


# ============================================================================= repeat_kv


M_REP_TILE = ("It matches x.repeat(1, n_rep, 1, 1): the kv heads are tiled (0, 1, 0, 1, ...), "
              "so query head 1 gets kv head 1 instead of kv head 0. Llama (and SDPA's "
              "enable_gqa) give each kv head to n_rep consecutive query heads (0, 0, 1, 1, ...): "
              "repeat_interleave(n_rep, dim=1), or expand a new axis after dim 1 and reshape.")
M_REP_AXIS = ("It matches the repetition along the sequence axis (dim 2): repeat the heads, "
              "dim 1.")


def _compare_rep(cases):
    def compare(rec: dict) -> None:
        for (shape, n_rep, seed), out in zip(cases, rec["cases"], strict=True):
            desc = f"x of shape {shape}, n_rep={n_rep}"
            got = as_array(check_outcome(out, REP, desc), REP, desc)
            x = rep_input(shape, seed)
            want = to_numpy(ref_repeat_kv(x, n_rep))
            mistakes = [(M_REP_TILE, to_numpy(x.repeat(1, n_rep, 1, 1))),
                        (M_REP_AXIS, to_numpy(x.repeat_interleave(n_rep, dim=2)))]
            expect_shape(got, want.shape, REP, desc,
                         hint="(B, H_kv, L, d_head) -> (B, H_kv * n_rep, L, d_head).")
            expect_known(got, want, REP, desc, mistakes, atol=0, rtol=0)
    return compare




# ============================================================================= attention


def _rope_half(x: Tensor, positions: Tensor) -> Tensor:
    """Hugging Face's half-split RoPE: pairs (i, i + d_head/2)."""
    d = x.size(-1)
    theta = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)
    angle = positions.float()[:, None] * theta  # (L, d/2)
    cos, sin = torch.cat([angle, angle], -1).cos(), torch.cat([angle, angle], -1).sin()
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def _gqa_fn(x: Tensor, p: dict[str, Tensor], n_heads: int, n_kv: int,
            positions: Tensor | None = None, past: tuple | None = None, *,
            rope: str = "interleaved", repeat: str = "interleave", mask: str = "bottom_right",
            scale: str = "d_head", prefix: str = "") -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """GQA written out, with deliberate mistakes by name (see the M_GQA_* messages)."""
    B, T, d = x.shape
    dh = d // n_heads
    t_past = 0 if past is None else past[0].size(-2)
    pos = torch.arange(t_past, t_past + T) if positions is None else positions
    if positions is None and rope == "restart":
        pos = torch.arange(T)
    heads = lambda name, n: (x @ p[f"{prefix}{name}.weight"].T).view(B, T, n, dh)\
        .transpose(1, 2)  # noqa: E731
    q, k, v = heads("q_proj", n_heads), heads("k_proj", n_kv), heads("v_proj", n_kv)
    rot = {"half": _rope_half, "none": lambda t, _: t}.get(rope, apply_rope)
    q, k = rot(q, pos), rot(k, pos)
    if rope == "qkv":
        v = apply_rope(v, pos)
    if past is not None:
        k, v = torch.cat([past[0], k], -2), torch.cat([past[1], v], -2)
    n_rep = n_heads // n_kv
    kk, vv = ((k.repeat(1, n_rep, 1, 1), v.repeat(1, n_rep, 1, 1)) if repeat == "tile" else
              (k.repeat_interleave(n_rep, 1), v.repeat_interleave(n_rep, 1)))
    scores = q @ kk.transpose(-2, -1) / math.sqrt(d if scale == "d_model" else dh)
    if scale == "none":
        scores = q @ kk.transpose(-2, -1)
    L = k.size(-2)
    allowed = {"bottom_right": torch.ones(T, L, dtype=torch.bool).tril(L - T),
               "top_left": torch.ones(T, L, dtype=torch.bool).tril(),
               "none": torch.ones(T, L, dtype=torch.bool),
               "no_past": torch.ones(T, L, dtype=torch.bool).tril(L - T)
               & (torch.arange(L) >= L - T)}[mask]
    scores = scores.masked_fill(~allowed, float("-inf"))
    out = torch.softmax(scores, -1) @ vv  # (B, H, T, dh)
    out = out.transpose(1, 2).reshape(B, T, n_heads * dh) @ p[f"{prefix}o_proj.weight"].T
    return out, (k, v)


M_GQA_TILE = ("It matches the kv heads tiled with .repeat (query head h reads kv head "
              "h % n_kv_heads). Each kv head serves consecutive query heads: use your repeat_kv "
              "(repeat_interleave order), as Llama and SDPA's enable_gqa do.")
M_GQA_NO_ROPE = ("It matches attention without RoPE: rotate the queries and the keys with "
                 "apply_rope(q, positions) and apply_rope(k, positions) before the scores.")
M_GQA_ROPE_V = ("It matches RoPE applied to the values as well. RoPE rotates queries and keys "
                "only (it shapes the scores, not what is passed on).")
M_GQA_HALF = ("It matches the half-split RoPE layout (pairs i and i + d_head/2, Hugging Face's "
              "rotate_half). This lesson uses lesson 05's interleaved pairs (2i, 2i+1): "
              "apply_rope from attnlab.")
M_GQA_NO_MASK = ("It matches attention without the causal mask: every position sees the future. "
                 "Mask the scores so that query i sees keys j <= its own position.")
M_GQA_SCALE_D = ("It matches scores divided by sqrt(d_model); the scale is 1 / sqrt(d_head), "
                 "the width of one head.")
M_GQA_NO_SCALE = "It matches scores without the 1 / sqrt(d_head) scale."
M_GQA_TOP_LEFT = ("The new tokens fed with a cache match TOP-LEFT causal alignment (new query i "
                  "sees keys 0..i, what is_causal=True and tril() give). With T_past cached keys "
                  "the new query i sits at position T_past + i and must see keys "
                  "0..T_past + i: bottom-right alignment, torch.ones(T, T_past + T, "
                  "dtype=torch.bool).tril(diagonal=T_past).")
M_GQA_RESTART = ("The new tokens fed with a cache match RoPE positions restarting at 0. Their "
                 "positions continue after the cache: T_past, ..., T_past + T - 1, with T_past "
                 "= cache[0].size(-2).")
M_GQA_NO_PAST = ("The new tokens fed with a cache match attention to the new keys only: "
                 "concatenate the cached keys and values in front, torch.cat([past_k, k], "
                 "dim=-2), before the scores.")


def _gqa_mistakes(case: GqaCase, x: Tensor, past: tuple | None, pos: Tensor | None,
                  second: bool) -> list[tuple[str, np.ndarray]]:
    p = gqa_params(case)
    run = lambda **kw: to_numpy(_gqa_fn(x, p, case.n_heads, case.n_kv, pos, past, **kw)[0])  # noqa
    out = []
    if second:
        out += [(M_GQA_TOP_LEFT, run(mask="top_left")), (M_GQA_RESTART, run(rope="restart")),
                (M_GQA_NO_PAST, to_numpy(_gqa_fn(x, p, case.n_heads, case.n_kv,
                                            torch.arange(past[0].size(-2),
                                                         past[0].size(-2) + x.size(1)))[0]))]
    if case.n_heads != case.n_kv and case.n_kv > 1:
        out.append((M_GQA_TILE, run(repeat="tile")))
    out += [(M_GQA_NO_ROPE, run(rope="none")), (M_GQA_ROPE_V, run(rope="qkv")),
            (M_GQA_HALF, run(rope="half")), (M_GQA_SCALE_D, run(scale="d_model")),
            (M_GQA_NO_SCALE, run(scale="none"))]
    if x.size(1) > 1:
        out.append((M_GQA_NO_MASK, run(mask="none")))
    return out


GQA_FIX = {
    "q_proj": "self.q_proj = nn.Linear(d_model, n_heads * d_head, bias=False).",
    "k_proj": "self.k_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=False): the keys "
              "have only n_kv_heads heads.",
    "v_proj": "self.v_proj = nn.Linear(d_model, n_kv_heads * d_head, bias=False): the values "
              "have only n_kv_heads heads.",
    "o_proj": "self.o_proj = nn.Linear(n_heads * d_head, d_model, bias=False).",
}


def _unpack_attn(out: Outcome, what: str, where: str) -> tuple[np.ndarray, tuple]:
    value = check_outcome(out, what, where)
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(f"{what} should return a pair (output, cache), but returned "
             f"{getattr(value, 'type_name', type(value).__name__)} ({where}).")
    output, cache = value
    if not isinstance(cache, (tuple, list)) or len(cache) != 2:
        fail(f"The cache your {what[5:]} returns should be a pair (keys, values), each "
             f"(B, n_kv_heads, T_so_far, d_head); it is "
             f"{getattr(cache, 'type_name', type(cache).__name__)} ({where}).")
    return as_array(output, what, where), (as_array(cache[0], what, where),
                                           as_array(cache[1], what, where))


def _expect_cache(cache: tuple, want: tuple, case: GqaCase, what: str, where: str) -> None:
    k, v = cache
    if k.shape != tuple(want[0].shape):
        hint = ""
        if k.shape[1:2] == (case.n_heads,) and case.n_heads != case.n_kv:
            hint = (" It holds n_heads heads: you cached the keys after repeat_kv. Cache them "
                    "before repeating, (B, n_kv_heads, T, d_head): saving that memory is the "
                    "point of grouped-query attention.")
        fail(f"The cached keys of {what[5:]} have shape {k.shape} but should have shape "
             f"{tuple(want[0].shape)} = (B, n_kv_heads, T_so_far, d_head) ({where}).{hint}")
    if not close(k, to_numpy(want[0]), 2e-5, 1e-4) or not close(v, to_numpy(want[1]), 2e-5, 1e-4):
        fail(f"The cached keys or values of {what[5:]} are not the reference's ({where}). Cache "
             "the keys after RoPE (rotated once, at their own position) and the values as "
             "projected, concatenated with the past along the sequence axis (dim=-2).")


def _check_gqa_built(info: dict, case: GqaCase) -> str:
    built = case.built
    check_built(info, built, GQA, calls=("calls",))
    explain_load(info["seen"], GQA, built, GQA_FIX,
                 {k: tuple(v.shape) for k, v in gqa_params(case).items()})
    if info["biases"]:
        fail(f"{GQA} has biases ({', '.join(info['biases'])}). Llama's projections have none: "
             "nn.Linear(..., bias=False).")
    return built


def _pieces(info: dict, case: GqaCase, ref, x: Tensor, want: Tensor, what: str) -> tuple:
    """The learner's output fed in two pieces with its own cache (shape checked), and what the
    reference cached after the first piece: (output, cache, reference's past, where)."""
    where = (f"{case.desc}, fed as {case.split} tokens, then {case.T - case.split} with the "
             "cache of the first call")
    got, cache = _unpack_attn(info["calls"]["pieces"], what, where)
    expect_shape(got, tuple(want.shape), what, where)
    with torch.no_grad():
        _, past = ref(x[:, :case.split])
    return got, cache, past, where


def _compare_gqa(cases: list[GqaCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _check_gqa_built(info, case)
            ref = reference_module(RefGQA, *case.args(), gqa_params(case))
            x, pos = gqa_input(case), case_positions(case)
            with torch.no_grad():
                want, want_cache = ref(x, pos)
            got, cache = _unpack_attn(info["calls"]["whole"], GQA, case.desc)
            expect_known(got, to_numpy(want), GQA, case.desc,
                         _gqa_mistakes(case, x, None, pos, second=False))
            _expect_cache(cache, want_cache, case, GQA, case.desc)
            if case.split:
                got, cache, past, where = _pieces(info, case, ref, x, want, GQA)
                mistakes = _gqa_mistakes(case, x[:, case.split:], past, None, second=True)
                expect_known(got[:, case.split:], to_numpy(want[:, case.split:]), GQA, where,
                             mistakes)
                expect_known(got, to_numpy(want), GQA, where, [])
                _expect_cache(cache, want_cache, case, GQA, where)
    return compare


# ============================================================================= LlamaBlock


def _block_fn(case: BlockCase, x: Tensor, past=None, *, form: str = "pre",
              norms: tuple[str, str] = ("input_layernorm", "post_attention_layernorm"),
              resid: tuple[str, ...] = ("attn", "mlp"), **attn_kw) -> Tensor:
    p, eps = block_params(case), case.eps
    mlp = {k[4:]: v for k, v in p.items() if k.startswith("mlp.")}
    norm = lambda t, name: _rms(t, p[f"{name}.weight"], eps)  # noqa: E731
    attn = lambda t: _gqa_fn(t, p, case.n_heads, case.n_kv, None, past, prefix="self_attn.",
                             **attn_kw)[0]  # noqa: E731
    if form == "post":
        x = norm(x + attn(x), norms[0])
        return norm(x + _swi(x, mlp), norms[1])
    h = attn(norm(x, norms[0]))
    x = x + h if "attn" in resid else h
    h = _swi(norm(x, norms[1]), mlp)
    return x + h if "mlp" in resid else h


M_BLOCK_POST = ("It matches the POST-norm block, norm(x + sublayer(x)). Llama is pre-norm: "
                "x = x + self_attn(input_layernorm(x)), then x = x + mlp("
                "post_attention_layernorm(x)).")
M_BLOCK_NORMS = ("It matches the two norms swapped: input_layernorm goes before attention, "
                 "post_attention_layernorm before the MLP.")
M_BLOCK_ONE_NORM = ("It matches one RMSNorm ({}) used before both sublayers. Each sublayer has "
                    "its own: input_layernorm before attention, post_attention_layernorm before "
                    "the MLP.")
M_BLOCK_NO_RESID = ("It matches the block without the residual around {}: add the sublayer's "
                    "output to its input, x = x + sublayer(norm(x)).")


def _block_mistakes(case: BlockCase, x: Tensor, past) -> list[tuple[str, np.ndarray]]:
    run = lambda **kw: to_numpy(_block_fn(case, x, past, **kw))  # noqa: E731
    a, b = "input_layernorm", "post_attention_layernorm"
    out = [(M_BLOCK_POST, run(form="post")), (M_BLOCK_NORMS, run(norms=(b, a))),
           (M_BLOCK_ONE_NORM.format(a), run(norms=(a, a))),
           (M_BLOCK_ONE_NORM.format(b), run(norms=(b, b))),
           (M_BLOCK_NO_RESID.format("attention"), run(resid=("mlp",))),
           (M_BLOCK_NO_RESID.format("the MLP"), run(resid=("attn",))),
           (M_BLOCK_NO_RESID.format("both sublayers"), run(resid=()))]
    if past is not None:
        out += [(M_GQA_TOP_LEFT, run(mask="top_left")), (M_GQA_RESTART, run(rope="restart"))]
    out += [(M_GQA_NO_ROPE, run(rope="none")), (M_GQA_HALF, run(rope="half"))]
    return out


BLOCK_FIX = {
    "input_layernorm": "self.input_layernorm = RMSNorm(d_model, eps).",
    "post_attention_layernorm": "self.post_attention_layernorm = RMSNorm(d_model, eps).",
    "self_attn": "self.self_attn = GroupedQueryAttention(d_model, n_heads, n_kv_heads).",
    "mlp": "self.mlp = SwiGLU(d_model, d_ff).",
}


def _compare_block(cases: list[BlockCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            built = case.built
            check_built(info, built, BLOCK, calls=("calls",))
            explain_load(info["seen"], BLOCK, built, BLOCK_FIX,
                         {k: tuple(v.shape) for k, v in block_params(case).items()})
            ref = reference_module(RefBlock, *case.args(), block_params(case))
            x = gqa_input(case)
            with torch.no_grad():
                want, want_cache = ref(x)
            got, cache = _unpack_attn(info["calls"]["whole"], BLOCK, case.desc)
            expect_known(got, to_numpy(want), BLOCK, case.desc, _block_mistakes(case, x, None))
            if case.split:
                got, cache, past, where = _pieces(info, case, ref, x, want, BLOCK)
                expect_known(got[:, case.split:], to_numpy(want[:, case.split:]), BLOCK, where,
                             _block_mistakes(case, x[:, case.split:], past))
                _expect_cache(cache, want_cache, case, BLOCK, where)
    return compare


# ============================================================================= TinyLlama

def _fresh_tiny() -> RefTiny:
    return reference_module(RefTiny, TINY_ARGS)


TINY_FIX = {"embed_tokens": "self.embed_tokens = nn.Embedding(vocab_size, d_model).",
            "layers": "self.layers = nn.ModuleList(LlamaBlock(d_model, n_heads, n_kv_heads, "
                      "d_ff, eps) for _ in range(n_layers)).",
            "norm": "self.norm = RMSNorm(d_model, eps)."}
TINY_BUILT = "TinyLlama(" + ", ".join(map(repr, TINY_ARGS)) + ")"
M_TIE = "Tie them by sharing the Parameter itself: self.lm_head.weight = self.embed_tokens.weight."


def _compare_tying(rec: dict) -> None:
    built = TINY_BUILT
    check_outcome(rec["construct"], built)
    tying = check_outcome(rec["tying"], TINY, "looking at lm_head.weight and "
                          "embed_tokens.weight") if rec["tying"] else None
    if tying is None:
        fail(f"{TINY} could not be built ({built}).")
    ref = sum(p.numel() for p in _fresh_tiny().parameters())
    if tying["same_object"]:
        if tying["n_params"] != ref:
            fail(f"{TINY} has {tying['n_params']} parameters; the tied model has {ref}. "
                 f"Parameters: {', '.join(tying['named'][:8])}...")
        return
    if tying["same_storage"]:
        fail("lm_head.weight and embed_tokens.weight share their numbers but are two "
             "Parameters (you assigned .data): each gets its own gradient and the optimiser "
             f"updates the shared numbers twice. {M_TIE}")
    if tying["equal"]:
        fail("lm_head.weight equals embed_tokens.weight but is a copy (clone or copy_): the "
             f"two drift apart as soon as training starts. {M_TIE}")
    fail(f"lm_head.weight is not tied to embed_tokens.weight: the model has {tying['n_params']} "
         f"parameters instead of {ref}. {M_TIE}")


def _compare_tiny_logits(rec: dict) -> None:
    _compare_tying(rec)
    built = TINY_BUILT
    for out in (rec["whole"], rec["pieces"]):
        if out.forbidden:
            check_outcome(out, TINY, "tokens of shape (2, 9)")
    p = tiny_params()
    explain_load(rec["seen"], TINY, built, TINY_FIX, {k: tuple(v.shape) for k, v in p.items()})
    ref = _fresh_tiny()
    ref.load_state_dict({**p, "lm_head.weight": p["embed_tokens.weight"]})
    with torch.no_grad():
        want = to_numpy(ref(tiny_tokens())[0])
        x = ref.norm(ref.embed_tokens(tiny_tokens()))
    value = check_outcome(rec["whole"], TINY, "tokens of shape (2, 9)")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(f"{TINY}'s forward should return (logits, cache), like TinyGPT's in lesson 07.")
    got = as_array(value[0], TINY, "tokens of shape (2, 9)")
    m_no_layers = ("It matches the logits without the layers: run x through every LlamaBlock "
                   "(each with its own cache entry) before the final norm.")
    expect_known(got, want, f"{TINY}'s logits", "tokens of shape (2, 9)",
                 [(m_no_layers, to_numpy(x @ ref.embed_tokens.weight.T))], atol=1e-4)
    pieces = as_array(check_outcome(rec["pieces"], TINY, "5 tokens, then 4 with the cache"),
                      TINY)
    expect_known(pieces, want, f"{TINY}'s logits", "5 tokens, then 4 with the cache of the first "
            "call", [], atol=1e-4)




# ============================================================================= kv_cache_bytes


def _compare_kv(cases):
    def compare(rec: dict) -> None:
        for (args, kw), out in zip(cases, rec["cases"], strict=True):
            names = ("n_layers", "n_kv_heads", "d_head", "seq_len")
            desc = ", ".join([f"{n}={a}" for n, a in zip(names, args, strict=True)] +
                             [f"{k}={v}" for k, v in kw.items()])
            got = check_outcome(out, KVB, desc)
            want = ref_kv_bytes(*args, **kw)
            if isinstance(got, float) and got == want:
                fail(f"{KVB} returned the float {got!r} ({desc}); a number of bytes is a whole "
                     "number: return an int (multiply ints, or wrap the result in int()).")
            if isinstance(got, bool) or not isinstance(got, int):
                fail(f"{KVB} should return an int, but returned "
                     f"{getattr(got, 'type_name', type(got).__name__)} ({desc}).")
            if got == want:
                continue
            batch, bpv = kw.get("batch", 1), kw.get("bytes_per_value", 2)
            per = want // (batch * bpv)
            known = [(want // 2, "only one of keys and values: the cache holds both, a factor "
                                 "of 2"),
                     (want * 8, "bits, not bytes: bytes_per_value is already in bytes"),
                     (per * bpv, "the batch missing: every sequence has its own cache"),
                     (per * batch * 2, "bytes_per_value ignored (2, float16's size, always)"),
                     (want // args[0], "one layer only: every layer keeps its own keys and "
                                       "values")]
            why = next((m for value, m in known if value == got and value != want), None)
            fail(f"{KVB} returned {got:,} for {desc}, expected {want:,}."
                 + (f" It matches {why}." if why else " The cache holds keys and values (2) "
                    "for each layer, kv head, position and sequence, bytes_per_value bytes "
                    "each."))
    return compare




# ============================================================================= top_k_top_p


def _keep_sets(logits: Tensor, top_k, top_p, *, ties: bool = True, crossing: bool = True,
               at_least_one: bool = True) -> Tensor:
    """Kept entries (bool) under deliberate mistakes, for the messages."""
    keep = torch.ones_like(logits, dtype=torch.bool)
    if top_k is not None and top_k < logits.size(-1):
        if ties:
            keep &= logits >= torch.topk(logits, top_k, -1).values[..., -1:]
        else:
            idx = torch.topk(logits, top_k, -1).indices
            keep &= torch.zeros_like(keep).scatter(-1, idx, True)
    if top_p is not None:
        masked = logits.masked_fill(~keep, float("-inf"))
        probs = torch.softmax(masked, -1)
        sorted_p, order = probs.sort(-1, descending=True)
        cum = sorted_p.cumsum(-1)
        in_set = (cum - sorted_p < top_p) if crossing else (cum <= top_p)
        if at_least_one:
            in_set[..., 0] = True
        chosen = torch.zeros_like(keep).scatter(-1, order, in_set)
        if ties and crossing:
            last = masked.masked_fill(~chosen, float("inf")).amin(-1, keepdim=True)
            chosen = masked >= last
        keep &= chosen
    return keep


def _describe_keep(keep: np.ndarray) -> str:
    rows = np.atleast_2d(keep).reshape(-1, keep.shape[-1])
    return "; ".join("[" + ", ".join("kept" if k else "-inf" for k in row) + "]"
                     for row in rows[:2])


def _compare_tkp(cases):
    def compare(rec: dict) -> None:
        for case, out in zip(cases, rec["cases"], strict=True):
            got = as_array(check_outcome(out, TKP, case.desc), TKP, case.desc)
            x = tkp_input(case)
            want = to_numpy(ref_top_k_top_p(x, **case.kwargs()))
            expect_shape(got, want.shape, TKP, case.desc,
                         hint="Return logits of the input's shape, the removed ones set to -inf.")
            got_kept, want_kept = ~np.isneginf(got), ~np.isneginf(want)
            if np.array_equal(got_kept, want_kept):
                expect_close(np.where(want_kept, got, 0.0), np.where(want_kept, want, 0.0),
                             f"{TKP}'s kept logits", case.desc, hint="Keep the kept logits as "
                             "they are: no softmax, no renormalising; only the others become "
                             "-inf.")
                continue
            if not got_kept.any(axis=-1).all():
                fail(f"{TKP} removed every token of a row ({case.desc}). Always keep at least "
                     "the most likely token.")
            zeros = (got == 0) & ~want_kept
            if zeros.any():
                fail(f"{TKP} set removed logits to 0 ({case.desc}). A logit of 0 is still a "
                     "possible token (exp(0) = 1); set them to float('-inf') so that softmax "
                     "gives them probability 0.")
            k, p = case.top_k, case.top_p
            mistakes = [
                ("Your cut-off drops tokens tied with the last kept one: torch.topk picks one of "
                 "equal logits arbitrarily. Keep every logit >= the k-th largest value (and for "
                 "top-p, >= the last kept logit).", _keep_sets(x, k, p, ties=False)),
                ("It drops the token that crosses p: the nucleus is the smallest set whose "
                 "probability reaches p, so the token that takes the sum past p is in it. Keep "
                 "a token when the probability of the tokens ranked above it is still < p "
                 "(cumsum - probs < top_p).", _keep_sets(x, k, p, crossing=False,
                                                           at_least_one=False)),
                ("It drops the token that crosses p (you kept cumsum <= p). Keep a token when "
                 "the probability ranked above it is still < p: cumsum - probs < top_p.",
                 _keep_sets(x, k, p, crossing=False)),
            ]
            if k is not None and p is not None:
                mistakes.append(("It ignores top_k when top_p is given too: apply top-k first, "
                                 "then top-p to what is left.", _keep_sets(x, None, p)))
            for message, keep in mistakes:
                if np.array_equal(got_kept, to_numpy(keep)):
                    fail(f"{TKP} keeps the wrong tokens ({case.desc}). {message}")
            fail(f"{TKP} keeps the wrong tokens ({case.desc}): yours "
                 f"{_describe_keep(got_kept)}, expected {_describe_keep(want_kept)}.")
    return compare





VERDICTS = {
    "rmsnorm.values": (
        "RMSNorm: matches the reference with a random weight and a large eps",
        _compare_rms(RMS_CASES)),
    "rmsnorm.hidden": (
        "RMSNorm: default eps 1e-6 on small inputs, 2-d and 4-d inputs",
        _compare_rms(RMS_HIDDEN_CASES)),
    "rmsnorm.torch": (
        "RMSNorm: equals torch.nn.RMSNorm",
        _compare_rms(RMS_TORCH_CASES, oracle="torch")),
    "rmsnorm.params": (
        "RMSNorm: one parameter, weight (ones), and eps = 1e-6 by default",
        _compare_rms_params),
    "swiglu.values": (
        "SwiGLU: w2(silu(w1 x) * w3 x), bias-free, matches the reference",
        _compare_swi(SWI_CASES)),
    "swiglu.hidden": (
        "SwiGLU: other sizes, d_ff = d_model, 2-d input",
        _compare_swi(SWI_HIDDEN_CASES)),
    "repeat_kv.values": (
        "repeat_kv: each kv head serves n_rep consecutive query heads",
        _compare_rep(REP_CASES)),
    "repeat_kv.hidden": (
        "repeat_kv: one kv head (multi-query), n_rep = 1, length 1",
        _compare_rep(REP_HIDDEN_CASES)),
    "gqa.values": (
        "GroupedQueryAttention: RoPE, causal, grouped heads; matches the reference",
        _compare_gqa(GQA_CASES)),
    "gqa.hidden": (
        "GroupedQueryAttention: multi-query, multi-head, explicit positions, one token",
        _compare_gqa(GQA_HIDDEN_CASES)),
    "gqa.cache": (
        "GroupedQueryAttention: fed in two pieces with its cache, the same output; the cache "
        "holds n_kv_heads heads",
        _compare_gqa(CACHE_CASES)),
    "gqa.cache_hidden": (
        "GroupedQueryAttention: the cache with multi-query attention and a long second piece",
        _compare_gqa(CACHE_HIDDEN_CASES)),
    "llama.values": (
        "LlamaBlock: pre-RMSNorm, GQA with RoPE, SwiGLU; whole and with its cache",
        _compare_block(BLOCK_CASES)),
    "llama.hidden": (
        "LlamaBlock: multi-query and multi-head blocks, one token then the rest",
        _compare_block(BLOCK_HIDDEN_CASES)),
    "tinyllama.tying": (
        "TinyLlama: lm_head shares embed_tokens' weight (one Parameter)",
        _compare_tying),
    "tinyllama.logits": (
        "TinyLlama: logits match the reference, whole and with the cache",
        _compare_tiny_logits),
    "kv_cache.values": (
        "kv_cache_bytes: Llama-2-7B at 4096 tokens, and a small case",
        _compare_kv(KV_CASES)),
    "kv_cache.hidden": (
        "kv_cache_bytes: Llama-2-70B's GQA with a batch, one byte per value, the smallest "
        "cache",
        _compare_kv(KV_HIDDEN_CASES)),
    "sampling.top_k": (
        "top_k_top_p: top-k keeps the k largest logits, ties included",
        _compare_tkp(TOP_K_CASES)),
    "sampling.top_p": (
        "top_k_top_p: top-p keeps the nucleus, with the token that crosses p",
        _compare_tkp(TOP_P_CASES)),
    "sampling.hidden": (
        "top_k_top_p: both filters, none, top_p = 1, k > vocabulary, 3-d logits, all tokens "
        "tied",
        _compare_tkp(TKP_HIDDEN_CASES)),
}
