"""Checks for lesson 03, multi-head attention: ``split_heads``, ``merge_heads`` and
``MultiHeadAttention``.

Every case is rebuilt from a fixed seed on both sides. For the class, ``record`` builds the
learner's module, overwrites its four linear maps (``q_proj, k_proj, v_proj, out_proj``)
with fixed-seed weights and records what ``forward`` returns; ``compare`` loads the same
weights into the reference module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from autograder.reference import MultiHeadAttention as RefMHA
from autograder.reference import merge_heads as ref_merge
from autograder.reference import split_heads as ref_split

from ._core import (
    Guard,
    Outcome,
    as_array,
    call,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
    register,
    unpack_pair,
)

OURS = "the course's own {} (attnlab / autograder.reference)"


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# --------------------------------------------------------------------------- split_heads


def _split_guard() -> Guard:
    return Guard((), [(OURS.format("split_heads"), ref_split),
                      (OURS.format("merge_heads"), ref_merge)])


def _split_cases(hidden: bool) -> list[tuple[str, torch.Tensor, int]]:
    """(description, x of shape (B, L, d_model), n_heads): fixed seeds, nothing stored."""
    g = torch.Generator().manual_seed(7301 if hidden else 301)
    if not hidden:
        return [
            ("B=1, L=3, d_model=8, 2 heads", torch.randn(1, 3, 8, generator=g), 2),
            ("B=2, L=5, d_model=12, 3 heads", torch.randn(2, 5, 12, generator=g), 3),
        ]
    return [
        ("B=3, L=4, d_model=16, 4 heads (L = H = d_head)", torch.randn(3, 4, 16, generator=g), 4),
        ("B=2, L=6, d_model=24, 6 heads", torch.randn(2, 6, 24, generator=g), 6),
        ("one head", torch.randn(2, 3, 5, generator=g), 1),
        ("d_head = 1", torch.randn(1, 4, 6, generator=g), 6),
        ("a non-contiguous input (B=3, L=7, d_model=12, 3 heads, made by a transpose)",
         torch.randn(7, 3, 12, generator=g).transpose(0, 1), 3),
        ("a non-contiguous input (B=2, L=5, d_model=10, 2 heads, features strided)",
         torch.randn(2, 10, 5, generator=g).transpose(1, 2), 2),
    ]


def _split_mistakes(x: torch.Tensor, H: int) -> dict[str, np.ndarray]:
    B, L, D = x.shape
    dh = D // H
    x = x.contiguous()
    return {
        "It matches `x.view(B, H, L, d_head)`: reshaping straight to the final shape cuts the "
        "flat memory in the wrong places, so each head gets whole tokens instead of a slice of "
        "every token. Reshape to (B, L, H, d_head) first, then swap L and H with "
        "`.transpose(1, 2)`.": _np(x.reshape(B, H, L, dh)),
        "Head h should hold the block of features h*d_head ... (h+1)*d_head - 1, but yours holds "
        "every H-th feature (h, h+H, h+2H, ...): you reshaped the last axis to (d_head, H). "
        "Reshape it to (n_heads, d_head), in that order.":
            _np(x.reshape(B, L, dh, H).permute(0, 3, 1, 2)),
        "It is still (B, L, H, d_head): the heads axis must come before L. Add "
        "`.transpose(1, 2)` after the reshape.": _np(x.reshape(B, L, H, dh)),
        "It looks like you transposed the wrong axes: after the reshape to (B, L, H, d_head) "
        "swap axes 1 (L) and 2 (H), i.e. `.transpose(1, 2)`.":
            _np(x.reshape(B, L, H, dh).transpose(1, 3)),
        "It looks like you swapped axes 2 and 3 (H and d_head) instead of 1 and 2 (L and H).":
            _np(x.reshape(B, L, H, dh).transpose(2, 3)),
    }


def _split_shape_hint(got: tuple, B: int, L: int, H: int, dh: int) -> str:
    if got == (B, L, H, dh):
        return ("That is (B, L, H, d_head): the heads axis must come before L. Add "
                "`.transpose(1, 2)` after the reshape.")
    if got in ((B, dh, L, H), (B, L, dh, H)) and H != dh:
        return ("It looks like n_heads and d_head are swapped: reshape the last axis to "
                "(n_heads, d_model // n_heads).")
    if len(got) == 4 and sorted(got) == sorted((B, L, H, dh)):
        return ("The sizes are right but in the wrong order. Reshape to (B, L, H, d_head), "
                "then swap axes 1 and 2 only.")
    if len(got) == 3 and got[0] == B * H:
        return "Keep the batch and heads axes separate: (B, H, L, d_head)."
    return "split_heads returns a 4-d tensor (B, H, L, d_head) with d_head = d_model // n_heads."


def _record_split(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, x, H, guard=_split_guard()) for desc, x, H in _split_cases(hidden)}
    return record


def _compare_split(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, x, H in _split_cases(hidden):
            got = as_array(check_outcome(rec[desc], "Your split_heads", desc),
                           "Your split_heads", desc)
            want = _np(ref_split(x, H))
            B, L, D = x.shape
            expect_shape(got, want.shape, "The result of your split_heads", desc,
                         hint=_split_shape_hint(tuple(got.shape), B, L, H, D // H))
            expect_close(got, want, "Your split_heads", desc, _split_mistakes(x, H),
                         atol=0, rtol=0)
    return compare


register("split_heads.values", "split_heads: shapes and values match the reference",
         _record_split(False), _compare_split(False))
register("split_heads.hidden", "split_heads: more shapes, one head, non-contiguous inputs",
         _record_split(True), _compare_split(True))


# --------------------------------------------------------------------------- merge_heads


def _merge_cases(hidden: bool) -> list[tuple[str, torch.Tensor]]:
    """(description, y of shape (B, H, L, d_head))."""
    g = torch.Generator().manual_seed(7302 if hidden else 302)
    if not hidden:
        return [
            ("B=1, H=2, L=3, d_head=4", torch.randn(1, 2, 3, 4, generator=g)),
            ("B=2, H=3, L=5, d_head=2", torch.randn(2, 3, 5, 2, generator=g)),
        ]
    return [
        ("B=3, H=4, L=4, d_head=4 (L = H = d_head)", torch.randn(3, 4, 4, 4, generator=g)),
        ("one head", torch.randn(2, 1, 6, 5, generator=g)),
        ("d_head = 1", torch.randn(2, 6, 3, 1, generator=g)),
        ("a non-contiguous input (made by a transpose)",
         torch.randn(2, 7, 3, 4, generator=g).transpose(1, 2)),
    ]


def _merge_mistakes(y: torch.Tensor) -> dict[str, np.ndarray]:
    B, H, L, dh = y.shape
    y = y.contiguous()
    return {
        "It matches a reshape of (B, H, L, d_head) straight to (B, L, d_model): the heads axis "
        "has to move back next to d_head first. Do `.transpose(1, 2)`, then reshape.":
            _np(y.reshape(B, L, H * dh)),
        "It looks like you transposed the wrong axes before the reshape: swap axes 1 and 2 "
        "(H and L), giving (B, L, H, d_head).": _np(y.transpose(2, 3).reshape(B, L, H * dh)),
        "The features come out interleaved (head 0's first feature, head 1's first feature, "
        "...). Head h's d_head features must stay together as the block h*d_head ... "
        "(h+1)*d_head - 1: transpose to (B, L, H, d_head), then reshape.":
            _np(y.permute(0, 2, 3, 1).reshape(B, L, H * dh)),
    }


def _merge_shape_hint(got: tuple, B: int, H: int, L: int, dh: int) -> str:
    if got == (B, L, H, dh):
        return ("That is (B, L, H, d_head): join the last two axes with "
                "`.reshape(B, L, H * d_head)`.")
    if got == (B, H * L, dh) or got == (B * H, L, dh):
        return "Move the heads axis next to d_head (`.transpose(1, 2)`), then join those two."
    return "merge_heads returns (B, L, H * d_head) = (B, L, d_model)."


VIEW_HINT = ("`.view()` needs a contiguous tensor, and a transposed tensor is not contiguous. "
             "Use `.reshape(B, L, d_model)`, or call `.contiguous()` before `.view(...)`.")


def _check_view_error(out: Outcome, what: str, desc: str) -> None:
    if out.error and "view" in out.error and ("stride" in out.error or "contiguous" in out.error):
        also = " (Look at your merge_heads.)" if what == MHA else ""
        fail(f"{what} raised a RuntimeError ({desc}): {VIEW_HINT}{also}")


def _record_merge(hidden: bool):
    def record(fn) -> dict:
        return {desc: call(fn, y, guard=_split_guard()) for desc, y in _merge_cases(hidden)}
    return record


def _compare_merge(hidden: bool):
    def compare(rec: dict) -> None:
        for desc, y in _merge_cases(hidden):
            if not rec[desc].forbidden:
                _check_view_error(rec[desc], "Your merge_heads", desc)
            got = as_array(check_outcome(rec[desc], "Your merge_heads", desc),
                           "Your merge_heads", desc)
            want = _np(ref_merge(y))
            expect_shape(got, want.shape, "The result of your merge_heads", desc,
                         hint=_merge_shape_hint(tuple(got.shape), *y.shape))
            expect_close(got, want, "Your merge_heads", desc, _merge_mistakes(y),
                         atol=0, rtol=0)
    return compare


register("merge_heads.values", "merge_heads: shapes and values match the reference",
         _record_merge(False), _compare_merge(False))
register("merge_heads.hidden", "merge_heads: more shapes, one head, a non-contiguous input",
         _record_merge(True), _compare_merge(True))


def _round_trip_cases() -> list[tuple[str, str, torch.Tensor, int]]:
    """(description, direction, tensor, n_heads)."""
    g = torch.Generator().manual_seed(7303)
    return [
        ("merge_heads(split_heads(x, 3)), x of shape (2, 5, 12)", "merge(split)",
         torch.randn(2, 5, 12, generator=g), 3),
        ("merge_heads(split_heads(x, 4)), a non-contiguous x of shape (3, 6, 8)", "merge(split)",
         torch.randn(6, 3, 8, generator=g).transpose(0, 1), 4),
        ("split_heads(merge_heads(y), 2), y of shape (2, 2, 7, 3)", "split(merge)",
         torch.randn(2, 2, 7, 3, generator=g), 2),
    ]


def _record_round_trip(pair) -> dict:
    rec: dict = {}
    try:
        split_fn, merge_fn = pair
    except (TypeError, ValueError):
        return {"_bad": True}
    for desc, direction, t, H in _round_trip_cases():
        if direction == "merge(split)":
            fn: Callable = lambda x, H=H: merge_fn(split_fn(x, H))
        else:
            fn = lambda y, H=H: split_fn(merge_fn(y), H)
        rec[desc] = call(fn, t, guard=_split_guard())
    return rec


def _compare_round_trip(rec: dict) -> None:
    if rec.get("_bad"):
        fail("This check takes the pair (split_heads, merge_heads).")
    for desc, _, t, _ in _round_trip_cases():
        what = "Your split_heads/merge_heads round trip"
        if not rec[desc].forbidden:
            _check_view_error(rec[desc], what, desc)
        got = as_array(check_outcome(rec[desc], what, desc), what, desc)
        expect_shape(got, tuple(t.shape), what, desc,
                     hint="Each function should undo the other exactly.")
        if not close(got, _np(t), atol=0, rtol=0):
            fail(f"{what} does not give back its input ({desc}). merge_heads must undo "
                 "split_heads exactly: if one reshapes to (B, L, H, d_head) and transposes "
                 "axes 1 and 2, the other transposes axes 1 and 2 back and reshapes.")


register("heads.round_trip", "split_heads and merge_heads undo each other",
         _record_round_trip, _compare_round_trip)


# --------------------------------------------------------------------------- MultiHeadAttention

NAMES = ("q_proj", "k_proj", "v_proj", "out_proj")
MHA = "Your MultiHeadAttention"


def _mha_guard() -> Guard:
    label = OURS.format("MultiHeadAttention")
    return Guard(["attention"], [(label, RefMHA.forward), (label, RefMHA.attend),
                                 (label, RefMHA.project)])


@dataclass(frozen=True)
class MhaCase:
    desc: str
    d_model: int
    n_heads: int
    B: int
    Lq: int
    Lk: int
    seed: int
    cross: bool = False  # query differs from key/value (and key differs from value)
    bias: bool = True
    mask: str = ""  # "", "random", "padding", "causal", "per_head", "padding_causal"


def _params(case: MhaCase) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    g = torch.Generator().manual_seed(case.seed)
    d = case.d_model
    out = {}
    for name in NAMES:
        w = torch.randn(d, d, generator=g) / math.sqrt(d) * 1.5
        b = 0.3 * torch.randn(d, generator=g)
        out[name] = (w, b if case.bias else None)
    return out


def _mask(case: MhaCase, g: torch.Generator) -> torch.Tensor | None:
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    rows = torch.arange(Lq)
    if case.mask in ("random", "per_head"):
        shape = (Lq, Lk) if case.mask == "random" else (B, H, Lq, Lk)
        m = torch.rand(shape, generator=g) < 0.5
        yes = torch.randint(0, Lk, shape[:-1], generator=g)  # one allowed key per row
        no = (yes + 1 + torch.randint(0, Lk - 1, shape[:-1], generator=g)) % Lk  # one blocked
        m = m | torch.nn.functional.one_hot(yes, Lk).bool()
        return m & ~torch.nn.functional.one_hot(no, Lk).bool()
    if case.mask == "padding":
        lengths = torch.tensor([Lk - 2, 2, Lk - 1, 3][:B])
        return (torch.arange(Lk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)
    causal = torch.arange(Lk)[None, :] <= rows[:, None]  # (Lq, Lk)
    if case.mask == "causal":
        return causal
    if case.mask == "padding_causal":
        lengths = torch.tensor([Lk, Lk - 2, Lk - 1][:B])
        pad = (torch.arange(Lk) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, Lk)
        return pad & causal  # (B, 1, Lq, Lk)
    return None


def _inputs(case: MhaCase):
    """(query, key, value, mask) for the case; self-attention passes one tensor three times."""
    g = torch.Generator().manual_seed(case.seed + 1)
    d = case.d_model
    x = torch.randn(case.B, case.Lq, d, generator=g)
    if case.cross:
        key = torch.randn(case.B, case.Lk, d, generator=g)
        value = torch.randn(case.B, case.Lk, d, generator=g)
    else:
        key = value = x
    return x, key, value, _mask(case, g)


def _reference(case: MhaCase) -> tuple[np.ndarray, np.ndarray]:
    with torch.random.fork_rng():
        ref = RefMHA(case.d_model, case.n_heads, bias=case.bias)
    state = {}
    for name, (w, b) in _params(case).items():
        state[f"{name}.weight"] = w
        if b is not None:
            state[f"{name}.bias"] = b
    ref.load_state_dict(state)
    with torch.no_grad():
        out, w = ref(*_inputs(case))
    return _np(out), _np(w)


def _variant(case: MhaCase, *, scale: str = "d_head", out_proj: bool = True,
             values: str = "v_proj", heads: str = "split", invert_mask: bool = False,
             softmax_dim: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The reference computation with one known mistake, for targeted messages."""
    P = _params(case)
    query, key, value, mask = _inputs(case)

    def lin(name: str, t: torch.Tensor) -> torch.Tensor:
        w, b = P[name]
        return t @ w.T + (b if b is not None else 0.0)

    H = case.n_heads
    q, k = lin("q_proj", query), lin("k_proj", key)  # (B, L, d_model)
    v = {"v_proj": lambda: lin("v_proj", value), "k_proj": lambda: lin("k_proj", value),
         "key_input": lambda: lin("v_proj", key)}[values]()
    d = case.d_model
    dh = d // H
    if heads == "one_big":
        qh, kh, vh = q[:, None], k[:, None], v[:, None]  # (B, 1, L, d_model)
    elif heads == "interleaved":
        qh, kh, vh = (t.unflatten(-1, (dh, H)).permute(0, 3, 1, 2) for t in (q, k, v))
    elif heads == "bare_view":
        qh, kh, vh = (t.reshape(t.size(0), H, t.size(1), dh) for t in (q, k, v))
    else:
        qh, kh, vh = (ref_split(t, H) for t in (q, k, v))
    s = {"d_head": math.sqrt(dh), "d_model": math.sqrt(d), "none": 1.0,
         "big_d_head": math.sqrt(dh)}[scale]
    scores = qh @ kh.transpose(-2, -1) / s
    if mask is not None:
        allowed = ~mask if invert_mask else mask
        scores = scores.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(scores, dim=softmax_dim)
    o = w @ vh
    if heads == "one_big":
        merged, w = o[:, 0], w[:, 0]
    elif heads == "interleaved":
        merged = o.permute(0, 2, 3, 1).flatten(-2)
    elif heads == "bare_view":
        merged = o.reshape(o.size(0), o.size(2), d)
    else:
        merged = ref_merge(o)
    out = lin("out_proj", merged) if out_proj else merged
    return _np(out), _np(w)


def _output_mistakes(case: MhaCase) -> dict[str, np.ndarray]:
    m = {
        "It matches the output *before* out_proj: after merging the heads, apply "
        "self.out_proj.": _variant(case, out_proj=False)[0],
        "It matches scores divided by sqrt(d_model) instead of sqrt(d_head). Each head works "
        "in d_head = d_model // n_heads dimensions, so scale by sqrt(d_head).":
            _variant(case, scale="d_model")[0],
        "It matches unscaled scores: divide q @ k^T by sqrt(d_head).":
            _variant(case, scale="none")[0],
        "It looks like the values were made with k_proj: use v_proj for the values.":
            _variant(case, values="k_proj")[0],
        "It matches one big head: attention over all d_model features at once. Split q, k and "
        "v into n_heads heads with split_heads, attend in each, then merge_heads.":
            _variant(case, heads="one_big", scale="d_model")[0],
        "It matches one big head (no split into heads, scores divided by sqrt(d_head)). Split "
        "q, k and v with split_heads, attend in each head, then merge_heads.":
            _variant(case, heads="one_big")[0],
        "It matches heads built from interleaved features (head h gets features h, h+H, ...). "
        "Use split_heads and merge_heads so that head h gets the block h*d_head ... "
        "(h+1)*d_head - 1.": _variant(case, heads="interleaved")[0],
        "It matches heads made with a bare `view(B, H, L, d_head)` (no transpose), which "
        "hands each head whole tokens instead of a slice of every token. Split with "
        "view(B, L, H, d_head) then transpose(1, 2), and merge the same way back.":
            _variant(case, heads="bare_view")[0],
        "It matches a softmax over the query axis (-2). Normalise over the keys (dim=-1).":
            _variant(case, softmax_dim=-2)[0],
    }
    if case.cross:
        m["It looks like the values were computed from the `key` argument: the values are "
          "v_proj(value).  In cross-attention key and value can differ."] = \
            _variant(case, values="key_input")[0]
    if case.mask:
        m["It matches the mask with its meaning inverted. In this course True = may attend, so "
          "block the positions where the mask is False (nn.MultiheadAttention uses the opposite "
          "convention)."] = _variant(case, invert_mask=True)[0]
    return m


def _weight_mistakes(case: MhaCase) -> dict[str, np.ndarray]:
    m = {
        "It matches scores divided by sqrt(d_model) instead of sqrt(d_head). Each head works "
        "in d_head = d_model // n_heads dimensions, so scale by sqrt(d_head).":
            _variant(case, scale="d_model")[1],
        "It matches unscaled scores: divide q @ k^T by sqrt(d_head).":
            _variant(case, scale="none")[1],
        "It matches heads built from interleaved features (head h gets features h, h+H, ...). "
        "Use split_heads so that head h gets the block h*d_head ... (h+1)*d_head - 1.":
            _variant(case, heads="interleaved")[1],
        "It matches heads made with a bare `view(B, H, L, d_head)` (no transpose), which "
        "hands each head whole tokens instead of a slice of every token. Split with "
        "view(B, L, H, d_head) then transpose(1, 2), and merge the same way back.":
            _variant(case, heads="bare_view")[1],
        "It matches a softmax over the query axis (-2). Normalise over the keys (dim=-1).":
            _variant(case, softmax_dim=-2)[1],
    }
    if case.mask:
        m["It matches the mask with its meaning inverted. In this course True = may attend, so "
          "block the positions where the mask is False (nn.MultiheadAttention uses the opposite "
          "convention)."] = np.nan_to_num(_variant(case, invert_mask=True)[1])
    return m


# ----- recording: build the learner's module, load fixed-seed weights, call forward


def _build(cls, case: MhaCase, with_bias_arg: bool) -> tuple[object, dict]:
    """The learner's module with the case's weights loaded, and what we saw while loading."""
    holder: dict = {}

    def construct():
        with torch.random.fork_rng():  # their init may draw from the global stream: restore it
            if with_bias_arg:
                holder["m"] = cls(case.d_model, case.n_heads, bias=case.bias)
            else:
                holder["m"] = cls(case.d_model, case.n_heads)

    info: dict = {"construct": call(construct, guard=_mha_guard()), "attrs": {}}
    module = holder.get("m")
    if module is None:
        return None, info
    try:
        if hasattr(module, "eval"):
            module.eval()
    except Exception:  # a learner's odd eval() never crashes the check
        pass
    for name, (w, b) in _params(case).items():
        try:
            lin = getattr(module, name, None)
        except Exception:
            lin = None
        if lin is None:
            info["attrs"][name] = {"missing": True}
            continue
        weight = getattr(lin, "weight", None)
        bias = getattr(lin, "bias", None)
        seen = {"missing": False, "kind": type(lin).__name__,
                "weight_shape": tuple(weight.shape) if isinstance(weight, torch.Tensor) else None,
                "has_bias": isinstance(bias, torch.Tensor),
                "bias_shape": tuple(bias.shape) if isinstance(bias, torch.Tensor) else None}
        try:
            with torch.no_grad():
                if seen["weight_shape"] == tuple(w.shape):
                    weight.copy_(w)
                if b is not None and seen["bias_shape"] == tuple(b.shape):
                    bias.copy_(b)
        except Exception as exc:  # e.g. a weight that is not a tensor leaf
            seen["load_error"] = f"{type(exc).__name__}: {exc}"
        info["attrs"][name] = seen
    return module, info


def _forward(module, case: MhaCase) -> Outcome:
    query, key, value, mask = _inputs(case)
    if mask is None:
        return call(module, query, key, value, guard=_mha_guard())
    return call(module, query, key, value, mask, guard=_mha_guard())


def _record_mha(cases: list[MhaCase], with_bias_arg: bool = False):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            module, info = _build(cls, case, with_bias_arg)
            info["forward"] = _forward(module, case) if module is not None else None
            rec[case.desc] = info
        return rec
    return record


# ----- comparing


def _construct_text(case: MhaCase, with_bias_arg: bool) -> str:
    extra = f", bias={case.bias}" if with_bias_arg else ""
    return f"MultiHeadAttention({case.d_model}, {case.n_heads}{extra})"


def _check_built(info: dict, case: MhaCase, with_bias_arg: bool) -> None:
    """Construction, forbidden calls, the four linear maps: everything before the values."""
    built = _construct_text(case, with_bias_arg)
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        fail(f"{MHA} calls {fwd.forbidden[0]}. This exercise asks you to build it yourself "
             "from nn.Linear, your split_heads and merge_heads, and lesson 02's "
             "scaled_dot_product_attention (from attnlab) or torch.softmax.")
    d = case.d_model
    for name in NAMES:
        seen = info["attrs"][name]
        if seen["missing"]:
            fail(f"{MHA} has no attribute `{name}`. The exercise names its four linear maps "
                 f"q_proj, k_proj, v_proj and out_proj: in __init__ write e.g. "
                 f"`self.{name} = nn.Linear(d_model, d_model, bias=bias)`.")
        if seen["weight_shape"] is None:
            fail(f"`{name}` should be an nn.Linear(d_model, d_model), but it is a "
                 f"{seen['kind']} without a weight tensor.")
        if seen["weight_shape"] != (d, d):
            fail(f"`{name}.weight` has shape {seen['weight_shape']} in {built}, but should be "
                 f"{(d, d)}: one nn.Linear(d_model, d_model) holds the projections of all heads "
                 f"at once (head h uses output features h*d_head ... (h+1)*d_head - 1).")
        if case.bias and not seen["has_bias"]:
            fail(f"`{name}` has no bias in {built}; the default is bias=True. Pass `bias=bias` "
                 f"to each nn.Linear.")
        if not case.bias and seen["has_bias"]:
            fail(f"With bias=False, `{name}` still has a bias. Pass `bias=bias` to each "
                 f"nn.Linear.")
        if seen.get("load_error"):
            fail(f"Could not load test weights into `{name}` ({seen['load_error']}). Make it a "
                 f"plain nn.Linear(d_model, d_model).")
    if fwd is None:  # pragma: no cover (only when construction failed, handled above)
        fail(f"{built} could not be built.")


def _weights_shape_hint(got: np.ndarray, case: MhaCase) -> str:
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    want_w = _reference(case)[1]
    if got.shape in ((B, Lq, Lk), (B, 1, Lq, Lk)):
        flat = got.reshape(B, Lq, Lk)
        if close(flat, want_w.mean(axis=1)):
            return ("They are the per-head weights averaged over the heads. Return one map per "
                    "head, (B, H, Lq, Lk): averaging hides what each head does (this is what "
                    "nn.MultiheadAttention does unless average_attn_weights=False).")
        big = _variant(case, heads="one_big", scale="d_model")[1]
        big2 = _variant(case, heads="one_big")[1]
        if close(flat, big) or close(flat, big2):
            return ("It looks like one big head: q, k and v were never split into heads. Use "
                    "split_heads on each, attend per head, then merge_heads.")
        return "Return one weight map per head: (B, H, Lq, Lk), not an average or a single map."
    if got.shape == (B, H, Lk, Lq):
        return "Queries index the rows: (B, H, Lq, Lk). Did you compute k @ q^T?"
    return "The weights hold one (Lq, Lk) map per head and batch item: (B, H, Lq, Lk)."


def _output_shape_hint(got: np.ndarray, case: MhaCase) -> str:
    B, H, Lq, d = case.B, case.n_heads, case.Lq, case.d_model
    if got.shape == (B, H, Lq, d // H):
        return "That is still split into heads: merge_heads, then out_proj."
    return "The output has one d_model-wide vector per query: (B, Lq, d_model)."


def _compare_one(info: dict, case: MhaCase, with_bias_arg: bool, values: bool = True) -> None:
    _check_built(info, case, with_bias_arg)
    _check_view_error(info["forward"], MHA, case.desc)
    out, w = unpack_pair(check_outcome(info["forward"], MHA, case.desc), MHA, case=case.desc)
    want_out, want_w = _reference(case)
    if w.shape != want_w.shape:
        expect_shape(w, want_w.shape, "Your weight tensor", case.desc,
                     hint=_weights_shape_hint(w, case))
    if out.shape != want_out.shape:
        expect_shape(out, want_out.shape, "Your output", case.desc,
                     hint=_output_shape_hint(out, case))
    if not values:
        return
    _check_mask(w, case)
    expect_finite(w, "Your weight tensor", case.desc,
                  hint="Did a whole row of scores become -inf? Check how you use the mask."
                  if case.mask else "")
    sums = w.sum(axis=-1)
    if not np.allclose(sums, 1.0, atol=1e-4):
        expect_close(w, want_w, "Your weight tensor", case.desc, _weight_mistakes(case),
                     hint=f"Each head's rows should sum to 1 over the keys, but yours sum to "
                          f"{np.round(sums.ravel()[:3], 3).tolist()}...")
    expect_close(w, want_w, "Your weight tensor", case.desc, _weight_mistakes(case), atol=1e-5)
    expect_finite(out, "Your output", case.desc)
    expect_close(out, want_out, "Your output", case.desc, _output_mistakes(case), atol=2e-5)


def _check_mask(w: np.ndarray, case: MhaCase) -> None:
    """Masked weights must be exactly 0; a polarity mix-up gets its own message."""
    if not case.mask:
        return
    mask = _np(torch.broadcast_to(_inputs(case)[3], w.shape))
    wz = np.nan_to_num(w)
    blocked = np.abs(wz[~mask]).max() if (~mask).any() else 0.0
    if blocked <= 1e-6:
        if not np.allclose(wz.sum(-1), 1.0, atol=1e-4):
            fail(f"Your weights are 0 where the mask blocks a key, but the rows no longer sum "
                 f"to 1 ({case.desc}): it looks like the mask was applied after the softmax. "
                 "Set blocked scores to -inf *before* the softmax.")
        return
    if np.abs(wz[mask]).max() <= 1e-6:
        fail(f"Your weights are non-zero exactly where the mask is False and zero where it is "
             f"True ({case.desc}): the mask's meaning is inverted. In this course True = may "
             "attend, so block where the mask is False: `scores.masked_fill(~mask, "
             "float('-inf'))`. (nn.MultiheadAttention's boolean masks mean the opposite.)")
    fail(f"Your weights give up to {fmt(float(blocked))} to keys the mask blocks ({case.desc}). "
         "Blocked scores must become -inf before the softmax so their weights are exactly 0 "
         "(multiplying the scores by the mask only makes them 0, not -inf). Pass the mask on "
         "to your attention for every head.")


def _compare_mha(cases: list[MhaCase], with_bias_arg: bool = False, values: bool = True):
    def compare(rec: dict) -> None:
        for case in cases:
            _compare_one(rec[case.desc], case, with_bias_arg, values)
    return compare


SHAPE_CASES = [
    MhaCase("self-attention, B=2, L=5, d_model=12, 3 heads", 12, 3, 2, 5, 5, seed=311),
    MhaCase("cross-attention, B=3, Lq=2, Lk=7, d_model=16, 4 heads", 16, 4, 3, 2, 7, seed=312,
            cross=True),
]
SELF_CASES = [MhaCase("self-attention, B=2, L=5, d_model=12, 3 heads", 12, 3, 2, 5, 5, seed=313)]
CROSS_CASES = [MhaCase("cross-attention, B=2, Lq=3, Lk=6, d_model=16, 4 heads, key != value",
                       16, 4, 2, 3, 6, seed=314, cross=True)]
HIDDEN_CASES = [
    MhaCase("one head, B=1, L=4, d_model=8", 8, 1, 1, 4, 4, seed=7311),
    MhaCase("cross-attention, B=3, Lq=7, Lk=2, d_model=24, 6 heads", 24, 6, 3, 7, 2, seed=7312,
            cross=True),
    MhaCase("self-attention, B=2, L=9, d_model=32, 4 heads", 32, 4, 2, 9, 9, seed=7313),
    MhaCase("a single query, B=1, Lq=1, Lk=5, d_model=6, 2 heads", 6, 2, 1, 1, 5, seed=7314,
            cross=True),
    MhaCase("d_head=2, B=2, Lq=5, Lk=3, d_model=16, 8 heads", 16, 8, 2, 5, 3, seed=7315,
            cross=True),
]
MASK_CASES = [
    MhaCase("self-attention with a random (L, L) mask, B=2, L=5, d_model=12, 3 heads",
            12, 3, 2, 5, 5, seed=315, mask="random"),
    MhaCase("cross-attention with a padding mask of shape (B, 1, 1, Lk), B=2, Lq=3, Lk=6",
            16, 4, 2, 3, 6, seed=316, cross=True, mask="padding"),
]
MASK_HIDDEN_CASES = [
    MhaCase("a causal (L, L) mask, B=2, L=6, d_model=16, 4 heads", 16, 4, 2, 6, 6,
            seed=7316, mask="causal"),
    MhaCase("a per-head (B, H, Lq, Lk) mask, B=2, Lq=4, Lk=5, 3 heads", 12, 3, 2, 4, 5,
            seed=7317, cross=True, mask="per_head"),
    MhaCase("padding & causal, mask (B, 1, L, L), B=3, L=5, 2 heads", 8, 2, 3, 5, 5,
            seed=7318, mask="padding_causal"),
]
NO_BIAS_CASES = [
    MhaCase("bias=False, self-attention, B=2, L=4, d_model=12, 4 heads", 12, 4, 2, 4, 4,
            seed=317, bias=False),
    MhaCase("bias=False, cross-attention, B=1, Lq=3, Lk=5, d_model=8, 2 heads", 8, 2, 1, 3, 5,
            seed=318, cross=True, bias=False),
]

register("mha.shapes", "MultiHeadAttention: four d_model x d_model linear maps, output and "
         "per-head weight shapes", _record_mha(SHAPE_CASES), _compare_mha(SHAPE_CASES,
                                                                           values=False))
register("mha.self_attention", "MultiHeadAttention: self-attention matches the reference",
         _record_mha(SELF_CASES), _compare_mha(SELF_CASES))
register("mha.cross_attention", "MultiHeadAttention: cross-attention (Lq != Lk) matches the "
         "reference", _record_mha(CROSS_CASES), _compare_mha(CROSS_CASES))
register("mha.hidden", "MultiHeadAttention: more sizes, one head, a single query",
         _record_mha(HIDDEN_CASES), _compare_mha(HIDDEN_CASES))
register("mha.mask", "MultiHeadAttention: masks (True = may attend) block exactly the right "
         "keys", _record_mha(MASK_CASES), _compare_mha(MASK_CASES))
register("mha.mask_hidden", "MultiHeadAttention: causal, per-head and combined masks",
         _record_mha(MASK_HIDDEN_CASES), _compare_mha(MASK_HIDDEN_CASES))
register("mha.no_bias", "MultiHeadAttention: bias=False", _record_mha(NO_BIAS_CASES, True),
         _compare_mha(NO_BIAS_CASES, with_bias_arg=True))


# --------------------------------------------------------------------------- properties

PROP_CASE = MhaCase("cross-attention, B=2, Lq=5, Lk=7, d_model=16, 4 heads", 16, 4, 2, 5, 7,
                    seed=7320, cross=True)


def _prop_perms() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Key permutation, query permutation, and a perturbation of head 0's query rows."""
    g = torch.Generator().manual_seed(7321)
    dh = PROP_CASE.d_model // PROP_CASE.n_heads
    return (torch.randperm(PROP_CASE.Lk, generator=g), torch.randperm(PROP_CASE.Lq, generator=g),
            torch.randn(dh, PROP_CASE.d_model, generator=g))


def _record_properties(cls) -> dict:
    case = PROP_CASE
    module, info = _build(cls, case, with_bias_arg=False)
    info["forward"] = None
    if module is None:
        return info
    query, key, value, _ = _inputs(case)
    kperm, qperm, delta = _prop_perms()
    guard = _mha_guard
    info["forward"] = call(module, query, key, value, guard=guard())
    info["keys_permuted"] = call(module, query, key[:, kperm], value[:, kperm], guard=guard())
    info["queries_permuted"] = call(module, query[:, qperm], key, value, guard=guard())
    info["first_item"] = call(module, query[:1], key[:1], value[:1], guard=guard())
    try:
        with torch.no_grad():
            module.q_proj.weight[: delta.shape[0]] += delta  # head 0's query features only
        info["head0_changed"] = call(module, query, key, value, guard=guard())
    except Exception:  # an attribute problem: reported by _check_built
        info["head0_changed"] = None
    return info


def _compare_properties(rec: dict) -> None:
    case = PROP_CASE
    _check_built(rec, case, with_bias_arg=False)
    _check_view_error(rec["forward"], MHA, case.desc)
    out, w = unpack_pair(check_outcome(rec["forward"], MHA, case.desc), MHA, case=case.desc)
    B, H, Lq, Lk = case.B, case.n_heads, case.Lq, case.Lk
    if w.shape != (B, H, Lq, Lk):
        expect_shape(w, (B, H, Lq, Lk), "Your weight tensor", case.desc,
                     hint=_weights_shape_hint(w, case))
    expect_shape(out, (B, Lq, case.d_model), "Your output", case.desc)
    expect_finite(w, "Your weight tensor", case.desc)
    if (w < 0).any() or not np.allclose(w.sum(-1), 1.0, atol=1e-4):
        fail("Each head's weights should be a probability distribution over the keys (every "
             "row non-negative, summing to 1), but yours sum to "
             f"{np.round(w.sum(-1).ravel()[:3], 3).tolist()}... Is the softmax over the last "
             "axis of the per-head scores?")
    kperm, qperm, _ = _prop_perms()
    kperm, qperm = kperm.numpy(), qperm.numpy()
    out_k, w_k = unpack_pair(check_outcome(rec["keys_permuted"], MHA, "keys permuted"), MHA)
    if not (close(out_k, out) and close(w_k, w[..., kperm])):
        fail("Shuffling the key/value positions together should leave the output unchanged and "
             "shuffle the weight columns the same way; yours does not. Does a reshape move "
             "values between positions (split_heads/merge_heads need a transpose, not just a "
             "view)?")
    out_q, w_q = unpack_pair(check_outcome(rec["queries_permuted"], MHA, "queries permuted"), MHA)
    if not (close(out_q, out[:, qperm]) and close(w_q, w[:, :, qperm])):
        fail("Shuffling the queries should shuffle the output rows and weight rows the same "
             "way; yours does not. Does a reshape mix query positions?")
    out_1, w_1 = unpack_pair(check_outcome(rec["first_item"], MHA, "batch of one"), MHA)
    if not (close(out_1, out[:1]) and close(w_1, w[:1])):
        fail("The first batch item's output changed when it was run without the second item: "
             "your code mixes batch items. Keep B as its own axis in every reshape, e.g. "
             "x.view(B, L, n_heads, d_head).")
    if rec["head0_changed"] is None:
        fail("Could not change `q_proj.weight` in place: make q_proj a plain nn.Linear.")
    _, w_h = unpack_pair(check_outcome(rec["head0_changed"], MHA, "head 0 changed"), MHA)
    if not close(w_h[:, 1:], w[:, 1:]) or close(w_h[:, 0], w[:, 0]):
        fail("Changing only the first d_head rows of q_proj.weight (the query features of "
             "head 0) should change head 0's weights and no other head's. Yours does not: head "
             "h must attend with features h*d_head ... (h+1)*d_head - 1 only (split_heads), "
             "not with all d_model features or interleaved ones.")


register("mha.properties", "MultiHeadAttention: permutation equivariance, distributions per "
         "head, independent batch items and heads", _record_properties, _compare_properties)
