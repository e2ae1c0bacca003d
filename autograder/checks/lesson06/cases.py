"""Lesson 06's cases and record halves (run in the learner's kernel: no answers here).

For each class, ``record`` builds the learner's module (the global random stream left as it
was), overwrites its parameters through the contract's names (``weight, bias``; ``linear1,
linear2``; ``self_attn.q_proj`` ... ``norm2.bias``) with fixed-seed values, and records what
``forward`` returns. The EncoderLayer checks build the layer with the grader's stand-in
LayerNorm and FeedForward in place of the learner's own (one mistake costs once: those have
their own checks); the stand-ins are forbidden in the LayerNorm and FeedForward checks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._core import Guard, call
from .._modules import (
    LayerArgs,
    ModuleCase,
    NormCase,
    StandInFeedForward,
    StandInLayerNorm,
    build_and_load,
    course_kernels,
    layer_params,
    parameter_list,
    record_modules,
    record_parts,
    same_parts,
    stand_in_kernels,
    stand_in_layer_norm,
)

# The learner's earlier exercises an EncoderLayer builds by name, and their stand-ins.
ENCODER_STAND_INS = {"LayerNorm": StandInLayerNorm, "FeedForward": StandInFeedForward}

# ============================================================================= LayerNorm


def ln_guard() -> Guard:
    return Guard(["layer_norm"], [
        *course_kernels("LayerNorm.forward"),
        *stand_in_kernels(StandInLayerNorm, stand_in_layer_norm,
                          label="the grader's stand-in LayerNorm")])


@dataclass(frozen=True)
class LnCase(NormCase):
    desc: str
    shape: tuple[int, ...]
    eps: float | None  # None: built without eps, so the default 1e-5 applies
    seed: int
    affine: bool = True  # random weight and bias; False: ones and zeros

    NAME = "LayerNorm"


def ln_params(case: LnCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    if not case.affine:
        return {"weight": torch.ones(case.d), "bias": torch.zeros(case.d)}
    return {"weight": 1.0 + 0.5 * torch.randn(case.d, generator=g),
            "bias": 0.5 * torch.randn(case.d, generator=g)}


def ln_input(case: LnCase) -> Tensor:
    """Tokens with their own offsets and spreads (variance ~0.4 to 4: eps = 0.5 matters)."""
    g = torch.Generator().manual_seed(case.seed + 1)
    lead = case.shape[:-1]
    scale = 0.6 + 1.5 * torch.rand(*lead, 1, generator=g)
    shift = 2.0 * torch.randn(*lead, 1, generator=g)
    return torch.randn(case.shape, generator=g) * scale + shift


def record_ln(cases: list[LnCase]):
    return record_modules(cases, ln_params, lambda module, case: {
        "forward": call(module, ln_input(case), guard=ln_guard())})


LN_VALUE_CASES = [
    LnCase("x of shape (2, 3, 8), eps=0.5, random weight and bias", (2, 3, 8), 0.5, 601),
    LnCase("x of shape (3, 4, 6), eps=0.5, random weight and bias", (3, 4, 6), 0.5, 602),
]
LN_HIDDEN_CASES = [
    LnCase("default eps (1e-5), x of shape (2, 5, 16), random weight and bias", (2, 5, 16),
           None, 7601),
    LnCase("a 2-d input of shape (4, 6), eps=0.25", (4, 6), 0.25, 7602),
    LnCase("a 4-d input of shape (2, 2, 3, 5), eps=0.5", (2, 2, 3, 5), 0.5, 7603),
    LnCase("d_model = 2, x of shape (3, 4, 2), eps=0.1", (3, 4, 2), 0.1, 7604),
    LnCase("eps=1.0, weight = 1 and bias = 0, x of shape (2, 6, 4)", (2, 6, 4), 1.0, 7605,
           affine=False),
]

# ----- parameters: names, shapes, initial values

LN_PARAM_CASES = [LnCase("LayerNorm(12)", (12,), None, 0),
                  LnCase("LayerNorm(5, eps=0.25)", (5,), 0.25, 0)]


def _ln_attrs(module, case: LnCase) -> dict:
    attrs = {}
    for name in ("weight", "bias"):
        t = getattr(module, name, None)
        attrs[name] = {"type": type(t).__name__, "parameter": isinstance(t, nn.Parameter),
                       "value": t.detach().cpu().numpy() if isinstance(t, torch.Tensor)
                       else None}
    return {"params": parameter_list(module), "attrs": attrs}


record_ln_params = record_modules(LN_PARAM_CASES, None, _ln_attrs)

# ----- properties: each token normalised on its own

NORM_CASE = LnCase("x of shape (2, 4, 16): tokens with spreads from 0.5 to 50, offsets up to "
                   "+-20, weight = 1, bias = 0", (2, 4, 16), None, 611, affine=False)


def property_input() -> Tensor:
    g = torch.Generator().manual_seed(612)
    scale = torch.logspace(math.log10(0.5), math.log10(50), 8).view(2, 4, 1)
    shift = 20 * (2 * torch.rand(2, 4, 1, generator=g) - 1)
    return torch.randn(2, 4, 16, generator=g) * scale + shift


def record_normalised(cls) -> dict:
    module, info = build_and_load(cls, (16,), {}, ln_params(NORM_CASE))
    info["forward"] = None
    if module is not None:
        x = property_input()
        info["forward"] = call(module, x, guard=ln_guard())
        changed = x.clone()
        changed[0, 0] = 100 * torch.randn(16, generator=torch.Generator().manual_seed(613))
        info["changed"] = call(module, changed, guard=ln_guard())
        info["first_item"] = call(module, x[:1], guard=ln_guard())
        info["rescaled"] = call(module, 3 * x + 7, guard=ln_guard())
    return info


# ============================================================================= FeedForward


def ff_guard() -> Guard:
    return Guard((), [*course_kernels("FeedForward.forward"),
                      *stand_in_kernels(StandInFeedForward,
                                        label="the grader's stand-in FeedForward")])


@dataclass(frozen=True)
class FfCase(ModuleCase):
    desc: str
    d_model: int
    d_ff: int
    B: int
    L: int
    seed: int
    activation: str | None = None  # None: not passed, so the default "relu" applies
    identity: bool = False  # linear1 and linear2 are identity maps: the activation alone
    position_wise: bool = False  # also run shuffled positions and one position alone

    NAME = "FeedForward"

    @property
    def act(self) -> str:
        return self.activation or "relu"

    def args(self) -> tuple[tuple, dict]:
        kwargs = {} if self.activation is None else {"activation": self.activation}
        return (self.d_model, self.d_ff), kwargs


def ff_params(case: FfCase) -> dict[str, Tensor]:
    d, h = case.d_model, case.d_ff
    if case.identity:
        return {"linear1.weight": torch.eye(h, d), "linear1.bias": torch.zeros(h),
                "linear2.weight": torch.eye(d, h), "linear2.bias": torch.zeros(d)}
    g = torch.Generator().manual_seed(case.seed)
    return {"linear1.weight": 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d),
            "linear1.bias": 0.5 * torch.randn(h, generator=g),
            "linear2.weight": torch.randn(d, h, generator=g) / math.sqrt(h),
            "linear2.bias": 0.3 * torch.randn(d, generator=g)}


def ff_input(case: FfCase) -> Tensor:
    shape = (case.B, case.L, case.d_model)
    if case.identity:
        return torch.linspace(-5, 5, math.prod(shape)).view(shape)
    return 1.5 * torch.randn(shape, generator=torch.Generator().manual_seed(case.seed + 1))


def ff_perm(case: FfCase) -> Tensor:
    return torch.randperm(case.L, generator=torch.Generator().manual_seed(case.seed + 2))


def _run_ff(module, case: FfCase) -> dict:
    x = ff_input(case)
    info = {"forward": call(module, x, guard=ff_guard())}
    if case.position_wise:
        info["permuted"] = call(module, x[:, ff_perm(case)], guard=ff_guard())
        info["last_alone"] = call(module, x[:, -1:], guard=ff_guard())
    return info


def record_ff(cases: list[FfCase]):
    return record_modules(cases, ff_params, _run_ff)


FF_RELU_CASES = [
    FfCase("default activation (relu), B=2, L=4, d_model=8, d_ff=16", 8, 16, 2, 4, 621),
    FfCase("activation=\"relu\", B=3, L=2, d_model=6, d_ff=24", 6, 24, 3, 2, 622, "relu"),
]
FF_GELU_CASES = [
    FfCase("activation=\"gelu\", B=2, L=4, d_model=8, d_ff=16", 8, 16, 2, 4, 623, "gelu"),
    FfCase("activation=\"gelu\", identity linear maps, inputs from -5 to 5 (the activation "
           "alone)", 10, 10, 2, 5, 624, "gelu", identity=True),
]
FF_HIDDEN_CASES = [
    FfCase("B=1, L=7, d_model=4, d_ff=32, relu", 4, 32, 1, 7, 7621, "relu",
           position_wise=True),
    FfCase("B=2, L=6, d_model=12, d_ff=12 (d_ff = d_model), gelu", 12, 12, 2, 6, 7622,
           "gelu", position_wise=True),
    FfCase("B=3, L=5, d_model=16, d_ff=64, default activation", 16, 64, 3, 5, 7623,
           position_wise=True),
]


# ============================================================================= EncoderLayer


def enc_guard() -> Guard:
    return Guard((), [*course_kernels("EncoderLayer.forward", "residual"),
                      ("PyTorch's nn.TransformerEncoderLayer",
                       nn.TransformerEncoderLayer.forward)])


@dataclass(frozen=True)
class EncCase(LayerArgs):
    desc: str
    d_model: int
    n_heads: int
    d_ff: int
    B: int
    L: int
    seed: int
    norm_first: bool | None = None  # None: not passed, so the default post-norm applies
    activation: str | None = None
    eps: float | None = None
    mask: str = ""  # "", "causal", "random", "padding"

    NAME = "EncoderLayer"


def enc_params(case: EncCase) -> dict[str, Tensor]:
    return layer_params(case.seed, case.d_model, case.d_ff)


def enc_inputs(case: EncCase) -> tuple[Tensor, Tensor | None]:
    g = torch.Generator().manual_seed(case.seed + 1)
    B, L = case.B, case.L
    x = 2.0 * torch.randn(B, L, case.d_model, generator=g) + 0.5  # (B, L, d_model)
    if case.mask == "causal":
        return x, torch.ones(L, L, dtype=torch.bool).tril()
    if case.mask == "random":  # every row keeps one key and blocks another
        m = torch.rand(L, L, generator=g) < 0.5
        yes = torch.randint(0, L, (L,), generator=g)
        no = (yes + 1 + torch.randint(0, L - 1, (L,), generator=g)) % L
        m = m | F.one_hot(yes, L).bool()
        return x, m & ~F.one_hot(no, L).bool()
    if case.mask == "padding":
        lengths = torch.tensor([L - 2, 2, L - 1, 3][:B])
        return x, (torch.arange(L) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
    return x, None


ENC_PARTS = ("norm1", "norm2", "ff")


def same_norm(module) -> bool:
    return bool(same_parts(module, [("norm1", "norm2")]))


def record_encoder(cases: list[EncCase], weights: bool = False):
    def run(module, case: EncCase) -> dict:
        x, mask = enc_inputs(case)
        fwd_args = (x,) if mask is None else (x, mask)
        info = {"same_norm": same_norm(module),
                "forward": call(module, *fwd_args, guard=enc_guard())}
        if weights:
            info["with_weights"] = call(module, *fwd_args, return_weights=True,
                                        guard=enc_guard())
        info["parts"] = record_parts(module, x, ENC_PARTS, attention=("self_attn",))
        return info

    # same_norm is looked at before the test weights are loaded, as it always was
    return record_modules(cases, enc_params, run, replacements=ENCODER_STAND_INS)


# ----- layout: the parts exist, are separate, and receive eps and activation


LAYOUT_CASE = EncCase("EncoderLayer(16, 4, 40, dropout=0.1, activation=\"gelu\", eps=0.5)",
                      16, 4, 40, 2, 5, 631, activation="gelu", eps=0.5)


def _run_layout(module, case: EncCase) -> dict:
    return {"attrs": {name: type(getattr(module, name, None)).__name__
                      for name in ("self_attn", "ff", "norm1", "norm2")},
            "same_norm": same_norm(module),
            "parts": record_parts(module, enc_inputs(case)[0], ENC_PARTS,
                                  attention=("self_attn",))}


def _layout_args(case: EncCase) -> tuple[tuple, dict]:
    args, kwargs = case.args()
    return args, {"dropout": 0.1, **kwargs}


_record_layout_cases = record_modules([LAYOUT_CASE], enc_params, _run_layout,
                                      replacements=ENCODER_STAND_INS, build=_layout_args)


def record_layout(cls) -> dict:
    info = _record_layout_cases(cls)[LAYOUT_CASE.desc]
    info.setdefault("attrs", {})
    return info


POST_CASES = [
    EncCase("post-norm (default), B=2, L=5, d_model=8, 2 heads, d_ff=16", 8, 2, 16, 2, 5, 641),
    EncCase("norm_first=False, B=1, L=4, d_model=12, 3 heads, d_ff=24", 12, 3, 24, 1, 4, 642,
            norm_first=False),
]
POST_HIDDEN_CASES = [
    EncCase("post-norm, gelu, eps=0.5, B=2, L=6, d_model=16, 4 heads, d_ff=32", 16, 4, 32, 2,
            6, 7641, norm_first=False, activation="gelu", eps=0.5),
    EncCase("post-norm, a single token, B=3, L=1, d_model=8, 2 heads", 8, 2, 16, 3, 1, 7642),
    EncCase("post-norm, a causal mask, B=2, L=5, d_model=8, 1 head", 8, 1, 32, 2, 5, 7643,
            mask="causal"),
]
PRE_CASES = [
    EncCase("norm_first=True, B=2, L=5, d_model=8, 2 heads, d_ff=16", 8, 2, 16, 2, 5, 651,
            norm_first=True),
    EncCase("norm_first=True, B=1, L=4, d_model=12, 3 heads, d_ff=24", 12, 3, 24, 1, 4, 652,
            norm_first=True),
]
PRE_HIDDEN_CASES = [
    EncCase("pre-norm, gelu, eps=0.5, B=2, L=6, d_model=16, 4 heads, d_ff=32", 16, 4, 32, 2,
            6, 7651, norm_first=True, activation="gelu", eps=0.5),
    EncCase("pre-norm, a single token, B=3, L=1, d_model=8, 2 heads", 8, 2, 16, 3, 1, 7652,
            norm_first=True),
    EncCase("pre-norm, a causal mask, B=2, L=5, d_model=8, 1 head", 8, 1, 32, 2, 5, 7653,
            norm_first=True, mask="causal"),
]
TORCH_POST_CASES = [
    EncCase("post-norm against torch, random (L, L) mask, B=2, L=6, d_model=16, 4 heads",
            16, 4, 32, 2, 6, 7661, norm_first=False, mask="random"),
    EncCase("post-norm against torch, gelu, eps=0.5, B=2, L=4, d_model=8", 8, 2, 16, 2, 4,
            7662, norm_first=False, activation="gelu", eps=0.5),
]
TORCH_PRE_CASES = [
    EncCase("pre-norm against torch, random (L, L) mask, B=2, L=6, d_model=16, 4 heads",
            16, 4, 32, 2, 6, 7663, norm_first=True, mask="random"),
    EncCase("pre-norm against torch, gelu, eps=0.5, B=2, L=4, d_model=8", 8, 2, 16, 2, 4,
            7664, norm_first=True, activation="gelu", eps=0.5),
]
WEIGHT_CASES = [
    EncCase("post-norm, a random (L, L) mask, B=2, L=5, d_model=8, 2 heads", 8, 2, 16, 2, 5,
            671, mask="random"),
    EncCase("pre-norm, a causal mask, B=2, L=4, d_model=12, 3 heads", 12, 3, 24, 2, 4, 672,
            norm_first=True, mask="causal"),
]
WEIGHT_HIDDEN_CASES = [
    EncCase("post-norm, a padding mask (B, 1, 1, L), B=2, L=6, d_model=8, 2 heads", 8, 2, 16,
            2, 6, 7671, mask="padding"),
    EncCase("pre-norm, a padding mask (B, 1, 1, L), B=3, L=5, d_model=16, 4 heads", 16, 4, 32,
            3, 5, 7672, norm_first=True, mask="padding"),
    EncCase("pre-norm, a random (L, L) mask, gelu, B=1, L=6, d_model=8, 4 heads", 8, 4, 16, 1,
            6, 7673, norm_first=True, activation="gelu", mask="random"),
]


RECORDS = {
    "layernorm.values": record_ln(LN_VALUE_CASES),
    "layernorm.hidden": record_ln(LN_HIDDEN_CASES),
    "layernorm.params": record_ln_params,
    "layernorm.normalised": record_normalised,
    "layernorm.independent": record_normalised,
    "ff.relu": record_ff(FF_RELU_CASES),
    "ff.gelu": record_ff(FF_GELU_CASES),
    "ff.hidden": record_ff(FF_HIDDEN_CASES),
    "encoder.layout": record_layout,
    "encoder.post_norm": record_encoder(POST_CASES),
    "encoder.post_norm_hidden": record_encoder(POST_HIDDEN_CASES),
    "encoder.torch_post": record_encoder(TORCH_POST_CASES),
    "encoder.pre_norm": record_encoder(PRE_CASES),
    "encoder.pre_norm_hidden": record_encoder(PRE_HIDDEN_CASES),
    "encoder.torch_pre": record_encoder(TORCH_PRE_CASES),
    "encoder.mask_weights": record_encoder(WEIGHT_CASES, weights=True),
    "encoder.mask_hidden": record_encoder(WEIGHT_HIDDEN_CASES, weights=True),
}
