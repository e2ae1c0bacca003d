"""Lesson 10's cases and record halves (run in the learner's kernel: no answers here).

For a class, ``record`` builds the learner's module (the global random stream left as it
was), overwrites its parameters through the contract's names (``weight``; ``w1, w2, w3``;
``q_proj ... o_proj``; ``input_layernorm ... mlp.w2``; ``embed_tokens, layers, norm``) with
fixed-seed values and records what ``forward`` returns, whole and in pieces with the
learner's own cache.

One mistake costs once: while GroupedQueryAttention is checked, the learner's ``repeat_kv``
is the grader's stand-in; while LlamaBlock is checked, their ``RMSNorm``, ``SwiGLU`` and
``GroupedQueryAttention``; while TinyLlama is checked, their ``LlamaBlock`` and ``RMSNorm``.
Each stand-in (from basic operations, with the contract's parameter names) is forbidden in
the checks of the exercise it stands in for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import apply_rope

from .._core import Guard, build_module, call, load_params, stand_ins
from .._modules import (
    ModuleCase,
    NormCase,
    StandInRMSNorm,
    StandInSwiGLU,
    build_and_load,
    course_kernels,
    parameter_list,
    record_modules,
    stand_in_kernels,
    stand_in_rms_norm,
)

# ============================================================================= stand-ins


def stand_in_repeat_kv(x: Tensor, n_rep: int) -> Tensor:
    """The grader's stand-in repeat_kv: kv head g serves query heads g * n_rep ... ."""
    B, H_kv, L, d_head = x.shape
    return x[:, :, None].expand(B, H_kv, n_rep, L, d_head).reshape(B, H_kv * n_rep, L, d_head)


class StandInGroupedQueryAttention(nn.Module):
    """The grader's stand-in GroupedQueryAttention(d_model, n_heads, n_kv_heads): q_proj,
    k_proj, v_proj, o_proj; forward(x, positions=None, cache=None) -> (out, (keys, values))."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, rope_base: float = 1e4):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.d_head = n_heads, n_kv_heads, d_model // n_heads
        self.rope_base = rope_base
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.o_proj = nn.Linear(n_heads * self.d_head, d_model, bias=False)

    def forward(self, x, positions=None, cache=None):
        B, T, _ = x.shape
        t_past = 0 if cache is None else cache[0].size(-2)
        if positions is None:
            positions = torch.arange(t_past, t_past + T)
        heads = lambda t, n: t.view(B, T, n, self.d_head).transpose(1, 2)  # noqa: E731
        q = apply_rope(heads(self.q_proj(x), self.n_heads), positions, self.rope_base)
        k = apply_rope(heads(self.k_proj(x), self.n_kv_heads), positions, self.rope_base)
        v = heads(self.v_proj(x), self.n_kv_heads)
        if cache is not None:
            k, v = torch.cat([cache[0], k], -2), torch.cat([cache[1], v], -2)
        n_rep = self.n_heads // self.n_kv_heads
        kk, vv = stand_in_repeat_kv(k, n_rep), stand_in_repeat_kv(v, n_rep)
        scores = q @ kk.transpose(-2, -1) / math.sqrt(self.d_head)
        allowed = torch.ones(T, t_past + T, dtype=torch.bool).tril(t_past)
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = (scores - scores.amax(-1, keepdim=True)).exp()
        out = (weights / weights.sum(-1, keepdim=True)) @ vv  # (B, H, T, d_head)
        return self.o_proj(out.transpose(1, 2).reshape(B, T, -1)), (k, v)


class StandInLlamaBlock(nn.Module):
    """The grader's stand-in LlamaBlock(d_model, n_heads, n_kv_heads, d_ff, eps=1e-6)."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int,
                 eps: float = 1e-6):
        super().__init__()
        self.input_layernorm = StandInRMSNorm(d_model, eps)
        self.self_attn = StandInGroupedQueryAttention(d_model, n_heads, n_kv_heads)
        self.post_attention_layernorm = StandInRMSNorm(d_model, eps)
        self.mlp = StandInSwiGLU(d_model, d_ff)

    def forward(self, x, positions=None, cache=None):
        out, cache = self.self_attn(self.input_layernorm(x), positions, cache)
        x = x + out
        return x + self.mlp(self.post_attention_layernorm(x)), cache


GQA_STAND_INS = {"repeat_kv": stand_in_repeat_kv}
BLOCK_STAND_INS = {"RMSNorm": StandInRMSNorm, "SwiGLU": StandInSwiGLU,
                   "GroupedQueryAttention": StandInGroupedQueryAttention,
                   "repeat_kv": stand_in_repeat_kv}
TINY_STAND_INS = {"LlamaBlock": StandInLlamaBlock, "RMSNorm": StandInRMSNorm}


def _stand_in(name: str) -> str:
    return f"the grader's stand-in {name}"


# ============================================================================= RMSNorm


def rms_guard() -> Guard:
    torch_rms = "PyTorch's RMSNorm (nn.RMSNorm or F.rms_norm)"
    return Guard((), [*course_kernels("RMSNorm.forward"),
                      (torch_rms, nn.RMSNorm.forward), (torch_rms, F.rms_norm),
                      *stand_in_kernels(StandInRMSNorm, stand_in_rms_norm,
                                        label=_stand_in("RMSNorm"))])


@dataclass(frozen=True)
class RmsCase(NormCase):
    desc: str
    shape: tuple[int, ...]
    eps: float | None  # None: built without eps, so the default 1e-6 applies
    seed: int
    scale: float = 1.0  # spread of the input: small values make eps matter

    DEFAULT_EPS = 1e-6
    NAME = "RMSNorm"


def rms_params(case: RmsCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    return {"weight": 1.0 + 0.5 * torch.randn(case.d, generator=g)}


def rms_input(case: RmsCase) -> Tensor:
    """Tokens with offsets (so that centring shows) and their own spreads."""
    g = torch.Generator().manual_seed(case.seed + 1)
    lead = case.shape[:-1]
    spread = 0.5 + torch.rand(*lead, 1, generator=g)
    shift = torch.randn(*lead, 1, generator=g)
    return case.scale * (torch.randn(case.shape, generator=g) * spread + shift)


def record_rms(cases: list[RmsCase]):
    return record_modules(cases, rms_params, lambda module, case: {
        "forward": call(module, rms_input(case), guard=rms_guard())})


RMS_CASES = [
    RmsCase("x of shape (2, 3, 8), eps=0.5, random weight", (2, 3, 8), 0.5, 1001),
    RmsCase("x of shape (3, 4, 6), eps=0.25, random weight", (3, 4, 6), 0.25, 1002),
]
RMS_HIDDEN_CASES = [
    RmsCase("default eps (1e-6), small inputs (about 1e-3), x of shape (2, 5, 16)",
            (2, 5, 16), None, 11001, scale=1e-3),
    RmsCase("a 2-d input of shape (4, 6), eps=0.5", (4, 6), 0.5, 11002),
    RmsCase("a 4-d input of shape (2, 2, 3, 5), eps=0.5", (2, 2, 3, 5), 0.5, 11003),
]
RMS_TORCH_CASES = [RmsCase("against torch.nn.RMSNorm, x of shape (2, 4, 12), eps=0.1",
                           (2, 4, 12), 0.1, 11004)]


def record_rms_params(cls) -> dict:
    module, built = build_module(cls, 12)
    info: dict = {"construct": built, "params": None, "eps": None}
    if module is not None:
        info["params"] = [(n, tuple(p.shape), p.detach().cpu().numpy())
                          for n, p in module.named_parameters()]
        info["eps"] = getattr(module, "eps", None)
    return info


# ============================================================================= SwiGLU


def swiglu_guard() -> Guard:
    return Guard((), [*course_kernels("SwiGLU.forward"),
                      *stand_in_kernels(StandInSwiGLU, label=_stand_in("SwiGLU"))])


@dataclass(frozen=True)
class SwiCase(ModuleCase):
    desc: str
    shape: tuple[int, ...]  # input shape, last dim d_model
    d_ff: int
    seed: int

    NAME = "SwiGLU"

    def args(self) -> tuple[tuple, dict]:
        return (self.shape[-1], self.d_ff), {}


def swi_params(case: SwiCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    d, h = case.shape[-1], case.d_ff
    return {"w1.weight": 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d),
            "w3.weight": 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d),
            "w2.weight": torch.randn(d, h, generator=g) / math.sqrt(h)}


def swi_input(case: SwiCase) -> Tensor:
    return torch.randn(case.shape, generator=torch.Generator().manual_seed(case.seed + 1))


def record_swi(cases: list[SwiCase]):
    return record_modules(cases, swi_params, lambda module, case: {
        "forward": call(module, swi_input(case), guard=swiglu_guard()),
        "params": parameter_list(module)})


SWI_CASES = [SwiCase("x of shape (2, 5, 8), d_ff = 20", (2, 5, 8), 20, 1011)]
SWI_HIDDEN_CASES = [SwiCase("x of shape (3, 4, 6), d_ff = 16", (3, 4, 6), 16, 11011),
                    SwiCase("a 2-d input of shape (7, 4), d_ff = 4", (7, 4), 4, 11012)]


# ============================================================================= repeat_kv


def rep_guard() -> Guard:
    return Guard((), [*stand_in_kernels(stand_in_repeat_kv, label=_stand_in("repeat_kv"))],
                 course=["repeat_kv"])


REP_CASES = [((2, 2, 3, 4), 3, 1021), ((1, 3, 2, 2), 2, 1022)]
REP_HIDDEN_CASES = [((2, 1, 4, 3), 4, 11021), ((2, 4, 3, 2), 1, 11022), ((1, 2, 1, 8), 2, 11023)]


def rep_input(shape: tuple, seed: int) -> Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def record_rep(cases):
    def record(fn) -> dict:
        return {"cases": [call(fn, rep_input(shape, seed), n_rep, guard=rep_guard())
                          for shape, n_rep, seed in cases]}
    return record


# ============================================================================= attention


def gqa_guard() -> Guard:
    """GroupedQueryAttention's own checks: no built-in attention, no course or stand-in GQA."""
    return Guard(["attention"], [
        *course_kernels("GroupedQueryAttention.forward", "LlamaBlock.forward"),
        *stand_in_kernels(StandInGroupedQueryAttention,
                          label=_stand_in("GroupedQueryAttention"))])


def block_guard() -> Guard:
    """LlamaBlock and TinyLlama: no built-in attention, no course GQA or block, no stand-in
    block in the block's own checks (the stand-in GQA is what the check itself puts there)."""
    return Guard(["attention"], [
        *course_kernels("GroupedQueryAttention.forward", "LlamaBlock.forward"),
        *stand_in_kernels(StandInLlamaBlock, label=_stand_in("LlamaBlock"))])


def tiny_guard() -> Guard:
    return Guard(["attention"], course_kernels("GroupedQueryAttention.forward",
                                               "LlamaBlock.forward"))


@dataclass(frozen=True)
class GqaCase(ModuleCase):
    desc: str
    d_model: int
    n_heads: int
    n_kv: int
    B: int
    T: int
    seed: int
    split: int = 0  # > 0: also run x[:, :split] then x[:, split:] with the learner's cache
    positions: bool = False  # pass explicit positions (an offset start) instead of the default

    NAME = "GroupedQueryAttention"

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def args(self) -> tuple[tuple, dict]:
        return (self.d_model, self.n_heads, self.n_kv), {}


ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj")


def gqa_params(case: GqaCase, prefix: str = "") -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    d, dh = case.d_model, case.d_head
    rows = {"q_proj": case.n_heads * dh, "k_proj": case.n_kv * dh, "v_proj": case.n_kv * dh}
    p = {f"{prefix}{n}.weight": 2.0 * torch.randn(r, d, generator=g) / math.sqrt(d)
         for n, r in rows.items()}
    p[f"{prefix}o_proj.weight"] = torch.randn(d, case.n_heads * dh, generator=g) / math.sqrt(d)
    return p


def gqa_input(case: GqaCase) -> Tensor:
    return torch.randn(case.B, case.T, case.d_model,
                       generator=torch.Generator().manual_seed(case.seed + 1))


def positions(case: GqaCase) -> Tensor | None:
    return torch.arange(5, 5 + case.T) if case.positions else None


def gqa_calls(module, case: GqaCase, guard) -> dict:
    x, pos = gqa_input(case), positions(case)
    calls = {"whole": call(module, x, pos, guard=guard()) if pos is not None else
             call(module, x, guard=guard())}
    if case.split:
        def pieces():
            first, cache = module(x[:, :case.split])
            rest, cache = module(x[:, case.split:], cache=cache)
            return torch.cat([first, rest], 1), cache
        calls["pieces"] = call(pieces, guard=guard())
    return calls


def _biases(module) -> list[str]:
    return [n for n, _ in module.named_parameters() if n.endswith("bias")]


def record_gqa(cases: list[GqaCase]):
    return record_modules(cases, gqa_params, lambda module, case: {
        "calls": gqa_calls(module, case, gqa_guard), "biases": _biases(module)},
        replacements=GQA_STAND_INS)


GQA_CASES = [GqaCase("GroupedQueryAttention(16, 4, 2), x of shape (2, 6, 16)", 16, 4, 2, 2, 6,
                     1031)]
GQA_HIDDEN_CASES = [
    GqaCase("multi-query: GroupedQueryAttention(16, 4, 1), x of shape (2, 5, 16)", 16, 4, 1, 2,
            5, 11031),
    GqaCase("multi-head: GroupedQueryAttention(12, 3, 3), x of shape (1, 4, 12)", 12, 3, 3, 1,
            4, 11032),
    GqaCase("GroupedQueryAttention(24, 6, 2), explicit positions 5..11, x of shape (2, 7, 24)",
            24, 6, 2, 2, 7, 11033, positions=True),
    GqaCase("a single token: GroupedQueryAttention(16, 4, 2), x of shape (3, 1, 16)", 16, 4, 2,
            3, 1, 11034),
]
CACHE_CASES = [GqaCase("GroupedQueryAttention(16, 4, 2), x of shape (2, 7, 16)", 16, 4, 2, 2, 7,
                       1032, split=4)]
CACHE_HIDDEN_CASES = [
    GqaCase("multi-query: GroupedQueryAttention(16, 4, 1), x of shape (2, 6, 16)", 16, 4, 1, 2,
            6, 11035, split=5),
    GqaCase("GroupedQueryAttention(24, 6, 3), x of shape (1, 8, 24)", 24, 6, 3, 1, 8, 11036,
            split=2),
]


# ============================================================================= LlamaBlock


@dataclass(frozen=True)
class BlockCase(GqaCase):
    d_ff: int = 24
    eps: float = 0.1

    NAME = "LlamaBlock"

    def args(self) -> tuple[tuple, dict]:
        return (self.d_model, self.n_heads, self.n_kv, self.d_ff), {"eps": self.eps}


def block_params(case: BlockCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed + 7)
    d, h = case.d_model, case.d_ff
    p = gqa_params(case, "self_attn.")
    p["mlp.w1.weight"] = 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d)
    p["mlp.w3.weight"] = 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d)
    p["mlp.w2.weight"] = torch.randn(d, h, generator=g) / math.sqrt(h)
    p["input_layernorm.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
    p["post_attention_layernorm.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
    return p


def record_block(cases: list[BlockCase]):
    return record_modules(cases, block_params, lambda module, case: {
        "calls": gqa_calls(module, case, block_guard)}, replacements=BLOCK_STAND_INS)


BLOCK_CASES = [BlockCase("LlamaBlock(16, 4, 2, 24, eps=0.1), x of shape (2, 6, 16)", 16, 4, 2,
                         2, 6, 1041, split=4)]
BLOCK_HIDDEN_CASES = [
    BlockCase("LlamaBlock(12, 3, 1, 20, eps=0.01), x of shape (1, 5, 12)", 12, 3, 1, 1, 5,
              11041, split=1, d_ff=20, eps=0.01),
    BlockCase("LlamaBlock(16, 2, 2, 8, eps=0.1), x of shape (2, 4, 16)", 16, 2, 2, 2, 4, 11042,
              split=3, d_ff=8),
]


# ============================================================================= TinyLlama

TINY_ARGS = (13, 16, 4, 2, 2, 24, 12)  # vocab, d_model, n_heads, n_kv_heads, layers, d_ff, max_len


def tiny_shapes() -> dict[str, tuple[int, ...]]:
    """TinyLlama(*TINY_ARGS)'s parameters by name (lm_head.weight is embed_tokens.weight)."""
    vocab, d, n_heads, n_kv, n_layers, d_ff, _ = TINY_ARGS
    d_kv = n_kv * d // n_heads
    layer = {"input_layernorm.weight": (d,), "post_attention_layernorm.weight": (d,),
             "self_attn.q_proj.weight": (d, d), "self_attn.k_proj.weight": (d_kv, d),
             "self_attn.v_proj.weight": (d_kv, d), "self_attn.o_proj.weight": (d, d),
             "mlp.w1.weight": (d_ff, d), "mlp.w3.weight": (d_ff, d), "mlp.w2.weight": (d, d_ff)}
    shapes = {"embed_tokens.weight": (vocab, d), "norm.weight": (d,)}
    for i in range(n_layers):
        shapes.update({f"layers.{i}.{name}": shape for name, shape in layer.items()})
    return shapes


def tiny_params() -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(1051)
    return {name: (1.0 if len(shape) == 1 else 0.0) + 0.4 * torch.randn(shape, generator=g)
            for name, shape in sorted(tiny_shapes().items())}


def tiny_tokens() -> Tensor:
    return torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(1052))


def _tying(module) -> dict:
    """How lm_head.weight relates to embed_tokens.weight in a freshly built model."""
    head, emb = module.lm_head.weight, module.embed_tokens.weight
    return {"same_object": head is emb, "same_storage": head.data_ptr() == emb.data_ptr(),
            "equal": bool(head.shape == emb.shape and torch.equal(head, emb)),
            "n_params": sum(p.numel() for p in module.parameters()),
            "named": sorted(n for n, _ in module.named_parameters())}


def _record_tiny_once(cls) -> dict:
    module, info = build_and_load(cls, TINY_ARGS, {})
    info["tying"] = None
    if module is None:
        return info
    info["tying"] = call(_tying, module)  # before the test weights overwrite embed_tokens
    info["seen"] = load_params(module, tiny_params())
    idx = tiny_tokens()

    def pieces():
        first, cache = module(idx[:, :5])
        rest, cache = module(idx[:, 5:], cache)
        return torch.cat([first, rest], 1)

    info["whole"] = call(module, idx, guard=tiny_guard())
    info["pieces"] = call(pieces, guard=tiny_guard())
    return info


def record_tiny(cls) -> dict:
    with stand_ins(cls, TINY_STAND_INS):
        return _record_tiny_once(cls)


# ============================================================================= kv_cache_bytes


def kv_guard() -> Guard:
    return Guard((), course=["kv_cache_bytes"])


KV_CASES = [((32, 32, 128, 4096), {}), ((2, 4, 16, 10), {"batch": 3, "bytes_per_value": 4})]
KV_HIDDEN_CASES = [((80, 8, 128, 4096), {"batch": 8}), ((1, 1, 1, 1), {}),
                   ((32, 8, 128, 32768), {"bytes_per_value": 1}),
                   ((12, 12, 64, 1024), {"batch": 2, "bytes_per_value": 4})]


def record_kv(cases):
    def record(fn) -> dict:
        return {"cases": [call(fn, *args, guard=kv_guard(), **kw) for args, kw in cases]}
    return record


# ============================================================================= top_k_top_p


def tkp_guard() -> Guard:
    return Guard((), course=["top_k_top_p"])


@dataclass(frozen=True)
class TkpCase:
    desc: str
    logits: tuple  # nested lists of floats: small, readable, with ties on purpose
    top_k: int | None = None
    top_p: float | None = None

    def kwargs(self) -> dict:
        return {k: v for k, v in (("top_k", self.top_k), ("top_p", self.top_p)) if v is not None}


def _probs_logits(*rows: tuple[float, ...]) -> tuple:
    """Logits whose softmax is exactly the given probabilities (up to rounding)."""
    return tuple(tuple(math.log(p) for p in row) for row in rows)


def _random_logits(seed: int, shape: tuple) -> tuple:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)).mul(2).tolist()


TOP_K_CASES = [
    TkpCase("top_k=2 on [1.0, 3.0, 2.0, 0.5, 2.5]", ((1.0, 3.0, 2.0, 0.5, 2.5),), top_k=2),
    TkpCase("top_k=2 with a tie at the cut-off: [3.0, 2.0, 2.0, 1.0]", ((3.0, 2.0, 2.0, 1.0),),
            top_k=2),
    TkpCase("top_k=3, a batch of two rows", tuple(map(tuple, _random_logits(1061, (2, 7)))),
            top_k=3),
]
TOP_P_CASES = [
    TkpCase("top_p=0.6 on probabilities [0.5, 0.3, 0.15, 0.05]",
            _probs_logits((0.5, 0.3, 0.15, 0.05)), top_p=0.6),
    TkpCase("top_p=0.6 with a tie at the cut-off: probabilities [0.5, 0.2, 0.2, 0.1]",
            _probs_logits((0.5, 0.2, 0.2, 0.1)), top_p=0.6),
    TkpCase("top_p=0.3 when the top token alone has 0.5", _probs_logits((0.1, 0.5, 0.4)),
            top_p=0.3),
    TkpCase("top_p=0.9, a batch of two rows", tuple(map(tuple, _random_logits(1062, (2, 8)))),
            top_p=0.9),
]
TKP_HIDDEN_CASES = [
    TkpCase("top_k=2 then top_p=0.5 on probabilities [0.4, 0.35, 0.25]",
            _probs_logits((0.4, 0.35, 0.25)), top_k=2, top_p=0.5),
    TkpCase("no filter (both None)", ((1.0, -2.0, 0.5),)),
    TkpCase("top_p=1.0 keeps everything", ((1.0, -2.0, 0.5, 4.0),), top_p=1.0),
    TkpCase("top_k larger than the vocabulary", ((1.0, -2.0, 0.5),), top_k=10),
    TkpCase("top_k=1 on 3-d logits (2, 2, 5)",
            tuple(tuple(map(tuple, r)) for r in _random_logits(11061, (2, 2, 5))), top_k=1),
    TkpCase("top_p=0.75 on probabilities [0.25, 0.25, 0.25, 0.25] (all tied)",
            _probs_logits((0.25, 0.25, 0.25, 0.25)), top_p=0.75),
]


def tkp_input(case: TkpCase) -> Tensor:
    return torch.tensor(case.logits, dtype=torch.float32)


def record_tkp(cases):
    def record(fn) -> dict:
        return {"cases": [call(fn, tkp_input(c), guard=tkp_guard(), **c.kwargs())
                          for c in cases]}
    return record


RECORDS = {
    "rmsnorm.values": record_rms(RMS_CASES),
    "rmsnorm.hidden": record_rms(RMS_HIDDEN_CASES),
    "rmsnorm.torch": record_rms(RMS_TORCH_CASES),
    "rmsnorm.params": record_rms_params,
    "swiglu.values": record_swi(SWI_CASES),
    "swiglu.hidden": record_swi(SWI_HIDDEN_CASES),
    "repeat_kv.values": record_rep(REP_CASES),
    "repeat_kv.hidden": record_rep(REP_HIDDEN_CASES),
    "gqa.values": record_gqa(GQA_CASES),
    "gqa.hidden": record_gqa(GQA_HIDDEN_CASES),
    "gqa.cache": record_gqa(CACHE_CASES),
    "gqa.cache_hidden": record_gqa(CACHE_HIDDEN_CASES),
    "llama.values": record_block(BLOCK_CASES),
    "llama.hidden": record_block(BLOCK_HIDDEN_CASES),
    "tinyllama.tying": record_tiny,
    "tinyllama.logits": record_tiny,
    "kv_cache.values": record_kv(KV_CASES),
    "kv_cache.hidden": record_kv(KV_HIDDEN_CASES),
    "sampling.top_k": record_tkp(TOP_K_CASES),
    "sampling.top_p": record_tkp(TOP_P_CASES),
    "sampling.hidden": record_tkp(TKP_HIDDEN_CASES),
}
