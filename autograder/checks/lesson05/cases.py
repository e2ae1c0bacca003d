"""Lesson 05's cases and record halves (run in the learner's kernel: no answers here).

Every case is rebuilt from a fixed seed on both sides. ``LearnedPositionalEmbedding`` is
built without touching the global random stream and given a fixed-seed table in
``embedding.weight``.

One mistake costs once: an ``apply_rope`` may reuse the learner's own
``sinusoidal_encoding`` (its sines and cosines are those of RoPE's angles for the default
positions and base), so the RoPE checks run it with a known-good stand-in in its place; the
sinusoidal checks judge the learner's own, and forbid the stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .._core import Guard, call, stand_ins
from .._modules import course_kernels, record_cases, stand_in_kernels

# --------------------------------------------------------------------------- sinusoidal


def stand_in_sinusoidal_encoding(max_len: int, d_model: int) -> Tensor:
    """Known-good sinusoidal table for checks of exercises that call the learner's (one
    mistake costs once). Forbidden in the sinusoidal checks themselves."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    angle = pos / 10000 ** (torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)
    return torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(-2)[:, :d_model]


STAND_INS = {"sinusoidal_encoding": stand_in_sinusoidal_encoding}


def sin_guard() -> Guard:
    return Guard((), [*course_kernels("sinusoidal_encoding"),
                      *stand_in_kernels(stand_in_sinusoidal_encoding,
                                        label="the grader's stand-in sinusoidal_encoding")])


@dataclass(frozen=True)
class SinCase:
    """sinusoidal_encoding(max_len, d_model), with an even d_model."""

    max_len: int
    d_model: int

    @property
    def desc(self) -> str:
        return f"max_len={self.max_len}, d_model={self.d_model}"


def sin_cases(hidden: bool) -> list[SinCase]:
    if not hidden:
        return [SinCase(6, 8), SinCase(50, 16)]
    return [SinCase(n, d) for n, d in [(1, 2), (3, 4), (7, 10), (100, 64), (20, 128), (128, 6)]]


def call_sin(fn, case: SinCase):
    return call(fn, case.max_len, case.d_model, guard=sin_guard())


PROP_SIN = SinCase(64, 32)


def record_sin_properties(fn) -> dict:
    return {"table": call_sin(fn, PROP_SIN)}


# --------------------------------------------------------------------------- learned embedding


def lpe_guard() -> Guard:
    return Guard((), course_kernels("LearnedPositionalEmbedding.forward"))


@dataclass(frozen=True)
class LpeCase:
    """LearnedPositionalEmbedding(max_len, d_model) on x of shape (B, L, d_model)."""

    desc: str
    max_len: int
    d_model: int
    B: int
    L: int
    seed: int


def lpe_table(case: LpeCase) -> Tensor:
    return torch.randn(case.max_len, case.d_model,
                       generator=torch.Generator().manual_seed(case.seed))


def lpe_inputs(case: LpeCase, B: int | None = None, L: int | None = None) -> Tensor:
    """x (B, L, d_model) for the case (or another batch and length, same seed)."""
    return torch.randn(case.B if B is None else B, case.L if L is None else L, case.d_model,
                       generator=torch.Generator().manual_seed(case.seed + 1))


def lpe_grad_out(case: LpeCase) -> Tensor:
    return torch.randn(case.B, case.L, case.d_model,
                       generator=torch.Generator().manual_seed(case.seed + 2))


def build_lpe(cls, case: LpeCase) -> tuple[object, dict]:
    """The learner's module with a fixed-seed table in ``embedding.weight``; what we saw."""
    holder: dict = {}

    def construct():
        with torch.random.fork_rng():  # their init draws from the global stream: restore it
            holder["m"] = cls(case.max_len, case.d_model)

    info: dict = {"construct": call(construct, guard=lpe_guard())}
    module = holder.get("m")
    if module is None:
        return None, info
    info["module"] = isinstance(module, torch.nn.Module)
    try:
        emb = getattr(module, "embedding", None)
    except Exception:
        emb = None
    weight = getattr(emb, "weight", None)
    info["attr"] = None if emb is None else {
        "kind": type(emb).__name__,
        "embedding": isinstance(emb, torch.nn.Embedding),
        "weight_shape": tuple(weight.shape) if isinstance(weight, Tensor) else None,
        "trainable": isinstance(weight, torch.nn.Parameter) and weight.requires_grad,
    }
    if info["attr"] and info["attr"]["weight_shape"] == (case.max_len, case.d_model):
        try:
            with torch.no_grad():
                weight.copy_(lpe_table(case))
        except Exception as exc:
            info["attr"]["load_error"] = f"{type(exc).__name__}: {exc}"
    return module, info


LPE_LAYOUT = LpeCase("LearnedPositionalEmbedding(10, 8)", 10, 8, 1, 1, 501)
LPE_VALUES = [
    LpeCase("max_len=10, d_model=8, x of shape (2, 7, 8)", 10, 8, 2, 7, 502),
    LpeCase("max_len=5, d_model=4, x of shape (3, 5, 4): L = max_len", 5, 4, 3, 5, 503),
]
LPE_HIDDEN = [
    LpeCase("max_len=6, d_model=4, x of shape (3, 1, 4): one token", 6, 4, 3, 1, 7501),
    LpeCase("max_len=64, d_model=16, x of shape (2, 33, 16)", 64, 16, 2, 33, 7502),
    LpeCase("max_len=9, d_model=12, x of shape (1, 9, 12)", 9, 12, 1, 9, 7503),
    LpeCase("max_len=20, d_model=6, x of shape (5, 3, 6)", 20, 6, 5, 3, 7504),
]
LPE_GRAD = LpeCase("max_len=8, d_model=4, x of shape (2, 5, 4)", 8, 4, 2, 5, 7505)
TOO_LONG = LpeCase("max_len=6, d_model=4", 6, 4, 2, 6, 503)  # L = max_len fits


def grad_probe(module, x: Tensor, g_out: Tensor) -> Tensor:
    """The gradient of sum(out * g_out) with respect to the embedding table."""
    (module(x) * g_out).sum().backward()
    return module.embedding.weight.grad


def lpe_forward(cls, case: LpeCase) -> dict:
    module, info = build_lpe(cls, case)
    if module is not None:
        info["forward"] = call(module, lpe_inputs(case), guard=lpe_guard())
    return info


def lpe_gradient(cls, case: LpeCase) -> dict:
    module, info = build_lpe(cls, case)
    if module is not None:
        info["grad"] = call(grad_probe, module, lpe_inputs(case), lpe_grad_out(case),
                            guard=lpe_guard())
    return info


def record_lpe(cases: list[LpeCase], grad: bool = False):
    forward = record_cases(cases, lpe_forward)

    def record(cls) -> dict:
        rec = forward(cls)
        if grad:
            rec["grad"] = lpe_gradient(cls, LPE_GRAD)
        return rec
    return record


def record_lpe_layout(cls) -> dict:
    return build_lpe(cls, LPE_LAYOUT)[1]


def record_too_long(cls) -> dict:
    case = TOO_LONG
    module, info = build_lpe(cls, case)
    if module is not None:
        info["fits"] = call(module, lpe_inputs(case), guard=lpe_guard())
        info["long"] = call(module, lpe_inputs(case, L=case.max_len + 1), guard=lpe_guard())
        info["longer"] = call(module, lpe_inputs(case, B=1, L=3 * case.max_len),
                              guard=lpe_guard())
    return info


# --------------------------------------------------------------------------- RoPE


def rope_guard() -> Guard:
    return Guard((), course_kernels("apply_rope"))


@dataclass(frozen=True)
class RopeCase:
    """apply_rope(x of ``shape``, positions, base=...): positions None and base None are not
    passed (the defaults apply)."""

    desc: str
    shape: tuple
    positions: Tensor | None
    base: float | None
    seed: int

    @property
    def base_value(self) -> float:
        return 10000.0 if self.base is None else self.base


def rope_x(case: RopeCase) -> Tensor:
    return torch.randn(*case.shape, generator=torch.Generator().manual_seed(case.seed))


ROPE_VALUES = [
    RopeCase("x of shape (2, 6, 8), default positions", (2, 6, 8), None, None, 521),
    RopeCase("x of shape (2, 3, 5, 16) = (B, H, L, d_head), default positions", (2, 3, 5, 16),
             None, None, 522),
]
ROPE_HIDDEN = [
    RopeCase("x of shape (7, 4), default positions", (7, 4), None, None, 7521),
    RopeCase("x of shape (1, 1, 1, 2): one token at position 0", (1, 1, 1, 2), None, None,
             7522),
    RopeCase("x of shape (2, 2, 9, 32)", (2, 2, 9, 32), None, None, 7523),
    RopeCase("x of shape (3, 40, 64)", (3, 40, 64), None, None, 7524),
    RopeCase("x of shape (5, 2, 6, 12)", (5, 2, 6, 12), None, None, 7525),
]
ROPE_POSITIONS = [
    RopeCase("x of shape (2, 5, 8), positions [3, 0, 7, 7, 100]", (2, 5, 8),
             torch.tensor([3, 0, 7, 7, 100]), None, 523),
    RopeCase("x of shape (2, 6, 8), default positions, base=1000", (2, 6, 8), None, 1000.0,
             524),
    RopeCase("x of shape (3, 4, 6), positions 10..13, base=500", (3, 4, 6),
             torch.arange(10, 14), 500.0, 525),
]


def rope_call(fn, case: RopeCase):
    x = rope_x(case)
    args = (x,) if case.positions is None else (x, case.positions.clone())
    kwargs = {} if case.base is None else {"base": case.base}
    return call(fn, *args, guard=rope_guard(), **kwargs)


def rope_prop_inputs() -> dict:
    g = torch.Generator().manual_seed(7530)
    q = torch.randn(6, 16, generator=g)  # (L, d_head)
    k = torch.randn(6, 16, generator=g)
    pos = torch.tensor([0, 3, 4, 10, 11, 50])
    return {"x": torch.randn(2, 3, 8, 16, generator=g) * 3, "q": q, "k": k, "pos": pos,
            "shift": 37}


def record_rope_properties(fn) -> dict:
    c = rope_prop_inputs()
    guard = rope_guard
    with stand_ins(fn, STAND_INS):
        return {
            "norms": call(fn, c["x"], guard=guard()),
            "first": call(fn, c["q"], guard=guard()),
            "q": call(fn, c["q"], c["pos"], guard=guard()),
            "k": call(fn, c["k"], c["pos"], guard=guard()),
            "q_shift": call(fn, c["q"], c["pos"] + c["shift"], guard=guard()),
            "k_shift": call(fn, c["k"], c["pos"] + c["shift"], guard=guard()),
        }


# --------------------------------------------------------------------------- ALiBi


def alibi_guard() -> Guard:
    return Guard((), course_kernels("alibi_bias"))


@dataclass(frozen=True)
class AlibiCase:
    """alibi_bias(n_heads, L)."""

    n_heads: int
    L: int

    @property
    def desc(self) -> str:
        return f"n_heads={self.n_heads}, L={self.L}"


def alibi_cases(hidden: bool) -> list[AlibiCase]:
    if not hidden:
        return [AlibiCase(4, 5), AlibiCase(8, 6), AlibiCase(6, 5)]
    return [AlibiCase(H, L) for H, L in [(1, 3), (2, 1), (3, 4), (12, 7), (16, 10)]]


ALIBI_PROP = [AlibiCase(8, 9), AlibiCase(6, 5)]


def call_alibi(fn, case: AlibiCase):
    return call(fn, case.n_heads, case.L, guard=alibi_guard())


RECORDS = {
    "sinusoidal.values": record_cases(sin_cases(False), call_sin),
    "sinusoidal.hidden": record_cases(sin_cases(True), call_sin),
    "sinusoidal.properties": record_sin_properties,
    "learned.layout": record_lpe_layout,
    "learned.values": record_lpe(LPE_VALUES),
    "learned.hidden": record_lpe(LPE_HIDDEN, grad=True),
    "learned.too_long": record_too_long,
    "rope.values": record_cases(ROPE_VALUES, rope_call, STAND_INS),
    "rope.hidden": record_cases(ROPE_HIDDEN, rope_call, STAND_INS),
    "rope.positions": record_cases(ROPE_POSITIONS, rope_call, STAND_INS),
    "rope.properties": record_rope_properties,
    "alibi.values": record_cases(alibi_cases(False), call_alibi),
    "alibi.hidden": record_cases(alibi_cases(True), call_alibi),
    "alibi.properties": record_cases(ALIBI_PROP, call_alibi),
}
