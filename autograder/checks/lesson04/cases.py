"""Lesson 04's cases and record halves (run in the learner's kernel: no answers here).

No stand-ins here: none of lesson 04's exercises is handed another of the learner's. The
masks ``masked_attention`` is run with are built below, not with the learner's (or the
course's) ``causal_mask``/``padding_mask``, and ``leaks_future`` is handed models built
below; a ``masked_attention`` that calls the course's attention is caught by its Guard.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .._attention_cases import COURSE_ATTENTION, course_kernels, randn
from .._core import Guard, Outcome, call

# --------------------------------------------------------------------------- causal_mask


def causal_guard() -> Guard:
    return Guard((), course=["causal_mask"])


def causal_cases(hidden: bool) -> list[int]:
    return [2, 3, 7, 16] if hidden else [4, 1]


def record_causal(hidden: bool):
    def record(fn) -> dict:
        return {"cases": [call(fn, L, guard=causal_guard()) for L in causal_cases(hidden)]}
    return record


# --------------------------------------------------------------------------- padding_mask


def padding_guard() -> Guard:
    return Guard((), course=["padding_mask"])


def padding_cases(hidden: bool) -> list[tuple[str, list[int], int]]:
    """(how lengths is passed, lengths, max_len)."""
    if not hidden:
        return [("list", [3, 1, 4], 4), ("list", [2, 5], 6)]
    return [("tensor", [0, 2, 3], 3), ("tensor", [1, 1, 1, 1], 7), ("list", [5], 5),
            ("list", [4, 0], 4), ("tuple", [6, 2, 9], 10)]


def lengths_arg(kind: str, lengths: list[int]):
    if kind == "tensor":
        return torch.tensor(lengths)
    return tuple(lengths) if kind == "tuple" else list(lengths)


def record_padding(hidden: bool):
    def record(fn) -> dict:
        return {"cases": [call(fn, lengths_arg(kind, lengths), max_len, guard=padding_guard())
                          for kind, lengths, max_len in padding_cases(hidden)]}
    return record


# --------------------------------------------------------------------------- masked_attention


def masked_guard() -> Guard:
    return Guard(["attention"], course_kernels(COURSE_ATTENTION, "masked_attention",
                                               "attention._attention_weights"))


def random_mask(g: torch.Generator, shape: tuple[int, ...], empty_rows: int = 0) -> Tensor:
    """Random bool mask; each row has an allowed and a blocked key, except ``empty_rows``
    rows (chosen at random in the flattened leading axes) that block every key."""
    mask = torch.rand(shape, generator=g) < 0.5
    Lk = shape[-1]
    yes = torch.randint(0, Lk, shape[:-1], generator=g)
    no = (yes + 1 + torch.randint(0, max(Lk - 1, 1), shape[:-1], generator=g)) % Lk
    mask = (mask | torch.nn.functional.one_hot(yes, Lk).bool()) & \
        ~torch.nn.functional.one_hot(no, Lk).bool()
    if empty_rows:
        flat = mask.view(-1, Lk)
        rows = torch.randperm(flat.size(0), generator=g)[:empty_rows]
        flat[rows] = False
    return mask


# The inputs of the masked_attention cases are built here, not with the course's
# causal_mask/padding_mask: the record half runs in the learner's kernel when a class is
# graded, and lesson 04's own kernels stay withheld there.


def causal(L: int) -> Tensor:
    return torch.ones(L, L, dtype=torch.bool).tril()  # (L, L), True where j <= i


def padding(lengths: list[int], L: int, left: bool = False) -> Tensor:
    mask = torch.arange(L)[None, :] < torch.tensor(lengths, dtype=torch.long)[:, None]
    mask = mask[:, None, None, :]  # (B, 1, 1, L)
    return mask.flip(-1) if left else mask


@dataclass(frozen=True)
class AttnCase:
    desc: str
    q: Tensor
    k: Tensor
    v: Tensor
    mask: Tensor


def attn_case(desc: str, g: torch.Generator, lead: tuple, Lq: int, Lk: int, d_k: int, d_v: int,
              mask: Tensor | Callable[[], Tensor]) -> AttnCase:
    q, k, v = randn(g, *lead, Lq, d_k), randn(g, *lead, Lk, d_k), randn(g, *lead, Lk, d_v)
    mask = mask() if callable(mask) else mask
    desc = (f"{desc}: q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
            f"mask {tuple(mask.shape)}")
    return AttnCase(desc, q, k, v, mask)


def value_cases(hidden: bool) -> list[AttnCase]:
    """Every query keeps at least one key; masks of several broadcastable shapes."""
    g = torch.Generator().manual_seed(7401 if hidden else 401)
    if not hidden:
        return [
            attn_case("a padding mask (B, 1, 1, Lk) over heads", g, (2, 3), 4, 6, 8, 5,
                      padding([6, 3], 6)),
            attn_case("an (Lq, Lk) mask shared by the batch", g, (2,), 5, 5, 4, 4,
                      lambda: random_mask(g, (5, 5))),
        ]
    mask = causal(5)
    return [
        attn_case("a causal mask", g, (1, 2), 5, 5, 8, 8, mask),
        attn_case("padding & causal, right padding (B, 1, L, L)", g, (2, 2), 5, 5, 4, 6,
                  padding([5, 2], 5) & mask),
        attn_case("a per-head mask (B, H, Lq, Lk)", g, (2, 3), 4, 6, 8, 8,
                  lambda: random_mask(g, (2, 3, 4, 6))),
        attn_case("cross-attention, Lq != Lk, with padding", g, (3, 2), 3, 7, 6, 5,
                  padding([7, 4, 1], 7)),
        attn_case("no batch axes", g, (), 4, 6, 8, 3, lambda: random_mask(g, (4, 6))),
        attn_case("a (B, 1, Lq, Lk) mask", g, (2, 2), 3, 4, 16, 4,
                  lambda: random_mask(g, (2, 1, 3, 4))),
    ]


def empty_cases(hidden: bool) -> list[AttnCase]:
    """Masks with fully masked query rows."""
    g = torch.Generator().manual_seed(7402 if hidden else 402)
    mask = causal(5)
    cases = [
        attn_case("left padding & causal: the padding queries at the front see nothing", g,
                  (2, 2), 5, 5, 8, 6, padding([5, 3], 5, left=True) & mask),
        attn_case("a random mask with some all-False rows, and an empty sequence (length 0)",
                  g, (3,), 4, 6, 8, 5, lambda: random_mask(g, (3, 4, 6), empty_rows=2)
                  & padding([6, 4, 0], 6)[:, 0]),
    ]
    if hidden:
        cases.append(attn_case("every key of every query masked", g, (2,), 3, 4, 4, 4,
                               torch.zeros(3, 4, dtype=torch.bool)))
    return cases


def property_cases() -> dict[str, AttnCase]:
    g = torch.Generator().manual_seed(7403)
    # "exact": moderate scores, many blocked keys.  "large": key 0 (blocked for every query)
    # scores about 120 more than any allowed key, so e^(allowed - blocked) underflows to 0.
    base = randn(g, 8)
    base = base / base.norm() * math.sqrt(8)  # (8,)
    q = 3 * base + 0.1 * randn(g, 1, 3, 8)  # (1, 3, 8): every query points along base
    k = randn(g, 1, 5, 8)
    k[:, 0] = 15 * base / base.norm() * math.sqrt(8)
    blocked0 = torch.ones(3, 5, dtype=torch.bool)
    blocked0[:, 0] = False
    blocked0[1, 3] = False
    v = randn(g, 1, 5, 4)
    return {
        "exact": attn_case("many masked keys", g, (2, 2), 6, 8, 8, 4,
                           lambda: (torch.rand(2, 1, 6, 8, generator=g) < 0.3)
                           | torch.nn.functional.one_hot(torch.arange(6), 8).bool()),
        "large": AttnCase(f"a blocked key whose score is about 120 above the allowed ones: "
                          f"q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}, "
                          f"mask {tuple(blocked0.shape)}", q, k, v, blocked0),
    }


def call_masked(fn, case: AttnCase) -> Outcome:
    return call(fn, case.q.clone(), case.k.clone(), case.v.clone(), case.mask.clone(),
                guard=masked_guard())


def record_masked(cases: Callable[[], list[AttnCase]]):
    def record(fn) -> dict:
        return {"cases": [call_masked(fn, case) for case in cases()]}
    return record


def grad_probe(fn, q: Tensor, k: Tensor, v: Tensor, mask: Tensor, g_out: Tensor,
               g_w: Tensor) -> dict:
    """Backpropagate a fixed loss through fn; return the gradients reaching q, k and v."""
    q, k, v = (t.clone().requires_grad_() for t in (q, k, v))
    out, w = fn(q, k, v, mask)
    ((out * g_out).sum() + (w * g_w).sum()).backward()
    return {"q": q.grad, "k": k.grad, "v": v.grad}


def grad_cases() -> list[tuple[AttnCase, Tensor, Tensor]]:
    g = torch.Generator().manual_seed(7404)
    out = []
    for case in empty_cases(hidden=False):
        lead = torch.broadcast_shapes(case.q.shape[:-1] + case.k.shape[-2:-1],
                                      case.mask.shape)  # (..., Lq, Lk)
        g_out = randn(g, *case.q.shape[:-1], case.v.size(-1))
        out.append((case, g_out, randn(g, *lead)))
    return out


def record_grad(fn) -> dict:
    return {"cases": [call(grad_probe, fn, c.q, c.k, c.v, c.mask, g_out, g_w,
                           guard=masked_guard()) for c, g_out, g_w in grad_cases()]}


def record_properties(fn) -> dict:
    return {name: call_masked(fn, case) for name, case in property_cases().items()}


# --------------------------------------------------------------------------- leaks_future


def _tril(L: int) -> Tensor:
    return torch.ones(L, L, dtype=torch.bool).tril()  # (L, L)


def _head(d: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(4040 + d)
    return tuple(torch.randn(d, d, generator=g) * (1.5 / math.sqrt(d)) for _ in range(3))


def _attention_model(d: int, mode: str) -> Callable[[Tensor], Tensor]:
    """Self-attention on x (..., L, d); mode "none", "causal" or "renorm" (masked after the
    softmax, then renormalised)."""
    W_q, W_k, W_v = _head(d)

    def model(x: Tensor) -> Tensor:
        q, k, v = x @ W_q, x @ W_k, x @ W_v  # (..., L, d)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (..., L, L)
        allowed = _tril(x.size(-2))
        if mode == "causal":
            scores = scores.masked_fill(~allowed, float("-inf"))
        w = torch.softmax(scores, dim=-1)
        if mode == "renorm":
            w = w * allowed
            w = w / w.sum(-1, keepdim=True)
        return w @ v  # (..., L, d)
    return model


def _cummean(x: Tensor) -> Tensor:
    n = torch.arange(1, x.size(-2) + 1, dtype=x.dtype)[:, None]  # (L, 1)
    return x.cumsum(-2) / n


def _with(base: Callable[[Tensor], Tensor], extra: Callable[[Tensor, Tensor], Tensor]):
    def model(x: Tensor) -> Tensor:
        return extra(base(x).clone(), x)
    return model


def _add_at(pos: int, src: int, scale: float = 0.5):
    def extra(out: Tensor, x: Tensor) -> Tensor:
        out[..., pos, :] = out[..., pos, :] + scale * x[..., src, :]
        return out
    return extra


def _next_added(x: Tensor) -> Tensor:
    return torch.cat([x[..., :-1, :] + x[..., 1:, :], x[..., -1:, :]], dim=-2)  # (..., L, d)


def _plus_reversed(d: int) -> Callable[[Tensor], Tensor]:
    base = _attention_model(d, "causal")
    return lambda x: base(x) + 1e-3 * x.flip(-2)


# The panel of models the detector is run on, by number. Their names, whether each one leaks
# and what it does stay with the verdicts, in the same order.
BUILDERS: tuple[Callable[[int], Callable[[Tensor], Tensor]], ...] = (  # d_model -> fn(x)
    lambda d: _attention_model(d, "none"),
    lambda d: _attention_model(d, "causal"),
    lambda d: lambda x: x.clone(),
    lambda d: _cummean,
    lambda d: lambda x: x.flip(-2).cumsum(-2).flip(-2),
    lambda d: _next_added,
    lambda d: lambda x: _cummean(x) + 0.5 * x[..., -1:, :],
    lambda d: _with(_cummean, _add_at(0, 1)),
    lambda d: _with(lambda x: x, _add_at(-2, -1)),
    _plus_reversed,
    lambda d: _attention_model(d, "renorm"),
    lambda d: lambda x: x.sum(-2, keepdim=True) - x.flip(-2).cumsum(-2).flip(-2) + x,
)


def panel(hidden: bool) -> list[tuple[int, int, int, int]]:
    """(model number in BUILDERS, L, d_model, generator seed) for each run of the detector."""
    if not hidden:
        return [(n, 6, 8, 404 + n) for n in range(5)]  # models 0-4
    runs = [
        (0, 2, 3), (0, 12, 16),
        (1, 2, 4), (1, 9, 8),
        (2, 3, 1), (3, 12, 5), (4, 3, 2),
        (5, 7, 4), (5, 2, 1),
        (6, 5, 4), (6, 11, 8),
        (7, 6, 3), (7, 10, 8),
        (8, 5, 2), (8, 9, 6),
        (9, 6, 8), (9, 12, 16),
        (10, 9, 8), (10, 12, 16),
        (11, 9, 8), (11, 12, 16), (11, 7, 4),
    ]
    return [(n, L, d, 7404 + 10 * i) for i, (n, L, d) in enumerate(runs)]


def leak_guard() -> Guard:
    return Guard((), course=["leaks_future"])


def run_detector(fn, number: int, L: int, d: int, seed: int) -> dict:
    model = BUILDERS[number](d)
    with torch.random.fork_rng():
        before = torch.random.get_rng_state()
        out = call(fn, model, L, d, torch.Generator().manual_seed(seed), guard=leak_guard())
        used_global = not torch.equal(before, torch.random.get_rng_state())
    return {"out": out, "global": used_global}


def record_leaks(hidden: bool):
    def record(fn) -> dict:
        return {"runs": [run_detector(fn, *run) for run in panel(hidden)]}
    return record


RECORDS = {
    "causal_mask.values": record_causal(False),
    "causal_mask.hidden": record_causal(True),
    "padding_mask.values": record_padding(False),
    "padding_mask.hidden": record_padding(True),
    "masked_attention.values": record_masked(lambda: value_cases(False)),
    "masked_attention.hidden": record_masked(lambda: value_cases(True)),
    "masked_attention.empty_rows": record_masked(lambda: empty_cases(False)),
    "masked_attention.empty_rows_hidden": record_masked(lambda: empty_cases(True)),
    "masked_attention.gradients": record_grad,
    "masked_attention.properties": record_properties,
    "leaks_future.basic": record_leaks(False),
    "leaks_future.panel": record_leaks(True),
}
