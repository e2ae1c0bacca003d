"""The kernel half of the toolkit for checks of learner modules (classes), shared by every
lesson that builds one: a LayerNorm, an EncoderLayer, a DecoderLayer, a TinyGPT, a positional
embedding, an RMSNorm, a LlamaBlock...

It runs in the learner's kernel (under ``grade`` it is copied into the sandbox next to
``_core``), so it holds no reference kernel and no answer. What it offers:

* ``ModuleCase``: a mixin for frozen dataclass cases, ``desc`` and ``args() -> (args,
  kwargs)`` (only what the case passes, so a left-out argument takes the learner's default),
  and ``built``, the call as the learner would write it (``LayerNorm(8, eps=0.5)``).
* ``NormCase`` (a norm over the last axis: shape, eps or None for the default, seed) and
  ``LayerArgs`` (a Transformer layer: d_model, n_heads, d_ff, norm_first, activation, eps);
  ``layer_params(seed, d_model, d_ff, attentions, norms)``, a layer's fixed-seed parameters.
* ``build_and_load(cls, args, kwargs, params)``: the learner's module built without touching
  the global random stream (``_core.build_module``), fixed parameters loaded by name
  (``_core.load_params``); returns ``(module, {"construct": Outcome, "seen": {path: status}})``.
* ``record_modules(cases, params, run, replacements=...)``: the record half "build from each
  case, load its parameters, run it", ``{case.desc: info}``, with the learner's earlier
  exercises replaced by stand-ins while it runs (one mistake costs once, ``_core.stand_ins``).
* ``record_cases(cases, one, replacements=...)``: the same over cases for any object
  (functions included): ``{case.desc: one(obj, case)}``.
* ``parameter_list``, ``same_parts``, ``record_parts``: what a built module holds (names and
  shapes of its parameters, parts that are one and the same module, each part run alone).
* Stand-in building blocks written from basic operations (``StandInLayerNorm``,
  ``StandInFeedForward``, ``StandInRMSNorm``, ``StandInSwiGLU``): a lesson's ``cases.py``
  hands them to ``record_modules(replacements=...)`` and lists them as forbidden in the
  Guard of the exercise they stand in for (``stand_in_kernels``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
import torch.nn as nn

from ._core import Outcome, build_module, built_text, call, load_params, stand_ins

ATTN_NAMES = ("q_proj", "k_proj", "v_proj", "out_proj")  # MultiHeadAttention's projections


# ----------------------------------------------------------------------------- cases


class ModuleCase:
    """A case that builds a module: ``desc``, ``args() -> (args, kwargs)``, ``built``."""

    desc: str
    NAME: ClassVar[str] = "Module"  # the class name used in messages: Name(8, eps=0.5)

    def args(self) -> tuple[tuple, dict]:
        raise NotImplementedError

    @property
    def built(self) -> str:
        args, kwargs = self.args()
        return built_text(self.NAME, args, kwargs)


class NormCase(ModuleCase):
    """A norm over the last axis (LayerNorm, RMSNorm): ``shape`` of the input, ``eps`` (None:
    built without it, so ``DEFAULT_EPS`` applies), ``seed``. Subclasses are frozen dataclasses
    with these fields first."""

    shape: tuple[int, ...]
    eps: float | None
    seed: int
    DEFAULT_EPS: ClassVar[float] = 1e-5

    @property
    def d(self) -> int:
        return self.shape[-1]

    @property
    def eps_value(self) -> float:
        return self.DEFAULT_EPS if self.eps is None else self.eps

    def args(self) -> tuple[tuple, dict]:
        return ((self.d,), {} if self.eps is None else {"eps": self.eps})


class LayerArgs(ModuleCase):
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


def layer_params(seed: int, d_model: int, d_ff: int, attentions: Iterable[str] = ("self_attn",),
                 norms: Iterable[str] = ("norm1", "norm2")) -> dict[str, torch.Tensor]:
    """Fixed-seed parameters of a Transformer layer by the contract's names: each attention's
    q/k/v/out projections with biases, ``ff.linear1``/``ff.linear2``, each LayerNorm's weight
    and bias; large enough for every part to matter."""
    g = torch.Generator().manual_seed(seed)
    d, h = d_model, d_ff
    p: dict[str, torch.Tensor] = {}
    for attn in attentions:
        for name in ATTN_NAMES:
            p[f"{attn}.{name}.weight"] = 1.2 * torch.randn(d, d, generator=g) / math.sqrt(d)
            p[f"{attn}.{name}.bias"] = 0.2 * torch.randn(d, generator=g)
    p["ff.linear1.weight"] = torch.randn(h, d, generator=g) / math.sqrt(d)
    p["ff.linear1.bias"] = 0.3 * torch.randn(h, generator=g)
    p["ff.linear2.weight"] = torch.randn(d, h, generator=g) / math.sqrt(h)
    p["ff.linear2.bias"] = 0.3 * torch.randn(d, generator=g)
    for norm in norms:
        p[f"{norm}.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
        p[f"{norm}.bias"] = 0.3 * torch.randn(d, generator=g)
    return p


# ----------------------------------------------------------------------------- recording


def build_and_load(cls: Any, args: tuple, kwargs: dict, params: dict | None = None
                   ) -> tuple[Any, dict]:
    """The learner's module, built (global random stream untouched) and given ``params`` by
    name: ``(module or None, {"construct": Outcome, "seen": {path: "ok" | why not}})``."""
    module, built = build_module(cls, *args, **kwargs)
    info: dict = {"construct": built, "seen": {}}
    if module is not None and params:
        info["seen"] = load_params(module, params)
    return module, info


def record_cases(cases: Iterable[Any], one: Callable[[Any, Any], Any],
                 replacements: dict[str, Callable] | None = None) -> Callable[[Any], dict]:
    """``record(obj) -> {case.desc: one(obj, case)}``, with ``replacements`` standing in for
    the learner's earlier exercises that ``obj`` calls by name while it runs."""
    cases = list(cases)

    def record(obj: Any) -> dict:
        with stand_ins(obj, replacements or {}):
            return {case.desc: one(obj, case) for case in cases}
    return record


def record_modules(cases: Iterable[Any], params: Callable[[Any], dict] | None,
                   run: Callable[[Any, Any], dict] | None = None, *,
                   replacements: dict[str, Callable] | None = None,
                   build: Callable[[Any], tuple[tuple, dict]] | None = None,
                   ) -> Callable[[Any], dict]:
    """The record half of a module check, over cases: for each case build the learner's class
    (``build(case)`` or ``case.args()`` gives ``(args, kwargs)``), load ``params(case)`` by
    name, and add ``run(module, case)`` (a dict of Outcomes) to its info; ``{case.desc:
    info}``, ``info["forward"]`` None when the module could not be built."""

    def one(cls: Any, case: Any) -> dict:
        args, kwargs = build(case) if build is not None else case.args()
        module, info = build_and_load(cls, args, kwargs,
                                      params(case) if params is not None else None)
        info["forward"] = None
        if module is not None and run is not None:
            info.update(run(module, case))
        return info

    return record_cases(cases, one, replacements)


def parameter_list(module: Any) -> list[tuple[str, tuple[int, ...]]] | None:
    """``[(name, shape)]`` of ``module.named_parameters()``, None if that fails."""
    try:
        return [(n, tuple(p.shape)) for n, p in module.named_parameters()]
    except Exception:  # a learner's odd module never crashes the check
        return None


def same_parts(module: Any, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The pairs of named parts that are one and the same module (each sublayer needs its
    own): ``[("norm1", "norm2")]`` when ``self.norm2 = self.norm1``."""
    found = []
    for a, b in pairs:
        part = getattr(module, a, None)
        if part is not None and part is getattr(module, b, None):
            found.append((a, b))
    return found


def record_parts(module: Any, x: Any, names: Iterable[str],
                 attention: Iterable[str] = ()) -> dict[str, Outcome | None]:
    """Each named part run alone on ``x`` (``attention`` parts as ``part(x, x, x)``), to tell
    a wiring mistake from a broken part; None for a part that is missing."""
    parts: dict[str, Outcome | None] = {}
    for name in names:
        sub = getattr(module, name, None)
        parts[name] = call(sub, x) if callable(sub) else None
    for name in attention:
        sub = getattr(module, name, None)
        parts[name] = call(sub, x, x, x) if callable(sub) else None
    return parts


# ----------------------------------------------------------------------------- stand-ins
#
# Known-good building blocks from basic operations, with the contract's parameter names (so
# the fixed test weights still load into them). While a check of a later exercise runs, they
# replace the learner's own earlier exercises by name; each is forbidden in the checks of the
# exercise it stands in for (``stand_in_kernels``), so no learner can call it as their own.


def stand_in_layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) * (x - mean)).mean(-1, keepdim=True)
    return (x - mean) / (var + eps).sqrt() * weight + bias


def stand_in_rms_norm(x, weight, eps):
    return x / ((x * x).mean(-1, keepdim=True) + eps).sqrt() * weight


def _gelu(h):
    return 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))


def _relu(h):
    return h.clamp(min=0)


def _silu(h):
    return h / (1.0 + (-h).exp())


class StandInLayerNorm(nn.Module):
    """The grader's stand-in LayerNorm(d_model, eps=1e-5): weight, bias."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        return stand_in_layer_norm(x, self.weight, self.bias, self.eps)


class StandInFeedForward(nn.Module):
    """The grader's stand-in FeedForward(d_model, d_ff, activation="relu"): linear1, linear2."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu",
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.activation = activation
        self.linear1 = nn.Linear(d_model, d_ff, bias=bias)
        self.linear2 = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        act = _gelu if self.activation == "gelu" else _relu
        return self.linear2(act(self.linear1(x)))


class StandInRMSNorm(nn.Module):
    """The grader's stand-in RMSNorm(d_model, eps=1e-6): weight."""

    def __init__(self, d_model: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        return stand_in_rms_norm(x, self.weight, self.eps)


class StandInSwiGLU(nn.Module):
    """The grader's stand-in SwiGLU(d_model, d_ff): w1 (gate), w3 (up), w2 (down)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.w1 = nn.Linear(d_model, d_ff, bias=False)
        self.w3 = nn.Linear(d_model, d_ff, bias=False)
        self.w2 = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x):
        return self.w2(_silu(self.w1(x)) * self.w3(x))


def stand_in_kernels(*classes_or_functions: Any, label: str) -> list[tuple[str, Any]]:
    """Guard ``kernels=`` entries forbidding stand-ins: a class by its ``__init__`` and
    ``forward`` (subclassing or wrapping it is caught too), a function by itself."""
    found: list[tuple[str, Any]] = []
    for obj in classes_or_functions:
        if isinstance(obj, type):
            found += [(label, obj.__init__), (label, obj.forward)]
        else:
            found.append((label, obj))
    return found


def course_kernels(*specs: str) -> list[tuple[str, Any]]:
    """Guard ``kernels=`` entries for the course's own classes or functions, by NAME
    (``"EncoderLayer.forward"``, ``"residual"``), resolved from ``autograder.reference`` at
    run time, so a ``cases.py`` never imports a kernel of its own lesson (under ``grade`` it
    is a stub of the same name, caught alike). Labelled as ``Guard(course=...)`` labels."""
    import importlib

    reference = importlib.import_module("autograder.reference")
    found: list[tuple[str, Any]] = []
    for spec in specs:
        obj: Any = reference
        try:
            for part in spec.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        found.append((f"the course's own {spec.split('.')[0]} (attnlab / autograder.reference)",
                      obj))
    return found
