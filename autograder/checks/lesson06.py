"""Checks for lesson 06, the Transformer block: ``LayerNorm``, ``FeedForward``, ``EncoderLayer``.

Every case is rebuilt from a fixed seed on both sides. For each class, ``record`` builds the
learner's module (restoring the global random stream afterwards), overwrites its parameters
through the contract's names (``weight, bias``; ``linear1, linear2``; ``self_attn.q_proj`` ...
``norm2.bias``) with fixed-seed values, and records what ``forward`` returns; ``compare`` loads
the same values into the reference (or into ``torch.nn.TransformerEncoderLayer``) and says
what differs. LayerNorm is always tested with non-default weight and bias and a large eps, so
that a misplaced epsilon or a forgotten affine map shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import EncoderLayer as RefEncoder
from autograder.reference import FeedForward as RefFF
from autograder.reference import LayerNorm as RefLN
from autograder.reference import block as ref_block

from ._core import (
    Guard,
    Outcome,
    as_array,
    build_module,
    built_text,
    call,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    first_close,
    fmt,
    load_params,
    register,
    unpack_pair,
)

OURS = "the course's own {} (attnlab / autograder.reference)"
LN = "Your LayerNorm"
FF = "Your FeedForward"
ENC = "Your EncoderLayer"


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _few(values: np.ndarray, n: int = 3) -> str:
    """The first few numbers of an array, rounded, as a learner would write them."""
    return "[" + ", ".join(f"{float(v):.3g}" for v in np.ravel(values)[:n]) + ", ...]"


def _expect(got: np.ndarray, want: np.ndarray, what: str, case: str,
            mistakes: list[tuple[str, np.ndarray | None]], atol: float = 2e-5,
            rtol: float = 1e-4) -> None:
    """expect_close with an ordered list of mistakes (several may share one message)."""
    expect_shape(got, want.shape, what, case)
    if close(got, want, atol, rtol):
        return
    message = first_close(got, mistakes, atol, rtol)
    if message:
        fail(f"{what} does not match the reference ({case}). {message}")
    expect_close(got, want, what, case, atol=atol, rtol=rtol)


# ============================================================================= LayerNorm


def _ln_guard() -> Guard:
    return Guard(["layer_norm"], [(OURS.format("LayerNorm"), RefLN.forward)])


@dataclass(frozen=True)
class LnCase:
    desc: str
    shape: tuple[int, ...]
    eps: float | None  # None: built without eps, so the default 1e-5 applies
    seed: int
    affine: bool = True  # random weight and bias; False: ones and zeros

    @property
    def d(self) -> int:
        return self.shape[-1]

    @property
    def eps_value(self) -> float:
        return 1e-5 if self.eps is None else self.eps

    def args(self) -> tuple[tuple, dict]:
        return ((self.d,), {} if self.eps is None else {"eps": self.eps})


def _ln_params(case: LnCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    if not case.affine:
        return {"weight": torch.ones(case.d), "bias": torch.zeros(case.d)}
    return {"weight": 1.0 + 0.5 * torch.randn(case.d, generator=g),
            "bias": 0.5 * torch.randn(case.d, generator=g)}


def _ln_input(case: LnCase) -> Tensor:
    """Tokens with their own offsets and spreads (variance ~0.4 to 4: eps = 0.5 matters)."""
    g = torch.Generator().manual_seed(case.seed + 1)
    lead = case.shape[:-1]
    scale = 0.6 + 1.5 * torch.rand(*lead, 1, generator=g)
    shift = 2.0 * torch.randn(*lead, 1, generator=g)
    return torch.randn(case.shape, generator=g) * scale + shift


def _ln(x: Tensor, w: Tensor, b: Tensor, eps: float, dims=(-1,), unbiased: bool = False,
        eps_outside: bool = False, center: bool = True, power: float = 0.5) -> Tensor:
    """A layer norm over ``dims`` with optional, deliberate mistakes."""
    mean = x.mean(dims, keepdim=True) if center else torch.zeros_like(x)
    n = math.prod(x.shape[d] for d in dims)
    var = ((x - mean) ** 2).sum(dims, keepdim=True) / (n - 1 if unbiased else n)
    if eps_outside:
        return (x - mean) / (var ** power + eps) * w + b
    return (x - mean) / (var + eps) ** power * w + b


M_EPS_OUTSIDE = ("It matches (x - mean) / (std + eps): eps is added outside the square root. "
                 "It belongs inside: (x - mean) / sqrt(var + eps).")
M_UNBIASED = ("It matches the unbiased variance, which divides by d_model - 1 (torch.var and "
              "torch.std do that by default). Layer norm divides by d_model: use "
              "x.var(-1, unbiased=False, keepdim=True) or ((x - mean)**2).mean(-1, "
              "keepdim=True).")
M_ANNOTATED = ("It matches (x - mean) / (x.std(-1) + eps), the Annotated Transformer's layer "
               "norm: two differences from nn.LayerNorm. Use the biased variance (divide by "
               "d_model: unbiased=False) and put eps inside the square root: "
               "(x - mean) / sqrt(var + eps).")
M_NO_EPS = "It matches (x - mean) / sqrt(var) without eps: add eps inside the square root."
M_VAR_NOT_STD = ("It matches dividing by (var + eps) instead of its square root: divide by "
                 "torch.sqrt(var + eps).")
M_RMS = ("It matches x / sqrt(mean(x**2) + eps), which is RMSNorm (used by LLaMA): it skips "
         "the centring. Layer norm subtracts each vector's mean first: (x - mean) / "
         "sqrt(var + eps).")
M_NO_AFFINE = ("It matches the normalised x without weight and bias: multiply by self.weight, "
               "then add self.bias.")
M_NO_BIAS = "It matches the output without the bias: add self.bias at the end."
M_NO_WEIGHT = ("It matches the output without the weight: multiply by self.weight before "
               "adding self.bias.")
M_SWAPPED = ("It matches normalised * bias + weight: weight and bias are swapped. Multiply "
             "by self.weight, then add self.bias.")
M_JOINT = ("It matches statistics taken over the last two axes together (the whole sequence). "
           "Layer norm normalises each token on its own: mean and variance over the last axis "
           "only, x.mean(-1, keepdim=True).")
M_ALL = ("It matches one mean and variance for the whole tensor. Layer norm normalises each "
         "token on its own: statistics over the last axis only, with keepdim=True.")


def _axis_message(axis: int, ndim: int) -> str:
    names = {0: "the batch axis (0)"} if ndim > 2 else {0: "axis 0 (across the vectors)"}
    if ndim == 3:
        names[1] = "the sequence axis (1)"
    where = names.get(axis, f"axis {axis}")
    extra = (" That is what batch normalisation does; layer norm uses only each token's own "
             "features." if axis == 0 else "")
    return (f"It matches statistics taken over {where} instead of the features (the last "
            f"axis).{extra} Use x.mean(-1, keepdim=True) and the variance over -1 as well.")


def _ln_mistakes(case: LnCase, x: Tensor, p: dict[str, Tensor]) -> list[tuple[str, Tensor]]:
    w, b, eps = p["weight"], p["bias"], case.eps_value
    one, zero = torch.ones_like(w), torch.zeros_like(b)
    out = [
        (M_ANNOTATED, _ln(x, w, b, eps, unbiased=True, eps_outside=True)),
        (M_EPS_OUTSIDE, _ln(x, w, b, eps, eps_outside=True)),
        (M_UNBIASED, _ln(x, w, b, eps, unbiased=True)),
    ]
    if not math.isclose(eps, 1e-5):
        out.append((f"It matches eps = 1e-5 (or no eps at all), but this LayerNorm was built "
                    f"with eps={eps}: store the argument (self.eps = eps) and use it inside "
                    f"the square root.", _ln(x, w, b, 1e-5)))
    out += [
        (M_NO_EPS, _ln(x, w, b, 0.0)),
        (M_VAR_NOT_STD, _ln(x, w, b, eps, power=1.0)),
        (M_RMS, _ln(x, w, b, eps, center=False)),
        (M_NO_AFFINE, _ln(x, one, zero, eps)),
        (M_NO_BIAS, _ln(x, w, zero, eps)),
        (M_NO_WEIGHT, _ln(x, one, b, eps)),
        (M_SWAPPED, _ln(x, b, w, eps)),
    ]
    for axis in range(x.dim() - 1):
        if x.shape[axis] > 1:
            out.append((_axis_message(axis, x.dim()), _ln(x, w, b, eps, dims=(axis,))))
    if x.dim() >= 3:
        out.append((M_JOINT, _ln(x, w, b, eps, dims=(-2, -1))))
    out.append((M_ALL, _ln(x, w, b, eps, dims=tuple(range(x.dim())))))
    return out


LN_PARAM_HINT = ("Name the two parameters `weight` and `bias`, as nn.LayerNorm does (the "
                 "checks and from_torch find them by these names): "
                 "self.weight = nn.Parameter(torch.ones(d_model)) and "
                 "self.bias = nn.Parameter(torch.zeros(d_model)).")


def _ln_load_problem(seen: dict[str, str], case: LnCase, built: str) -> None:
    for name, status in seen.items():
        if status == "ok":
            continue
        if status == "missing":
            fail(f"{LN} has no attribute `{name}` ({built}). {LN_PARAM_HINT}")
        if status.startswith("not a tensor"):
            fail(f"`{name}` of your LayerNorm is {status[len('not a tensor '):]}, not a tensor "
                 f"({built}). {LN_PARAM_HINT}")
        if status.startswith("shape"):
            fail(f"`{name}` of your LayerNorm has {status} in {built}, but should have shape "
                 f"({case.d},): one number per feature.")
        fail(f"Could not load test values into `{name}` of your LayerNorm {status}. "
             f"{LN_PARAM_HINT}")


def _record_ln(cases: list[LnCase]):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            args, kwargs = case.args()
            module, built = build_module(cls, *args, **kwargs)
            info = {"construct": built, "seen": {}, "forward": None}
            if module is not None:
                info["seen"] = load_params(module, _ln_params(case))
                info["forward"] = call(module, _ln_input(case), guard=_ln_guard())
            rec[case.desc] = info
        return rec
    return record


def _ln_output(info: dict, case: LnCase) -> np.ndarray:
    """Construction, parameters, forbidden calls, errors: everything before the values."""
    args, kwargs = case.args()
    built = built_text("LayerNorm", args, kwargs)
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        check_outcome(fwd, LN, case.desc)
    _ln_load_problem(info["seen"], case, built)
    got = as_array(check_outcome(fwd, LN, case.desc), LN, case.desc)
    expect_shape(got, case.shape, "The output of your LayerNorm", case.desc,
                 hint="A layer norm keeps the shape of its input.")
    expect_finite(got, "The output of your LayerNorm", case.desc,
                  hint="Is eps inside the square root?")
    return got


def _compare_ln(cases: list[LnCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            got = _ln_output(rec[case.desc], case)
            x, p = _ln_input(case), _ln_params(case)
            with torch.random.fork_rng():
                ref = RefLN(case.d, case.eps_value)
            ref.load_state_dict(p)
            with torch.no_grad():
                want = _np(ref(x))
            mistakes = [(m, _np(v)) for m, v in _ln_mistakes(case, x, p)]
            _expect(got, want, LN, case.desc, mistakes, atol=1e-5, rtol=1e-4)
    return compare


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

register("layernorm.values", "LayerNorm: matches nn.LayerNorm with random weight, bias and "
         "eps=0.5", _record_ln(LN_VALUE_CASES), _compare_ln(LN_VALUE_CASES))
register("layernorm.hidden", "LayerNorm: default eps, 2-d and 4-d inputs, d_model = 2",
         _record_ln(LN_HIDDEN_CASES), _compare_ln(LN_HIDDEN_CASES))


# ----- parameters: names, shapes, initial values

LN_PARAM_CASES = [((12,), {}), ((5,), {"eps": 0.25})]


def _record_ln_params(cls) -> dict:
    rec = {}
    for args, kwargs in LN_PARAM_CASES:
        module, built = build_module(cls, *args, **kwargs)
        info: dict = {"construct": built, "params": None, "attrs": {}}
        if module is not None:
            try:
                info["params"] = [(n, tuple(p.shape)) for n, p in module.named_parameters()]
            except Exception:
                info["params"] = None
            for name in ("weight", "bias"):
                t = getattr(module, name, None)
                info["attrs"][name] = {
                    "type": type(t).__name__,
                    "parameter": isinstance(t, nn.Parameter),
                    "value": _np(t) if isinstance(t, torch.Tensor) else None,
                }
        rec[built_text("LayerNorm", args, kwargs)] = info
    return rec


def _compare_ln_params(rec: dict) -> None:
    for args, kwargs in LN_PARAM_CASES:
        built = built_text("LayerNorm", args, kwargs)
        info = rec[built]
        check_outcome(info["construct"], built)
        d = args[0]
        params = dict(info["params"] or [])
        for name in ("weight", "bias"):
            attr = info["attrs"][name]
            if attr["value"] is None:
                fail(f"{LN} has no tensor attribute `{name}` ({built}). {LN_PARAM_HINT}")
            if not attr["parameter"]:
                fail(f"`{name}` of your LayerNorm is a plain tensor, so it would never be "
                     f"trained (and does not appear in .parameters()). Wrap it: "
                     f"self.{name} = nn.Parameter(...).")
            if name not in params:
                fail(f"`{name}` of your LayerNorm is not among its parameters ({built}). "
                     f"{LN_PARAM_HINT}")
            if params[name] != (d,):
                fail(f"`{name}` of your LayerNorm has shape {params[name]} in {built}, but "
                     f"should have shape ({d},): one number per feature.")
        extra = sorted(set(params) - {"weight", "bias"})
        if extra:
            fail(f"{LN} has extra parameters {extra} ({built}). Only weight and bias are "
                 "learned; keep eps a plain number (self.eps = eps).")
        w, b = info["attrs"]["weight"]["value"], info["attrs"]["bias"]["value"]
        if not np.array_equal(w, np.ones(d)) or not np.array_equal(b, np.zeros(d)):
            fail(f"A new LayerNorm should start with weight = ones and bias = zeros, so that "
                 f"it only normalises until training changes them; yours starts with weight "
                 f"{_few(w)} and bias {_few(b)} ({built}). Use torch.ones(d_model) and "
                 "torch.zeros(d_model).")


register("layernorm.params", "LayerNorm: parameters weight (ones) and bias (zeros) of shape "
         "(d_model,)", _record_ln_params, _compare_ln_params)


# ----- properties: each token normalised on its own

NORM_CASE = LnCase("x of shape (2, 4, 16): tokens with spreads from 0.5 to 50, offsets up to "
                   "+-20, weight = 1, bias = 0", (2, 4, 16), None, 611, affine=False)


def _property_input() -> Tensor:
    g = torch.Generator().manual_seed(612)
    scale = torch.logspace(math.log10(0.5), math.log10(50), 8).view(2, 4, 1)
    shift = 20 * (2 * torch.rand(2, 4, 1, generator=g) - 1)
    return torch.randn(2, 4, 16, generator=g) * scale + shift


def _record_normalised(cls) -> dict:
    module, built = build_module(cls, 16)
    info = {"construct": built, "seen": {}, "forward": None}
    if module is not None:
        info["seen"] = load_params(module, _ln_params(NORM_CASE))
        x = _property_input()
        guard = _ln_guard
        info["forward"] = call(module, x, guard=guard())
        changed = x.clone()
        changed[0, 0] = 100 * torch.randn(16, generator=torch.Generator().manual_seed(613))
        info["changed"] = call(module, changed, guard=guard())
        info["first_item"] = call(module, x[:1], guard=guard())
        info["rescaled"] = call(module, 3 * x + 7, guard=guard())
    return info


def _compare_normalised(rec: dict) -> None:
    case = NORM_CASE
    got = _ln_output(rec, case)
    var_in = _np(_property_input().var(-1, unbiased=False))
    means = np.abs(got.mean(-1))
    if means.max() > 1e-3:
        fail(f"With weight = 1 and bias = 0, each token's output should have mean 0 over its "
             f"features, but yours has means up to {fmt(float(means.max()))} ({case.desc}). "
             "Subtract each token's own mean: x.mean(-1, keepdim=True).")
    var = got.var(-1)
    want = var_in / (var_in + 1e-5)
    d = case.d
    if np.allclose(var, want * (d - 1) / d, atol=1e-4):
        fail(f"Each token's output should have variance 1, but yours is {fmt(float(var.mean()))}"
             f" = (d_model - 1) / d_model: you divided by the unbiased variance (torch.var "
             "divides by d_model - 1 by default). Use unbiased=False.")
    if not np.allclose(var, want, atol=2e-3):
        fail(f"With weight = 1 and bias = 0, each token's output should have variance 1 over "
             f"its features, but yours has variances {_few(var, 4)} ({case.desc}). Divide "
             "each token by its own standard deviation, "
             "sqrt(var + eps), with the variance over the last axis.")


def _compare_independent(rec: dict) -> None:
    case = NORM_CASE
    got = _ln_output(rec, case)
    changed = as_array(check_outcome(rec["changed"], LN, "one token changed"), LN)
    others = np.ones(got.shape[:-1], dtype=bool)
    others[0, 0] = False
    if not close(changed[others], got[others]):
        fail("Changing one token (batch item 0, position 0) changed the output of other tokens: "
             "your mean or variance mixes tokens. Layer norm normalises each token on its own, "
             "with statistics over the last axis: x.mean(-1, keepdim=True).")
    first = as_array(check_outcome(rec["first_item"], LN, "batch of one"), LN)
    if not close(first, got[:1]):
        fail("The first batch item's output changed when it was normalised without the second "
             "item: your statistics depend on the batch (that is batch normalisation). Use only "
             "each token's own features: the last axis.")
    rescaled = as_array(check_outcome(rec["rescaled"], LN, "3 * x + 7"), LN)
    if not close(rescaled, got, atol=1e-3, rtol=1e-3):
        fail("A layer norm gives the same output when every token is scaled by a positive "
             "number and shifted by a constant (here 3 * x + 7); yours does not. Subtract the "
             "mean and divide by the standard deviation, sqrt(var + eps), not by the variance.")


register("layernorm.normalised", "LayerNorm: with weight 1 and bias 0 every token has mean 0 "
         "and variance 1", _record_normalised, _compare_normalised)
register("layernorm.independent", "LayerNorm: tokens and batch items are normalised "
         "independently; shift and scale do not matter", _record_normalised,
         _compare_independent)


# ============================================================================= FeedForward


def _ff_guard() -> Guard:
    return Guard((), [(OURS.format("FeedForward"), RefFF.forward)])


@dataclass(frozen=True)
class FfCase:
    desc: str
    d_model: int
    d_ff: int
    B: int
    L: int
    seed: int
    activation: str | None = None  # None: not passed, so the default "relu" applies
    identity: bool = False  # linear1 and linear2 are identity maps: the activation alone
    position_wise: bool = False  # also run shuffled positions and one position alone

    @property
    def act(self) -> str:
        return self.activation or "relu"

    def args(self) -> tuple[tuple, dict]:
        kwargs = {} if self.activation is None else {"activation": self.activation}
        return (self.d_model, self.d_ff), kwargs


def _ff_params(case: FfCase) -> dict[str, Tensor]:
    d, h = case.d_model, case.d_ff
    if case.identity:
        return {"linear1.weight": torch.eye(h, d), "linear1.bias": torch.zeros(h),
                "linear2.weight": torch.eye(d, h), "linear2.bias": torch.zeros(d)}
    g = torch.Generator().manual_seed(case.seed)
    return {"linear1.weight": 1.5 * torch.randn(h, d, generator=g) / math.sqrt(d),
            "linear1.bias": 0.5 * torch.randn(h, generator=g),
            "linear2.weight": torch.randn(d, h, generator=g) / math.sqrt(h),
            "linear2.bias": 0.3 * torch.randn(d, generator=g)}


def _ff_input(case: FfCase) -> Tensor:
    shape = (case.B, case.L, case.d_model)
    if case.identity:
        return torch.linspace(-5, 5, math.prod(shape)).view(shape)
    return 1.5 * torch.randn(shape, generator=torch.Generator().manual_seed(case.seed + 1))


ACT = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "gelu_sigmoid": lambda t: t * torch.sigmoid(1.702 * t),
    "none": lambda t: t,
}


def _ff_manual(case: FfCase, act: str = "", where: str = "between") -> Tensor:
    p = _ff_params(case)
    x = _ff_input(case)
    f = ACT[act or case.act]
    hidden = x @ p["linear1.weight"].T + p["linear1.bias"]  # (B, L, d_ff)
    if where in ("between", "both"):
        hidden = f(hidden)
    out = hidden @ p["linear2.weight"].T + p["linear2.bias"]  # (B, L, d_model)
    return f(out) if where in ("after", "both") else out


def _ff_mistakes(case: FfCase) -> list[tuple[str, Tensor]]:
    act = case.act
    out = [
        ("It matches linear2(linear1(x)) with no activation in between: apply the activation "
         "to the hidden layer, linear2(activation(linear1(x))).", _ff_manual(case, "none")),
        (f"It matches the {act} applied after linear2. The activation goes between the two "
         "linear maps: linear2(activation(linear1(x))); the output itself is not activated.",
         _ff_manual(case, where="after")),
        (f"It matches the {act} applied twice, after linear1 and after linear2. Only the "
         "hidden layer is activated: linear2(activation(linear1(x))).",
         _ff_manual(case, where="both")),
    ]
    if act == "gelu":
        out += [
            ("It matches the tanh approximation of GELU (F.gelu(x, approximate='tanh'), or "
             "0.5 x (1 + tanh(...))). This course's \"gelu\" is the exact one, x * Phi(x): "
             "F.gelu(x), or 0.5 * x * (1 + torch.erf(x / math.sqrt(2))).",
             _ff_manual(case, "gelu_tanh")),
            ("It matches x * sigmoid(1.702 x), an approximation of GELU. Use the exact GELU: "
             "F.gelu(x), or 0.5 * x * (1 + torch.erf(x / math.sqrt(2))).",
             _ff_manual(case, "gelu_sigmoid")),
            ("It matches ReLU, but this FeedForward was built with activation=\"gelu\": store "
             "the argument and use F.gelu when it says \"gelu\".", _ff_manual(case, "relu")),
        ]
    else:
        out.append(("It matches GELU, but this FeedForward was built with the default "
                    "activation, \"relu\". Use F.relu unless activation == \"gelu\".",
                    _ff_manual(case, "gelu")))
    return out


def _ff_load_problem(seen: dict[str, str], case: FfCase, built: str) -> None:
    d, h = case.d_model, case.d_ff
    for path, status in seen.items():
        if status == "ok":
            continue
        lin = path.split(".")[0]
        spec = "nn.Linear(d_model, d_ff)" if lin == "linear1" else "nn.Linear(d_ff, d_model)"
        if status == "missing" and path.endswith("weight"):
            fail(f"{FF} has no `{lin}` with a weight ({built}). The exercise names its two "
                 f"linear maps linear1 and linear2: self.{lin} = {spec}.")
        if status == "missing" or status.startswith("not a tensor"):
            fail(f"`{path}` of your FeedForward is {status} ({built}): make {lin} an "
                 f"{spec} with its default bias=True.")
        if status.startswith("shape"):
            got = status[len("shape "):]
            want = (h, d) if path == "linear1.weight" else (d, h)
            hint = ""
            if path == "linear1.weight" and got == str((d, h)) or \
                    path == "linear2.weight" and got == str((h, d)):
                hint = (" The in and out sizes look swapped: nn.Linear(in_features, "
                        "out_features) stores a weight of shape (out_features, in_features).")
            elif got in (str((d, d)), str((d,))):
                hint = f" The hidden width should be d_ff = {h}, not d_model = {d}."
            fail(f"`{path}` of your FeedForward has shape {got} in {built}, but should have "
                 f"shape {want if path.endswith('weight') else (want[0],)}: {lin} is {spec}."
                 f"{hint}")
        fail(f"Could not load test values into `{path}` of your FeedForward {status}: make "
             f"{lin} a plain {spec}.")


def _record_ff(cases: list[FfCase]):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            args, kwargs = case.args()
            module, built = build_module(cls, *args, **kwargs)
            info: dict = {"construct": built, "seen": {}, "forward": None}
            if module is not None:
                info["seen"] = load_params(module, _ff_params(case))
                x = _ff_input(case)
                info["forward"] = call(module, x, guard=_ff_guard())
                if case.position_wise:
                    perm = torch.randperm(case.L, generator=torch.Generator().manual_seed(
                        case.seed + 2))
                    info["permuted"] = call(module, x[:, perm], guard=_ff_guard())
                    info["last_alone"] = call(module, x[:, -1:], guard=_ff_guard())
            rec[case.desc] = info
        return rec
    return record


def _compare_ff(cases: list[FfCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            args, kwargs = case.args()
            built = built_text("FeedForward", args, kwargs)
            check_outcome(info["construct"], built)
            fwd = info["forward"]
            if fwd is not None and fwd.forbidden:
                check_outcome(fwd, FF, case.desc)
            _ff_load_problem(info["seen"], case, built)
            got = as_array(check_outcome(fwd, FF, case.desc), FF, case.desc)
            want = _np(_ff_manual(case))
            expect_shape(got, want.shape, "The output of your FeedForward", case.desc,
                         hint="It maps (B, L, d_model) back to (B, L, d_model).")
            expect_finite(got, "The output of your FeedForward", case.desc)
            mistakes = [(m, _np(v)) for m, v in _ff_mistakes(case)]
            tol = dict(atol=2e-6, rtol=1e-6) if case.identity else dict(atol=1e-5, rtol=1e-4)
            _expect(got, want, FF, case.desc, mistakes, **tol)
            if "permuted" in info:
                _check_position_wise(info, case, got)
    return compare


def _check_position_wise(info: dict, case: FfCase, got: np.ndarray) -> None:
    perm = torch.randperm(case.L, generator=torch.Generator().manual_seed(case.seed + 2)).numpy()
    permuted = as_array(check_outcome(info["permuted"], FF, "positions shuffled"), FF)
    alone = as_array(check_outcome(info["last_alone"], FF, "one position alone"), FF)
    if not close(permuted, got[:, perm]) or not close(alone, got[:, -1:]):
        fail("A feed-forward sublayer treats every position on its own, with the same weights: "
             "shuffling the positions should shuffle the outputs the same way, and a position "
             "run alone should give the same output. Yours mixes positions; apply linear1 and "
             "linear2 to the last axis only.")


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

register("ff.relu", "FeedForward: linear2(relu(linear1(x))) matches the reference",
         _record_ff(FF_RELU_CASES), _compare_ff(FF_RELU_CASES))
register("ff.gelu", "FeedForward: activation=\"gelu\" is the exact GELU",
         _record_ff(FF_GELU_CASES), _compare_ff(FF_GELU_CASES))
register("ff.hidden", "FeedForward: more sizes; the same MLP at every position",
         _record_ff(FF_HIDDEN_CASES), _compare_ff(FF_HIDDEN_CASES))


# ============================================================================= EncoderLayer


def _enc_guard() -> Guard:
    label = OURS.format("EncoderLayer")
    return Guard((), [(label, RefEncoder.forward), (label, ref_block.residual),
                      ("PyTorch's nn.TransformerEncoderLayer",
                       nn.TransformerEncoderLayer.forward)])


class LayerArgs:
    """How a check builds a layer: ``Layer(d_model, n_heads, d_ff, **only what was given)``,
    so an argument left out takes the learner's default (post-norm, ReLU, eps 1e-5)."""

    d_model: int
    n_heads: int
    d_ff: int
    norm_first: bool | None
    activation: str | None
    eps: float | None

    @property
    def pre(self) -> bool:
        return bool(self.norm_first)

    @property
    def act(self) -> str:
        return self.activation or "relu"

    @property
    def eps_value(self) -> float:
        return 1e-5 if self.eps is None else self.eps

    def args(self) -> tuple[tuple, dict]:
        kwargs: dict = {}
        if self.norm_first is not None:
            kwargs["norm_first"] = self.norm_first
        if self.activation is not None:
            kwargs["activation"] = self.activation
        if self.eps is not None:
            kwargs["eps"] = self.eps
        return (self.d_model, self.n_heads, self.d_ff), kwargs


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


ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "out_proj")


def _enc_params(case: EncCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    d, h = case.d_model, case.d_ff
    p: dict[str, Tensor] = {}
    for name in ATTN_NAMES:
        p[f"self_attn.{name}.weight"] = 1.2 * torch.randn(d, d, generator=g) / math.sqrt(d)
        p[f"self_attn.{name}.bias"] = 0.2 * torch.randn(d, generator=g)
    p["ff.linear1.weight"] = torch.randn(h, d, generator=g) / math.sqrt(d)
    p["ff.linear1.bias"] = 0.3 * torch.randn(h, generator=g)
    p["ff.linear2.weight"] = torch.randn(d, h, generator=g) / math.sqrt(h)
    p["ff.linear2.bias"] = 0.3 * torch.randn(d, generator=g)
    for norm in ("norm1", "norm2"):
        p[f"{norm}.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
        p[f"{norm}.bias"] = 0.3 * torch.randn(d, generator=g)
    return p


def _enc_inputs(case: EncCase) -> tuple[Tensor, Tensor | None]:
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


@lru_cache(maxsize=512)
def _ref_encoder(case: EncCase, activation: str | None = None,
                 eps: float | None = None) -> RefEncoder:
    with torch.random.fork_rng():
        ref = RefEncoder(case.d_model, case.n_heads, case.d_ff, norm_first=case.pre,
                         activation=activation or case.act,
                         eps=case.eps_value if eps is None else eps)
    ref.load_state_dict(_enc_params(case))
    return ref.eval()


@lru_cache(maxsize=512)
def _reference(case: EncCase) -> tuple[np.ndarray, np.ndarray]:
    x, mask = _enc_inputs(case)
    with torch.no_grad():
        out, w = _ref_encoder(case)(x, mask, return_weights=True)
    return _np(out), _np(w)


@lru_cache(maxsize=512)
def _torch_reference(case: EncCase) -> np.ndarray:
    """The same weights in torch.nn.TransformerEncoderLayer (its bool src_mask: True = blocked)."""
    p = _enc_params(case)
    with torch.random.fork_rng():
        layer = nn.TransformerEncoderLayer(
            case.d_model, case.n_heads, case.d_ff, dropout=0.0, activation=case.act,
            layer_norm_eps=case.eps_value, batch_first=True, norm_first=case.pre)
    state = {
        "self_attn.in_proj_weight": torch.cat([p[f"self_attn.{n}.weight"] for n in ATTN_NAMES[:3]]),
        "self_attn.in_proj_bias": torch.cat([p[f"self_attn.{n}.bias"] for n in ATTN_NAMES[:3]]),
        "self_attn.out_proj.weight": p["self_attn.out_proj.weight"],
        "self_attn.out_proj.bias": p["self_attn.out_proj.bias"],
    }
    for ours, theirs in (("ff.linear1", "linear1"), ("ff.linear2", "linear2"),
                         ("norm1", "norm1"), ("norm2", "norm2")):
        state[f"{theirs}.weight"] = p[f"{ours}.weight"]
        state[f"{theirs}.bias"] = p[f"{ours}.bias"]
    layer.load_state_dict(state)
    layer.eval()
    x, mask = _enc_inputs(case)
    with torch.no_grad():
        return _np(layer(x, src_mask=None if mask is None else ~mask))


@lru_cache(maxsize=512)
def _variant(case: EncCase, *, form: str = "", resid: tuple[str, ...] = ("attn", "ff"),
             res_from_norm: bool = False, res_outside_norm: bool = False,
             norms: tuple[str, str] = ("norm1", "norm2"), order: tuple[str, str] = ("attn", "ff"),
             mask_mode: str = "as_is") -> tuple[np.ndarray, np.ndarray]:
    """The layer with one deliberate wiring mistake: (output, attention weights)."""
    ref = _ref_encoder(case)
    x, mask = _enc_inputs(case)
    mask = {"as_is": mask, "inverted": None if mask is None else ~mask, "none": None}[mask_mode]
    form = form or ("pre" if case.pre else "post")
    weights = None
    h = x
    with torch.no_grad():
        for kind, norm_name in zip(order, norms, strict=True):
            norm = getattr(ref, norm_name)
            keep = kind in resid
            t = norm(h) if form == "pre" else h
            if kind == "attn":
                o, weights = ref.self_attn(t, t, t, mask)
            else:
                o = ref.ff(t)
            if form == "pre":
                h = ((t if res_from_norm else h) + o) if keep else o
            elif res_outside_norm:
                h = h + norm(o) if keep else norm(o)
            else:
                h = norm(h + o) if keep else norm(o)
    return _np(h), _np(weights)


M_PRE_FOR_POST = ("It matches the PRE-norm layer, x + sublayer(norm(x)), but this layer was "
                  "built with norm_first=False, which asks for POST-norm: x = norm(x + "
                  "sublayer(x)), the norm applied after the residual add. Is norm_first "
                  "ignored, or your if/else the wrong way round?")
M_POST_FOR_PRE = ("It matches the POST-norm layer, norm(x + sublayer(x)), but this layer was "
                  "built with norm_first=True, which asks for PRE-norm: x = x + "
                  "sublayer(norm(x)). Is norm_first ignored (store it in __init__ and test it "
                  "in forward), or your if/else the wrong way round?")
M_OUTSIDE = ("It matches x + norm(sublayer(x)): the residual is added after the norm. In "
             "post-norm the SUM is normalised: x = norm(x + sublayer(x)).")
M_FROM_NORM = ("It matches x = norm(x) + sublayer(norm(x)): the residual starts from the "
               "normalised x. In pre-norm the residual path skips the norm, x = x + "
               "sublayer(norm(x)), so the input reaches the output unchanged.")
M_NO_RESID = ("It matches the layer without residual connections ({}). Add each sublayer's "
              "input back: {}.")
M_ONE_RESID = ("It matches the layer with the residual connection around the {} missing. "
               "Both sublayers need one: {}.")
M_SHARED = ("It matches a layer that uses {} for both sublayers. Each sublayer has its own "
            "LayerNorm with its own weight and bias: norm1 with self-attention, norm2 with the "
            "feed-forward.")
M_SWAPPED_NORMS = ("It matches norm1 and norm2 swapped: norm1 belongs to self-attention (the "
                   "first sublayer), norm2 to the feed-forward. The names matter: from_torch "
                   "copies torch's norm1 and norm2 into them.")
M_FF_FIRST = ("It matches the feed-forward applied before self-attention. The encoder layer "
              "runs self-attention first, then the feed-forward.")
M_MASK_INVERTED = ("It matches the mask with its meaning inverted. In this course True = may "
                   "attend; pass the mask to self_attn unchanged (only torch's own layers "
                   "want ~mask).")
M_MASK_IGNORED = ("It matches the layer without the mask: pass `mask` on to self-attention, "
                  "self.self_attn(h, h, h, mask).")


@lru_cache(maxsize=512)
def _enc_mistakes(case: EncCase) -> list[tuple[str, np.ndarray]]:
    """Ordered (message, output) pairs for the catalogued wiring mistakes."""
    if case.pre:
        form = "x = x + sublayer(norm(x))"
        items = [
            (M_POST_FOR_PRE, _variant(case, form="post")),
            (M_FROM_NORM, _variant(case, res_from_norm=True)),
            (M_NO_RESID.format("sublayer(norm(x))", form), _variant(case, resid=())),
        ]
    else:
        form = "x = norm(x + sublayer(x))"
        items = [
            (M_PRE_FOR_POST, _variant(case, form="pre")),
            (M_OUTSIDE, _variant(case, res_outside_norm=True)),
            (M_NO_RESID.format("norm(sublayer(x))", form), _variant(case, resid=())),
        ]
    items += [
        (M_ONE_RESID.format("self-attention", form), _variant(case, resid=("ff",))),
        (M_ONE_RESID.format("feed-forward", form), _variant(case, resid=("attn",))),
        (M_SHARED.format("norm1"), _variant(case, norms=("norm1", "norm1"))),
        (M_SHARED.format("norm2"), _variant(case, norms=("norm2", "norm2"))),
        (M_SWAPPED_NORMS, _variant(case, norms=("norm2", "norm1"))),
        (M_FF_FIRST, _variant(case, order=("ff", "attn"), norms=("norm2", "norm1"))),
        (M_FF_FIRST, _variant(case, order=("ff", "attn"))),
    ]
    if case.mask:
        items += [(M_MASK_INVERTED, _variant(case, mask_mode="inverted")),
                  (M_MASK_IGNORED, _variant(case, mask_mode="none"))]
    return [(m, out) for m, (out, _) in items]


# ----- recording


def _record_encoder(cases: list[EncCase], weights: bool = False):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            args, kwargs = case.args()
            module, built = build_module(cls, *args, **kwargs)
            info: dict = {"construct": built, "seen": {}, "forward": None}
            if module is not None:
                info["same_norm"] = _same_norm(module)
                info["seen"] = load_params(module, _enc_params(case))
                x, mask = _enc_inputs(case)
                fwd_args = (x,) if mask is None else (x, mask)
                info["forward"] = call(module, *fwd_args, guard=_enc_guard())
                if weights:
                    info["with_weights"] = call(module, *fwd_args, return_weights=True,
                                                guard=_enc_guard())
                info["parts"] = _record_parts(module, x)
            rec[case.desc] = info
        return rec
    return record


def _same_norm(module) -> bool:
    norm1 = getattr(module, "norm1", None)
    return norm1 is not None and norm1 is getattr(module, "norm2", None)


def _record_parts(module, x: Tensor) -> dict:
    """The learner's sublayers on their own, to tell a wiring mistake from a broken part."""
    parts = {}
    for name in ("norm1", "norm2", "ff"):
        sub = getattr(module, name, None)
        parts[name] = call(sub, x) if callable(sub) else None
    attn = getattr(module, "self_attn", None)
    parts["self_attn"] = call(attn, x, x, x) if callable(attn) else None
    return parts


# ----- comparing


def _enc_load_problem(seen: dict[str, str], case: EncCase, built: str) -> None:
    d, h = case.d_model, case.d_ff
    fixes = {
        "self_attn": "self.self_attn = MultiHeadAttention(d_model, n_heads) (from attnlab, "
                     "lesson 03's building block)",
        "ff": "self.ff = FeedForward(d_model, d_ff, activation)",
        "norm1": "self.norm1 = LayerNorm(d_model, eps)",
        "norm2": "self.norm2 = LayerNorm(d_model, eps)",
    }
    for path, status in seen.items():
        if status == "ok":
            continue
        top = path.split(".")[0]
        if status == "missing":
            parent = path.rsplit(".", 1)[0]
            if parent == top or path.count(".") == 1:
                fail(f"{ENC} has no `{parent}` with the expected parameter `{path}` ({built}). "
                     f"The exercise names its parts self_attn, ff, norm1 and norm2 (from_torch "
                     f"and the checks load weights through these names): {fixes[top]}.")
            fail(f"{ENC} has no `{path}` ({built}). Its self_attn should be a "
                 "MultiHeadAttention with q_proj, k_proj, v_proj and out_proj "
                 f"(nn.Linear(d_model, d_model)): {fixes['self_attn']}.")
        if status.startswith("shape"):
            got = status[len("shape "):]
            hint = ""
            if path == "ff.linear1.weight" and got in (str((d, d)), str((4 * d, d))):
                hint = f" Did you pass d_ff = {h} on to FeedForward?"
            fail(f"`{path}` of your EncoderLayer has shape {got} in {built}, but should have "
                 f"shape {tuple(_enc_params(case)[path].shape)}.{hint}")
        fail(f"Could not load test values into `{path}` of your EncoderLayer: it is {status}. "
             f"{fixes[top]}.")


def _check_parts(info: dict, case: EncCase, built: str) -> None:
    """Each part must do its own job before the wiring can be judged."""
    parts = info.get("parts") or {}
    x, _ = _enc_inputs(case)
    ref = _ref_encoder(case)
    with torch.no_grad():
        wants = {"norm1": ref.norm1(x), "norm2": ref.norm2(x), "ff": ref.ff(x),
                 "self_attn": ref.self_attn(x, x, x)[0]}
    for name in ("norm1", "norm2"):
        out = parts.get(name)
        if out is None or out.error or out.forbidden:
            continue
        got = np.asarray(out.value) if isinstance(out.value, np.ndarray) else None
        if got is None or close(got, _np(wants[name]), atol=2e-5):
            continue
        if case.eps is not None:
            with torch.no_grad():
                default = _ref_encoder(case, eps=1e-5)
                if close(got, _np(getattr(default, name)(x)), atol=2e-5):
                    fail(f"Your EncoderLayer's {name} uses eps = 1e-5, but this layer was "
                         f"built with eps={case.eps} ({built}): pass eps on, "
                         "LayerNorm(d_model, eps).")
        fail(f"Your EncoderLayer's {name} does not compute a layer norm with the weight and "
             f"bias loaded into it ({built}). The encoder uses your own LayerNorm: get the "
             "LayerNorm tests above passing first.")
    out = parts.get("ff")
    if out is not None and not out.error and isinstance(out.value, np.ndarray):
        got = np.asarray(out.value)
        if not close(got, _np(wants["ff"]), atol=2e-5):
            other = "gelu" if case.act == "relu" else "relu"
            with torch.no_grad():
                swapped = _np(_ref_encoder(case, activation=other).ff(x))
            if close(got, swapped, atol=2e-5):
                fail(f"Your EncoderLayer's ff uses {other}, but this layer was built with "
                     f"activation={case.act!r} ({built}): pass activation on, "
                     "FeedForward(d_model, d_ff, activation).")
            fail(f"Your EncoderLayer's ff does not compute the feed-forward sublayer with the "
                 f"weights loaded into it ({built}). The encoder uses your own FeedForward: get "
                 "the FeedForward tests above passing first.")
    out = parts.get("self_attn")
    if out is not None and not out.error and not out.forbidden:
        value = out.value
        got = np.asarray(value[0]) if isinstance(value, (tuple, list)) and value else None
        if got is not None and not close(got, _np(wants["self_attn"]), atol=2e-5):
            fail(f"Your EncoderLayer's self_attn does not match the course's MultiHeadAttention "
                 f"with the same weights ({built}). Use MultiHeadAttention from attnlab "
                 "(lesson 03's building block), which returns (output, weights).")


def _check_separate_norms(info: dict) -> None:
    if info.get("same_norm"):
        fail("norm1 and norm2 are the same module: each sublayer needs its own LayerNorm with "
             "its own weight and bias. Create two: self.norm1 = LayerNorm(d_model, eps) and "
             "self.norm2 = LayerNorm(d_model, eps).")


def _check_built(info: dict, case: EncCase) -> str:
    args, kwargs = case.args()
    built = built_text("EncoderLayer", args, kwargs)
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        fail(f"{ENC} calls {fwd.forbidden[0]}. This exercise asks you to wire the layer "
             "yourself from MultiHeadAttention, your FeedForward and your LayerNorm.")
    _check_separate_norms(info)
    _enc_load_problem(info["seen"], case, built)
    return built


def _layer_output(out: Outcome, case: EncCase, what: str = ENC) -> np.ndarray:
    value = check_outcome(out, what, case.desc)
    if isinstance(value, (tuple, list)):
        fail(f"{what} returned a {type(value).__name__} of {len(value)} items ({case.desc}); "
             "without return_weights=True, forward should return only the output tensor: "
             "`return (x, weights) if return_weights else x`.")
    return as_array(value, what, case.desc)


def _compare_encoder_case(info: dict, case: EncCase, oracle: str = "reference") -> np.ndarray:
    built = _check_built(info, case)
    got = _layer_output(info["forward"], case)
    want = _reference(case)[0] if oracle == "reference" else _torch_reference(case)
    expect_shape(got, want.shape, "The output of your EncoderLayer", case.desc,
                 hint="An encoder layer keeps the shape of its input, (B, L, d_model).")
    expect_finite(got, "The output of your EncoderLayer", case.desc)
    if close(got, want, atol=2e-5):
        return got
    _check_parts(info, case, built)
    against = "the reference" if oracle == "reference" else "torch.nn.TransformerEncoderLayer"
    message = first_close(got, _enc_mistakes(case), 2e-5, 1e-4)
    if message:
        fail(f"{ENC} does not match {against} ({case.desc}). {message}")
    fail(f"{ENC} does not match {against} with the same weights ({case.desc}): largest "
         f"error {fmt(float(np.abs(got - want).max()))}. "
         + ("Pre-norm: x = x + attn(norm1(x)), then x = x + ff(norm2(x))." if case.pre else
            "Post-norm: x = norm1(x + attn(x)), then x = norm2(x + ff(x))."))


def _compare_encoder(cases: list[EncCase], oracle: str = "reference"):
    def compare(rec: dict) -> None:
        for case in cases:
            _compare_encoder_case(rec[case.desc], case, oracle)
    return compare


def _compare_weights(cases: list[EncCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            got_out = _compare_encoder_case(info, case)
            what = f"{ENC} with return_weights=True"
            pair = check_outcome(info["with_weights"], what, case.desc)
            out, w = unpack_pair(pair, what, case=case.desc)
            want_out, want_w = _reference(case)
            if not close(out, got_out, atol=1e-6):
                fail(f"{what} returned a different output than without it ({case.desc}); the "
                     "flag should only add the weights.")
            B, H, L = case.B, case.n_heads, case.L
            if w.shape in ((B, L, L), (B, 1, L, L)) and H > 1:
                fail(f"Your weights have shape {w.shape}, but should be per head, (B, H, L, L) "
                     f"= {(B, H, L, L)} ({case.desc}): return the weights self_attn gives you, "
                     "without averaging them.")
            expect_shape(w, want_w.shape, "Your attention weights", case.desc,
                         hint="Return the self-attention weights, (B, H, L, L).")
            _, mask = _enc_inputs(case)
            if mask is not None:
                blocked = ~np.broadcast_to(_np(mask), w.shape)
                if np.abs(np.nan_to_num(w[blocked])).max() > 1e-6:
                    fail(f"Your weights give non-zero weight to keys the mask blocks "
                         f"({case.desc}). Pass `mask` on to self_attn: "
                         "self.self_attn(h, h, h, mask).")
            wrong = []
            if case.pre:
                wrong.append(("They match attention on the raw input x. In pre-norm, "
                              "self-attention sees norm1(x): compute h = self.norm1(x) and "
                              "attend with h as query, key and value.",
                              _variant(case, form="post")[1]))
            _expect(w, want_w, "Your attention weights", case.desc, wrong, atol=1e-5)
    return compare


# ----- layout: the parts exist, are separate, and receive eps and activation


LAYOUT_CASE = EncCase("EncoderLayer(16, 4, 40, dropout=0.1, activation=\"gelu\", eps=0.5)",
                      16, 4, 40, 2, 5, 631, activation="gelu", eps=0.5)


def _record_layout(cls) -> dict:
    case = LAYOUT_CASE
    args, kwargs = case.args()
    module, built = build_module(cls, *args, dropout=0.1, **kwargs)
    info: dict = {"construct": built, "seen": {}, "forward": None, "attrs": {}}
    if module is None:
        return info
    for name in ("self_attn", "ff", "norm1", "norm2"):
        info["attrs"][name] = type(getattr(module, name, None)).__name__
    info["same_norm"] = _same_norm(module)
    info["seen"] = load_params(module, _enc_params(case))
    info["parts"] = _record_parts(module, _enc_inputs(case)[0])
    return info


def _compare_layout(rec: dict) -> None:
    case = LAYOUT_CASE
    built = case.desc
    check_outcome(rec["construct"], built)
    for name, kind in rec["attrs"].items():
        if kind == "NoneType":
            fail(f"{ENC} has no attribute `{name}` ({built}). The exercise names its parts "
                 "self_attn, ff, norm1 and norm2.")
    _check_separate_norms(rec)
    _enc_load_problem(rec["seen"], case, built)
    for name in ("norm1", "norm2", "ff"):
        part = (rec.get("parts") or {}).get(name)
        if part is not None:
            check_outcome(part, f"Your EncoderLayer's {name}", built)
    _check_parts(rec, case, built)


register("encoder.layout", "EncoderLayer: self_attn, ff, norm1 and norm2 exist, are separate, "
         "and receive eps and activation", _record_layout, _compare_layout)


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

register("encoder.post_norm", "EncoderLayer: post-norm, x = norm(x + sublayer(x)), matches the "
         "reference", _record_encoder(POST_CASES), _compare_encoder(POST_CASES))
register("encoder.post_norm_hidden", "EncoderLayer: post-norm with gelu, eps, one token and a "
         "mask", _record_encoder(POST_HIDDEN_CASES), _compare_encoder(POST_HIDDEN_CASES))
register("encoder.torch_post", "EncoderLayer: post-norm equals torch.nn.TransformerEncoderLayer",
         _record_encoder(TORCH_POST_CASES), _compare_encoder(TORCH_POST_CASES, "torch"))
register("encoder.pre_norm", "EncoderLayer: pre-norm, x = x + sublayer(norm(x)), matches the "
         "reference", _record_encoder(PRE_CASES), _compare_encoder(PRE_CASES))
register("encoder.pre_norm_hidden", "EncoderLayer: pre-norm with gelu, eps, one token and a "
         "mask", _record_encoder(PRE_HIDDEN_CASES), _compare_encoder(PRE_HIDDEN_CASES))
register("encoder.torch_pre", "EncoderLayer: pre-norm equals torch.nn.TransformerEncoderLayer",
         _record_encoder(TORCH_PRE_CASES), _compare_encoder(TORCH_PRE_CASES, "torch"))
register("encoder.mask_weights", "EncoderLayer: the mask reaches self-attention; "
         "return_weights gives per-head weights", _record_encoder(WEIGHT_CASES, weights=True),
         _compare_weights(WEIGHT_CASES))
register("encoder.mask_hidden", "EncoderLayer: padding masks, per-head weights in both "
         "placements", _record_encoder(WEIGHT_HIDDEN_CASES, weights=True),
         _compare_weights(WEIGHT_HIDDEN_CASES))
