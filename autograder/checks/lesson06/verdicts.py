"""Lesson 06's verdicts: reference oracles, known mistakes and messages (trusted side only).

``compare`` loads the fixed-seed parameters of each case (``cases.py``) into the reference
(or into ``torch.nn.TransformerEncoderLayer``) and says what differs. LayerNorm is always
tested with non-default weight and bias and a large eps, so that a misplaced epsilon or a
forgotten affine map shows.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import EncoderLayer as RefEncoder
from autograder.reference import LayerNorm as RefLN

from .._module_verdicts import (
    blocked_weight,
    check_built,
    compare_cases,
    expect_known,
    expect_layer,
    explain_layer_load,
    few,
    module_output,
    reference_module,
    reference_output,
    renamed_state,
    single_output,
    to_numpy,
    torch_attention_state,
)
from .._verdict import (
    as_array,
    check_outcome,
    close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
    unpack_pair,
)
from .cases import (
    FF_GELU_CASES,
    FF_HIDDEN_CASES,
    FF_RELU_CASES,
    LAYOUT_CASE,
    LN_HIDDEN_CASES,
    LN_PARAM_CASES,
    LN_VALUE_CASES,
    NORM_CASE,
    POST_CASES,
    POST_HIDDEN_CASES,
    PRE_CASES,
    PRE_HIDDEN_CASES,
    TORCH_POST_CASES,
    TORCH_PRE_CASES,
    WEIGHT_CASES,
    WEIGHT_HIDDEN_CASES,
    EncCase,
    FfCase,
    LnCase,
    enc_inputs,
    enc_params,
    ff_input,
    ff_params,
    ff_perm,
    ln_input,
    ln_params,
    property_input,
)

LN = "Your LayerNorm"
FF = "Your FeedForward"
ENC = "Your EncoderLayer"


# ============================================================================= LayerNorm


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


def _ln_output(info: dict, case: LnCase) -> np.ndarray:
    """Construction, parameters, forbidden calls, errors: everything before the values."""
    return module_output(info, case, LN, lambda: _ln_load_problem(info["seen"], case,
                                                                   case.built),
                         "A layer norm keeps the shape of its input.",
                         "Is eps inside the square root?")


def _compare_ln(cases: list[LnCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            got = _ln_output(rec[case.desc], case)
            x, p = ln_input(case), ln_params(case)
            want = reference_output(reference_module(RefLN, (case.d, case.eps_value), {}, p), x)
            mistakes = [(m, to_numpy(v)) for m, v in _ln_mistakes(case, x, p)]
            expect_known(got, want, LN, case.desc, mistakes, atol=1e-5, rtol=1e-4)
    return compare


# ----- parameters: names, shapes, initial values

def _compare_ln_params(rec: dict) -> None:
    for case in LN_PARAM_CASES:
        args, kwargs = case.args()
        built = case.built
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
                 f"{few(w)} and bias {few(b)} ({built}). Use torch.ones(d_model) and "
                 "torch.zeros(d_model).")




# ----- properties: each token normalised on its own

def _compare_normalised(rec: dict) -> None:
    case = NORM_CASE
    got = _ln_output(rec, case)
    var_in = to_numpy(property_input().var(-1, unbiased=False))
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
             f"its features, but yours has variances {few(var, 4)} ({case.desc}). Divide "
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


# ============================================================================= FeedForward


ACT = {
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"),
    "gelu_sigmoid": lambda t: t * torch.sigmoid(1.702 * t),
    "none": lambda t: t,
}


def _ff_manual(case: FfCase, act: str = "", where: str = "between") -> Tensor:
    p = ff_params(case)
    x = ff_input(case)
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


def _compare_ff(cases: list[FfCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            built = case.built
            check_outcome(info["construct"], built)
            fwd = info["forward"]
            if fwd is not None and fwd.forbidden:
                check_outcome(fwd, FF, case.desc)
            _ff_load_problem(info["seen"], case, built)
            got = as_array(check_outcome(fwd, FF, case.desc), FF, case.desc)
            want = to_numpy(_ff_manual(case))
            expect_shape(got, want.shape, "The output of your FeedForward", case.desc,
                         hint="It maps (B, L, d_model) back to (B, L, d_model).")
            expect_finite(got, "The output of your FeedForward", case.desc)
            mistakes = [(m, to_numpy(v)) for m, v in _ff_mistakes(case)]
            tol = dict(atol=2e-6, rtol=1e-6) if case.identity else dict(atol=1e-5, rtol=1e-4)
            expect_known(got, want, FF, case.desc, mistakes, **tol)
            if "permuted" in info:
                _check_position_wise(info, case, got)
    return compare


def _check_position_wise(info: dict, case: FfCase, got: np.ndarray) -> None:
    perm = ff_perm(case).numpy()
    permuted = as_array(check_outcome(info["permuted"], FF, "positions shuffled"), FF)
    alone = as_array(check_outcome(info["last_alone"], FF, "one position alone"), FF)
    if not close(permuted, got[:, perm]) or not close(alone, got[:, -1:]):
        fail("A feed-forward sublayer treats every position on its own, with the same weights: "
             "shuffling the positions should shuffle the outputs the same way, and a position "
             "run alone should give the same output. Yours mixes positions; apply linear1 and "
             "linear2 to the last axis only.")


# ============================================================================= EncoderLayer


@lru_cache(maxsize=512)
def _ref_encoder(case: EncCase, activation: str | None = None,
                 eps: float | None = None) -> RefEncoder:
    return reference_module(RefEncoder, (case.d_model, case.n_heads, case.d_ff), {
        "norm_first": case.pre, "activation": activation or case.act,
        "eps": case.eps_value if eps is None else eps}, enc_params(case))


@lru_cache(maxsize=512)
def _reference(case: EncCase) -> tuple[np.ndarray, np.ndarray]:
    x, mask = enc_inputs(case)
    return reference_output(_ref_encoder(case), x, mask, return_weights=True)


@lru_cache(maxsize=512)
def _torch_reference(case: EncCase) -> np.ndarray:
    """The same weights in torch.nn.TransformerEncoderLayer (its bool src_mask: True = blocked)."""
    p = enc_params(case)
    state = {**torch_attention_state(p, "self_attn", "self_attn"),
             **renamed_state(p, (("ff.linear1", "linear1"), ("ff.linear2", "linear2"),
                                 ("norm1", "norm1"), ("norm2", "norm2")))}
    layer = reference_module(nn.TransformerEncoderLayer, (case.d_model, case.n_heads, case.d_ff), {
        "dropout": 0.0, "activation": case.act, "layer_norm_eps": case.eps_value,
        "batch_first": True, "norm_first": case.pre}, state)
    x, mask = enc_inputs(case)
    return reference_output(layer, x, src_mask=None if mask is None else ~mask)


@lru_cache(maxsize=512)
def _variant(case: EncCase, *, form: str = "", resid: tuple[str, ...] = ("attn", "ff"),
             res_from_norm: bool = False, res_outside_norm: bool = False,
             norms: tuple[str, str] = ("norm1", "norm2"), order: tuple[str, str] = ("attn", "ff"),
             mask_mode: str = "as_is") -> tuple[np.ndarray, np.ndarray]:
    """The layer with one deliberate wiring mistake: (output, attention weights)."""
    ref = _ref_encoder(case)
    x, mask = enc_inputs(case)
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
    return to_numpy(h), to_numpy(weights)


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

    def missing(path: str, top: str) -> str:
        parent = path.rsplit(".", 1)[0]
        if parent == top or path.count(".") == 1:
            return (f"{ENC} has no `{parent}` with the expected parameter `{path}` ({built}). "
                    f"The exercise names its parts self_attn, ff, norm1 and norm2 (from_torch "
                    f"and the checks load weights through these names): {fixes[top]}.")
        return (f"{ENC} has no `{path}` ({built}). Its self_attn should be a "
                "MultiHeadAttention with q_proj, k_proj, v_proj and out_proj "
                f"(nn.Linear(d_model, d_model)): {fixes['self_attn']}.")

    explain_layer_load(seen, ENC, built, fixes, {k: v.shape for k, v in enc_params(case).items()},
                       d, h, missing)


def _check_parts(info: dict, case: EncCase, built: str) -> None:
    """Each part must do its own job before the wiring can be judged."""
    parts = info.get("parts") or {}
    x, _ = enc_inputs(case)
    ref = _ref_encoder(case)
    with torch.no_grad():
        wants = {"norm1": ref.norm1(x), "norm2": ref.norm2(x), "ff": ref.ff(x),
                 "self_attn": ref.self_attn(x, x, x)[0]}
    for name in ("norm1", "norm2"):
        out = parts.get(name)
        if out is None or out.error or out.forbidden:
            continue
        got = np.asarray(out.value) if isinstance(out.value, np.ndarray) else None
        if got is None or close(got, to_numpy(wants[name]), atol=2e-5):
            continue
        if case.eps is not None:
            with torch.no_grad():
                default = _ref_encoder(case, eps=1e-5)
                if close(got, to_numpy(getattr(default, name)(x)), atol=2e-5):
                    fail(f"Your EncoderLayer's {name} uses eps = 1e-5, but this layer was "
                         f"built with eps={case.eps} ({built}): pass eps on, "
                         "LayerNorm(d_model, eps).")
        fail(f"Your EncoderLayer's {name} does not compute a layer norm with the weight and "
             f"bias loaded into it ({built}). The encoder uses your own LayerNorm: get the "
             "LayerNorm tests above passing first.")
    out = parts.get("ff")
    if out is not None and not out.error and isinstance(out.value, np.ndarray):
        got = np.asarray(out.value)
        if not close(got, to_numpy(wants["ff"]), atol=2e-5):
            other = "gelu" if case.act == "relu" else "relu"
            with torch.no_grad():
                swapped = to_numpy(_ref_encoder(case, activation=other).ff(x))
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
        if got is not None and not close(got, to_numpy(wants["self_attn"]), atol=2e-5):
            fail(f"Your EncoderLayer's self_attn does not match the course's MultiHeadAttention "
                 f"with the same weights ({built}). Use MultiHeadAttention from attnlab "
                 "(lesson 03's building block), which returns (output, weights).")


def _check_separate_norms(info: dict) -> None:
    if info.get("same_norm"):
        fail("norm1 and norm2 are the same module: each sublayer needs its own LayerNorm with "
             "its own weight and bias. Create two: self.norm1 = LayerNorm(d_model, eps) and "
             "self.norm2 = LayerNorm(d_model, eps).")


def _check_built(info: dict, case: EncCase) -> str:
    built = case.built
    check_built(info, built, ENC, forbidden="This exercise asks you to wire the layer "
                "yourself from MultiHeadAttention, your FeedForward and your LayerNorm.")
    _check_separate_norms(info)
    _enc_load_problem(info["seen"], case, built)
    return built


def _compare_encoder_case(info: dict, case: EncCase, oracle: str = "reference") -> np.ndarray:
    built = _check_built(info, case)
    got = single_output(info["forward"], ENC, case.desc)
    want = _reference(case)[0] if oracle == "reference" else _torch_reference(case)
    expect_shape(got, want.shape, "The output of your EncoderLayer", case.desc,
                 hint="An encoder layer keeps the shape of its input, (B, L, d_model).")
    expect_finite(got, "The output of your EncoderLayer", case.desc)
    if close(got, want, atol=2e-5):
        return got
    _check_parts(info, case, built)
    expect_layer(got, want, ENC, case.desc, _enc_mistakes(case),
                 against="the reference" if oracle == "reference" else
                 "torch.nn.TransformerEncoderLayer",
                 wiring="Pre-norm: x = x + attn(norm1(x)), then x = x + ff(norm2(x))."
                 if case.pre else "Post-norm: x = norm1(x + attn(x)), then x = norm2(x + "
                 "ff(x)).")
    return got


def _compare_encoder(cases: list[EncCase], oracle: str = "reference"):
    return compare_cases(cases, lambda info, case: _compare_encoder_case(info, case, oracle))


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
            _, mask = enc_inputs(case)
            if mask is not None:
                if blocked_weight(w, mask) > 1e-6:
                    fail(f"Your weights give non-zero weight to keys the mask blocks "
                         f"({case.desc}). Pass `mask` on to self_attn: "
                         "self.self_attn(h, h, h, mask).")
            wrong = []
            if case.pre:
                wrong.append(("They match attention on the raw input x. In pre-norm, "
                              "self-attention sees norm1(x): compute h = self.norm1(x) and "
                              "attend with h as query, key and value.",
                              _variant(case, form="post")[1]))
            expect_known(w, want_w, "Your attention weights", case.desc, wrong, atol=1e-5)
    return compare


# ----- layout: the parts exist, are separate, and receive eps and activation


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




VERDICTS = {
    "layernorm.values": ("LayerNorm: matches nn.LayerNorm with random weight, bias and eps=0.5",
                         _compare_ln(LN_VALUE_CASES)),
    "layernorm.hidden": ("LayerNorm: default eps, 2-d and 4-d inputs, d_model = 2",
                         _compare_ln(LN_HIDDEN_CASES)),
    "layernorm.params": ("LayerNorm: parameters weight (ones) and bias (zeros) of shape "
                         "(d_model,)", _compare_ln_params),
    "layernorm.normalised": ("LayerNorm: with weight 1 and bias 0 every token has mean 0 and "
                             "variance 1", _compare_normalised),
    "layernorm.independent": ("LayerNorm: tokens and batch items are normalised independently; "
                              "shift and scale do not matter", _compare_independent),
    "ff.relu": ("FeedForward: linear2(relu(linear1(x))) matches the reference",
                _compare_ff(FF_RELU_CASES)),
    "ff.gelu": ("FeedForward: activation=\"gelu\" is the exact GELU", _compare_ff(FF_GELU_CASES)),
    "ff.hidden": ("FeedForward: more sizes; the same MLP at every position",
                  _compare_ff(FF_HIDDEN_CASES)),
    "encoder.layout": ("EncoderLayer: self_attn, ff, norm1 and norm2 exist, are separate, and "
                       "receive eps and activation", _compare_layout),
    "encoder.post_norm": ("EncoderLayer: post-norm, x = norm(x + sublayer(x)), matches the "
                          "reference", _compare_encoder(POST_CASES)),
    "encoder.post_norm_hidden": ("EncoderLayer: post-norm with gelu, eps, one token and a mask",
                                 _compare_encoder(POST_HIDDEN_CASES)),
    "encoder.torch_post": ("EncoderLayer: post-norm equals torch.nn.TransformerEncoderLayer",
                           _compare_encoder(TORCH_POST_CASES, "torch")),
    "encoder.pre_norm": ("EncoderLayer: pre-norm, x = x + sublayer(norm(x)), matches the "
                         "reference", _compare_encoder(PRE_CASES)),
    "encoder.pre_norm_hidden": ("EncoderLayer: pre-norm with gelu, eps, one token and a mask",
                                _compare_encoder(PRE_HIDDEN_CASES)),
    "encoder.torch_pre": ("EncoderLayer: pre-norm equals torch.nn.TransformerEncoderLayer",
                          _compare_encoder(TORCH_PRE_CASES, "torch")),
    "encoder.mask_weights": ("EncoderLayer: the mask reaches self-attention; return_weights "
                             "gives per-head weights", _compare_weights(WEIGHT_CASES)),
    "encoder.mask_hidden": ("EncoderLayer: padding masks, per-head weights in both placements",
                            _compare_weights(WEIGHT_HIDDEN_CASES)),
}
