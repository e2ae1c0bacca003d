"""Checks for lesson 07, decoders and training: ``DecoderLayer``, ``TinyGPT`` and ``generate``.

Every case is rebuilt from a fixed seed on both sides, and nothing depends on the model the
learner trains in the notebook. For the two classes, ``record`` builds the learner's module
(restoring the global random stream afterwards), overwrites its parameters through the
contract's names (``self_attn.q_proj.weight`` ... ``norm3.bias``; ``tok_emb.weight`` ...
``head.bias``) with fixed-seed values and records what ``forward`` returns; ``compare`` loads
the same values into the reference (or into ``torch.nn.TransformerDecoderLayer``).
``generate`` is run on a small fixed-seed causal language model with TinyGPT's interface
(``_PrefixLM``; not the course's TinyGPT, which is withheld where the record half runs while a
class is graded), wrapped in a spy that records how it was called (what was fed, how long the
cache was), so that a cache that is never used or never advanced is caught even when the
tokens happen to be right.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import DecoderLayer as RefDecoder
from autograder.reference import GPTBlock, causal_mask
from autograder.reference import TinyGPT as RefGPT
from autograder.reference import block as ref_block
from autograder.reference import decoder as ref_decoder
from autograder.reference import generate as ref_generate

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
)
from .lesson06 import ATTN_NAMES, LayerArgs

OURS = "the course's own {} (attnlab / autograder.reference)"
DEC = "Your DecoderLayer"
GPT = "Your TinyGPT"
GEN = "Your generate"
SHAPE_WORDS = ("size of tensor", "shape", "broadcast", "must match", "mat1 and mat2",
               "dimension")


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _is_tensor_record(value) -> bool:
    return isinstance(value, np.ndarray)


# ============================================================================= DecoderLayer


def _dec_guard() -> Guard:
    label = OURS.format("DecoderLayer")
    return Guard((), [(label, RefDecoder.forward), (label, ref_block.residual),
                      ("PyTorch's nn.TransformerDecoderLayer",
                       nn.TransformerDecoderLayer.forward)])


@dataclass(frozen=True)
class DecCase(LayerArgs):
    desc: str
    d_model: int
    n_heads: int
    d_ff: int
    B: int
    L: int  # decoder (target) positions
    S: int  # memory (source) positions
    seed: int
    norm_first: bool | None = None  # None: not passed, so the default post-norm applies
    activation: str | None = None
    eps: float | None = None
    self_mask: str = "causal"  # "", "causal", "causal+padding"
    memory_mask: str = ""  # "", "random", "padding"


DEC_PARTS = ("self_attn", "cross_attn", "ff", "norm1", "norm2", "norm3")


def _dec_params(case: DecCase) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(case.seed)
    d, h = case.d_model, case.d_ff
    p: dict[str, Tensor] = {}
    for attn in ("self_attn", "cross_attn"):
        for name in ATTN_NAMES:
            p[f"{attn}.{name}.weight"] = 1.2 * torch.randn(d, d, generator=g) / math.sqrt(d)
            p[f"{attn}.{name}.bias"] = 0.2 * torch.randn(d, generator=g)
    p["ff.linear1.weight"] = torch.randn(h, d, generator=g) / math.sqrt(d)
    p["ff.linear1.bias"] = 0.3 * torch.randn(h, generator=g)
    p["ff.linear2.weight"] = torch.randn(d, h, generator=g) / math.sqrt(h)
    p["ff.linear2.bias"] = 0.3 * torch.randn(d, generator=g)
    for norm in ("norm1", "norm2", "norm3"):
        p[f"{norm}.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
        p[f"{norm}.bias"] = 0.3 * torch.randn(d, generator=g)
    return p


def _dec_inputs(case: DecCase) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """x (B, L, d), memory (B, S, d), self_mask, memory_mask (True = may attend)."""
    g = torch.Generator().manual_seed(case.seed + 1)
    B, L, S = case.B, case.L, case.S
    x = 2.0 * torch.randn(B, L, case.d_model, generator=g) + 0.5  # (B, L, d_model)
    memory = 1.5 * torch.randn(B, S, case.d_model, generator=g) - 0.3  # (B, S, d_model)
    self_mask = None
    if case.self_mask == "causal":
        self_mask = causal_mask(L)  # (L, L)
    elif case.self_mask == "causal+padding":
        lengths = torch.tensor([L, L - 2, L - 1, 2][:B])
        pad = (torch.arange(L) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, L)
        self_mask = pad & causal_mask(L)  # (B, 1, L, L)
    memory_mask = None
    if case.memory_mask == "random":  # every query keeps one memory position, blocks another
        m = torch.rand(L, S, generator=g) < 0.5
        yes = torch.randint(0, S, (L,), generator=g)
        no = (yes + 1 + torch.randint(0, S - 1, (L,), generator=g)) % S
        memory_mask = (m | F.one_hot(yes, S).bool()) & ~F.one_hot(no, S).bool()  # (L, S)
    elif case.memory_mask == "padding":
        lengths = torch.tensor([S - 2, 2, S - 1, 3][:B])
        memory_mask = (torch.arange(S) < lengths[:, None])[:, None, None, :]  # (B, 1, 1, S)
    return x, memory, self_mask, memory_mask


@lru_cache(maxsize=256)
def _ref_decoder(case: DecCase) -> RefDecoder:
    with torch.random.fork_rng():
        ref = RefDecoder(case.d_model, case.n_heads, case.d_ff, norm_first=case.pre,
                         activation=case.act, eps=case.eps_value)
    ref.load_state_dict(_dec_params(case))
    return ref.eval()


@lru_cache(maxsize=256)
def _dec_reference(case: DecCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, memory, self_mask, memory_mask = _dec_inputs(case)
    with torch.no_grad():
        out, w = _ref_decoder(case)(x, memory, self_mask, memory_mask, return_weights=True)
    return _np(out), _np(w["self"]), _np(w["cross"])


@lru_cache(maxsize=256)
def _dec_torch(case: DecCase) -> np.ndarray:
    """The same weights in torch.nn.TransformerDecoderLayer (its bool masks: True = blocked)."""
    p = _dec_params(case)
    with torch.random.fork_rng():
        layer = nn.TransformerDecoderLayer(
            case.d_model, case.n_heads, case.d_ff, dropout=0.0, activation=case.act,
            layer_norm_eps=case.eps_value, batch_first=True, norm_first=case.pre)
    state = {}
    for ours, theirs in (("self_attn", "self_attn"), ("cross_attn", "multihead_attn")):
        state[f"{theirs}.in_proj_weight"] = torch.cat(
            [p[f"{ours}.{n}.weight"] for n in ATTN_NAMES[:3]])
        state[f"{theirs}.in_proj_bias"] = torch.cat([p[f"{ours}.{n}.bias"] for n in ATTN_NAMES[:3]])
        state[f"{theirs}.out_proj.weight"] = p[f"{ours}.out_proj.weight"]
        state[f"{theirs}.out_proj.bias"] = p[f"{ours}.out_proj.bias"]
    for ours, theirs in (("ff.linear1", "linear1"), ("ff.linear2", "linear2"),
                         ("norm1", "norm1"), ("norm2", "norm2"), ("norm3", "norm3")):
        state[f"{theirs}.weight"] = p[f"{ours}.weight"]
        state[f"{theirs}.bias"] = p[f"{ours}.bias"]
    layer.load_state_dict(state)
    layer.eval()
    x, memory, self_mask, memory_mask = _dec_inputs(case)
    kwargs = {}
    if self_mask is not None:
        kwargs["tgt_mask"] = ~self_mask
    if memory_mask is not None:
        kwargs["memory_mask"] = ~memory_mask
    with torch.no_grad():
        return _np(layer(x, memory, **kwargs))


@lru_cache(maxsize=1024)
def _dec_variant(case: DecCase, *, form: str = "", kv: str = "memory", self_mask: str = "as_is",
                 memory_mask: str = "as_is", norms: tuple[str, str, str] = ("norm1", "norm2",
                                                                            "norm3"),
                 order: tuple[str, ...] = ("self", "cross", "ff"), norm_memory: bool = False,
                 res_from_norm: bool = False, resid: tuple[str, ...] = ("self", "cross", "ff"),
                 ) -> np.ndarray | None:
    """The layer with one deliberate wiring mistake (None when that mistake cannot run)."""
    ref = _ref_decoder(case)
    x, memory, s_mask, m_mask = _dec_inputs(case)
    pick = {"as_is": lambda m: m, "none": lambda m: None,
            "inverted": lambda m: None if m is None else ~m}
    s_mask, m_mask = pick[self_mask](s_mask), pick[memory_mask](m_mask)
    if kv == "x" and m_mask is not None and m_mask.shape[-1] != case.L:
        m_mask = None  # an (L, S) mask cannot go with x's keys: that learner dropped it
    form = form or ("pre" if case.pre else "post")
    h = x
    try:
        with torch.no_grad():
            for kind, norm_name in zip(order, norms, strict=True):
                norm = getattr(ref, norm_name)
                t = norm(h) if form == "pre" else h
                if kind == "self":
                    o = ref.self_attn(t, t, t, s_mask)[0]
                elif kind == "cross":
                    src = t if kv == "x" else (norm(memory) if norm_memory else memory)
                    o = ref.cross_attn(t, src, src, m_mask)[0]
                else:
                    o = ref.ff(t)
                keep = kind in resid
                if form == "pre":
                    h = ((t if res_from_norm else h) + o) if keep else o
                else:
                    h = norm(h + o) if keep else norm(o)
    except RuntimeError:  # e.g. a (L, S) memory mask against (L, L) scores
        return None
    return _np(h)


M_KV_FROM_X = ("It matches cross-attention with its keys and values taken from x (the decoder) "
               "instead of memory: that is a second self-attention. Cross-attention takes its "
               "queries from the decoder and its keys and values from the encoder's output: "
               "self.cross_attn(h, memory, memory, memory_mask).")
M_NO_SELF_MASK = ("It matches self-attention without the mask: self_mask never reaches "
                  "self_attn, so every target position sees the positions after it. Pass it on: "
                  "self.self_attn(h, h, h, self_mask).")
M_NO_MEMORY_MASK = ("It matches cross-attention without memory_mask: the mask over the "
                    "encoder's positions is ignored. Pass it on: "
                    "self.cross_attn(h, memory, memory, memory_mask).")
M_INVERTED = ("It matches the masks inverted (True = blocked, PyTorch's convention for "
              "nn.MultiheadAttention). In this course True = may attend: pass the masks to "
              "MultiHeadAttention unchanged.")
M_NORM_ORDER = ("It matches norm2 around the feed-forward and norm3 around cross-attention. "
                "The decoder numbers its norms by sublayer, as nn.TransformerDecoderLayer "
                "does: norm1 self-attention, norm2 cross-attention, norm3 feed-forward.")
M_NORM_REUSED = ("It matches one LayerNorm used for two sublayers ({which}). Each of the three "
                 "sublayers has its own: norm1 self-attention, norm2 cross-attention, norm3 "
                 "feed-forward.")
M_SUBLAYER_ORDER = ("It matches cross-attention before self-attention. The decoder first lets "
                    "the target positions look at each other (masked self-attention), then at "
                    "the encoder's memory (cross-attention), then applies the feed-forward.")
M_NO_CROSS = ("It matches an encoder layer with a causal mask: the cross-attention sublayer is "
              "missing (or its output is thrown away). Add x + cross_attn(...) between "
              "self-attention and the feed-forward.")
M_NO_CROSS_RESID = ("It matches cross-attention without its residual: its output replaces x "
                    "instead of being added to it.")
M_NORM_MEMORY = ("It matches cross-attention on norm2(memory). In pre-norm only the decoder's "
                 "own stream is normalised before each sublayer; memory is the encoder's output "
                 "and is used as it is: self.cross_attn(self.norm2(x), memory, memory, "
                 "memory_mask).")
M_RES_FROM_NORM = ("It matches norm(x) + sublayer(norm(x)): the residual adds the normalised "
                   "x. In pre-norm the residual path carries the raw x: x = x + sublayer(norm(x)).")


def _other_form(case: DecCase) -> str:
    if case.pre:
        return ("It matches the post-norm wiring, but this layer was built with norm_first=True: "
                "pre-norm normalises each sublayer's input, x = x + sublayer(norm(x)).")
    return ("It matches the pre-norm wiring, but this layer was built with norm_first=False "
            "(the default): post-norm normalises after the residual sum, "
            "x = norm(x + sublayer(x)).")


def _dec_mistakes(case: DecCase) -> list[tuple[str, np.ndarray | None]]:
    v = lambda **kw: _dec_variant(case, **kw)
    out: list[tuple[str, np.ndarray | None]] = [
        (M_KV_FROM_X, v(kv="x")),
        (M_NO_CROSS, v(order=("self", "ff"), norms=("norm1", "norm3"))),
        (M_NO_CROSS, v(order=("self", "ff"), norms=("norm1", "norm2"))),
        (M_NORM_ORDER, v(norms=("norm1", "norm3", "norm2"))),
        (M_NORM_REUSED.format(which="norm2 for cross-attention and the feed-forward"),
         v(norms=("norm1", "norm2", "norm2"))),
        (M_NORM_REUSED.format(which="norm1 for both attentions"),
         v(norms=("norm1", "norm1", "norm3"))),
        (M_SUBLAYER_ORDER, v(order=("cross", "self", "ff"))),
        (M_SUBLAYER_ORDER, v(order=("cross", "self", "ff"), norms=("norm2", "norm1", "norm3"))),
        (_other_form(case), v(form="post" if case.pre else "pre")),
        (M_NO_CROSS_RESID, v(resid=("self", "ff"))),
    ]
    if case.self_mask:
        out.append((M_NO_SELF_MASK, v(self_mask="none")))
    if case.memory_mask:
        out.append((M_NO_MEMORY_MASK, v(memory_mask="none")))
    if case.self_mask or case.memory_mask:
        out.append((M_INVERTED, v(self_mask="inverted", memory_mask="inverted")))
    if case.pre:
        out += [(M_NORM_MEMORY, v(norm_memory=True)), (M_RES_FROM_NORM, v(res_from_norm=True))]
    return out


def _dec_error(out: Outcome, what: str, case: DecCase) -> None:
    """check_outcome, with a hint when the shapes of the two attentions clash."""
    if out.error and out.error_type != "NotImplementedError" and not out.forbidden \
            and any(w in out.error for w in SHAPE_WORDS):
        fail(f"{what} raised {out.error} ({case.desc}). Check which tensors go where: "
             "self-attention uses x (L positions) as query, key and value with self_mask "
             "(..., L, L); cross-attention takes its queries from x and its keys and values "
             "from memory (S positions), with memory_mask (..., L, S). Giving memory_mask to "
             "self_attn, x as cross-attention's keys, or memory as its queries makes the shapes "
             "clash.")
    check_outcome(out, what, case.desc)


def _dec_load_problem(seen: dict[str, str], case: DecCase, built: str) -> None:
    d, h = case.d_model, case.d_ff
    fixes = {
        "self_attn": "self.self_attn = MultiHeadAttention(d_model, n_heads)",
        "cross_attn": "self.cross_attn = MultiHeadAttention(d_model, n_heads)",
        "ff": "self.ff = FeedForward(d_model, d_ff, activation)",
        "norm1": "self.norm1 = LayerNorm(d_model, eps)",
        "norm2": "self.norm2 = LayerNorm(d_model, eps)",
        "norm3": "self.norm3 = LayerNorm(d_model, eps)",
    }
    for path, status in seen.items():
        if status == "ok":
            continue
        top = path.split(".")[0]
        if status == "missing":
            fail(f"{DEC} has no `{path}` ({built}). The exercise names its parts self_attn, "
                 "cross_attn, ff, norm1, norm2 and norm3 (from_torch and the checks load "
                 f"weights through these names): {fixes[top]}.")
        if status.startswith("shape"):
            got = status[len("shape "):]
            hint = ""
            if path == "ff.linear1.weight" and got in (str((d, d)), str((4 * d, d))):
                hint = f" Did you pass d_ff = {h} on to FeedForward?"
            fail(f"`{path}` of your DecoderLayer has shape {got} in {built}, but should have "
                 f"shape {tuple(_dec_params(case)[path].shape)}.{hint}")
        fail(f"Could not load test values into `{path}` of your DecoderLayer: it is {status}. "
             f"{fixes[top]}.")


def _shared_parts(module) -> list[tuple[str, str]]:
    """Pairs of parts that are one and the same module (each sublayer needs its own)."""
    parts = {name: getattr(module, name, None) for name in DEC_PARTS}
    pairs = []
    for a, b in (("self_attn", "cross_attn"), ("norm1", "norm2"), ("norm1", "norm3"),
                 ("norm2", "norm3")):
        if parts[a] is not None and parts[a] is parts[b]:
            pairs.append((a, b))
    return pairs


def _record_decoder(cases: list[DecCase], weights: bool = False):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            args, kwargs = case.args()
            module, built = build_module(cls, *args, **kwargs)
            info: dict = {"construct": built, "seen": {}, "forward": None, "shared": []}
            if module is not None:
                info["shared"] = _shared_parts(module)
                info["seen"] = load_params(module, _dec_params(case))
                x, memory, self_mask, memory_mask = _dec_inputs(case)
                kw = {}
                if self_mask is not None:
                    kw["self_mask"] = self_mask
                if memory_mask is not None:
                    kw["memory_mask"] = memory_mask
                info["forward"] = call(module, x, memory, guard=_dec_guard(), **kw)
                if weights:
                    info["with_weights"] = call(module, x, memory, return_weights=True,
                                                guard=_dec_guard(), **kw)
            rec[case.desc] = info
        return rec
    return record


def _check_dec_built(info: dict, case: DecCase) -> str:
    args, kwargs = case.args()
    built = built_text("DecoderLayer", args, kwargs)
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        fail(f"{DEC} calls {fwd.forbidden[0]}. This exercise asks you to wire the layer "
             "yourself from MultiHeadAttention, FeedForward and LayerNorm.")
    for a, b in info.get("shared", []):
        fail(f"{a} and {b} of your DecoderLayer are the same module: each sublayer needs its "
             f"own, with its own weights. Create them separately: self.{a} = ... and "
             f"self.{b} = ....")
    _dec_load_problem(info["seen"], case, built)
    return built


def _dec_output(out: Outcome, case: DecCase) -> np.ndarray:
    _dec_error(out, DEC, case)
    value = out.value
    if isinstance(value, (tuple, list)):
        fail(f"{DEC} returned a {type(value).__name__} of {len(value)} items ({case.desc}); "
             "without return_weights=True, forward should return only the output tensor: "
             "`return (x, weights) if return_weights else x`.")
    return as_array(value, DEC, case.desc)


def _compare_decoder_case(info: dict, case: DecCase, oracle: str = "reference") -> np.ndarray:
    _check_dec_built(info, case)
    got = _dec_output(info["forward"], case)
    want = _dec_reference(case)[0] if oracle == "reference" else _dec_torch(case)
    B, L, S, d = case.B, case.L, case.S, case.d_model
    hint = "A decoder layer keeps the shape of its input x, (B, L, d_model)."
    if got.shape == (B, S, d) and S != L:
        hint = ("That is the memory's length S: the queries of cross-attention come from the "
                "decoder, self.cross_attn(h, memory, memory, memory_mask), so the output has "
                "one row per target position.")
    expect_shape(got, want.shape, "The output of your DecoderLayer", case.desc, hint=hint)
    expect_finite(got, "The output of your DecoderLayer", case.desc)
    if close(got, want, atol=2e-5):
        return got
    against = "the reference" if oracle == "reference" else "torch.nn.TransformerDecoderLayer"
    message = first_close(got, _dec_mistakes(case), 2e-5)
    if message:
        fail(f"{DEC} does not match {against} ({case.desc}). {message}")
    fail(f"{DEC} does not match {against} with the same weights ({case.desc}): largest "
         f"error {fmt(float(np.abs(got - want).max()))}. "
         + ("Pre-norm: x = x + self_attn(norm1(x)), x = x + cross_attn(norm2(x), memory), "
            "x = x + ff(norm3(x))." if case.pre else
            "Post-norm: x = norm1(x + self_attn(x)), x = norm2(x + cross_attn(x, memory)), "
            "x = norm3(x + ff(x))."))


def _compare_decoder(cases: list[DecCase], oracle: str = "reference"):
    def compare(rec: dict) -> None:
        for case in cases:
            _compare_decoder_case(rec[case.desc], case, oracle)
    return compare


def _compare_dec_weights(cases: list[DecCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            got_out = _compare_decoder_case(info, case)
            what = f"{DEC} with return_weights=True"
            out = info["with_weights"]
            _dec_error(out, what, case)
            value = out.value
            if not isinstance(value, (tuple, list)) or len(value) != 2:
                fail(f"{what} should return a pair (output, weights) ({case.desc}).")
            output, weights = value
            if isinstance(weights, (tuple, list)) and len(weights) == 2:
                fail(f"{what} returned the weights as a {type(weights).__name__}; return a "
                     "dict with both, {\"self\": self-attention weights, \"cross\": "
                     f"cross-attention weights}} ({case.desc}).")
            if not isinstance(weights, dict) or set(weights) != {"self", "cross"}:
                kind = sorted(weights) if isinstance(weights, dict) else \
                    getattr(weights, "type_name", type(weights).__name__)
                fail(f"{what} returned weights {kind}; expected a dict with two entries, "
                     "{\"self\": self-attention weights (B, H, L, L), \"cross\": "
                     f"cross-attention weights (B, H, L, S)}} ({case.desc}).")
            output = as_array(output, f"{what}'s output", case.desc)
            if not close(output, got_out, atol=1e-6):
                fail(f"{what} returned a different output than without it ({case.desc}); the "
                     "flag should only add the weights.")
            _, want_self, want_cross = _dec_reference(case)
            _, _, self_mask, memory_mask = _dec_inputs(case)
            for key, want, mask, fix in (
                    ("self", want_self, self_mask, "self.self_attn(h, h, h, self_mask)"),
                    ("cross", want_cross, memory_mask,
                     "self.cross_attn(h, memory, memory, memory_mask)")):
                w = as_array(weights[key], f"Your {key} weights", case.desc)
                if key == "cross" and w.shape == want_self.shape and w.shape != want.shape:
                    fail(f"Your cross-attention weights have shape {w.shape}, (B, H, L, L) "
                         f"({case.desc}): keys and values should come from memory, giving "
                         f"(B, H, L, S) = {want.shape}: {fix}.")
                expect_shape(w, want.shape, f'Your weights["{key}"]', case.desc,
                             hint="Return each attention's per-head weights unchanged.")
                if mask is not None:
                    blocked = ~np.broadcast_to(_np(mask), w.shape)
                    if np.abs(np.nan_to_num(w[blocked])).max() > 1e-6:
                        name = "self_mask" if key == "self" else "memory_mask"
                        fail(f'Your weights["{key}"] give weight to positions {name} blocks '
                             f"({case.desc}). Pass {name} on: {fix}.")
                if not close(w, want, atol=1e-5):
                    fail(f'Your weights["{key}"] do not match the reference ({case.desc}): '
                         f"largest error {fmt(float(np.abs(w - want).max()))}. Return the "
                         f"weights that {key}_attn gives you.")
    return compare


LAYOUT_CASE = DecCase('DecoderLayer(16, 4, 40, dropout=0.1, activation="gelu", eps=0.5)',
                      16, 4, 40, 2, 5, 6, 731, activation="gelu", eps=0.5, self_mask="")


def _record_layout(cls) -> dict:
    case = LAYOUT_CASE
    args, kwargs = case.args()
    module, built = build_module(cls, *args, dropout=0.1, **kwargs)
    info: dict = {"construct": built, "seen": {}, "attrs": {}, "shared": [], "parts": {}}
    if module is None:
        return info
    for name in DEC_PARTS:
        info["attrs"][name] = type(getattr(module, name, None)).__name__
    info["shared"] = _shared_parts(module)
    info["seen"] = load_params(module, _dec_params(case))
    x, memory, _, _ = _dec_inputs(case)
    for name in ("norm1", "norm2", "norm3", "ff"):
        sub = getattr(module, name, None)
        info["parts"][name] = call(sub, x) if callable(sub) else None
    return info


def _compare_layout(rec: dict) -> None:
    case = LAYOUT_CASE
    built = case.desc
    check_outcome(rec["construct"], built)
    for name, kind in rec["attrs"].items():
        if kind == "NoneType":
            fail(f"{DEC} has no attribute `{name}` ({built}). The exercise names its parts "
                 "self_attn, cross_attn, ff, norm1, norm2 and norm3.")
    for a, b in rec["shared"]:
        fail(f"{a} and {b} of your DecoderLayer are the same module: each sublayer needs its "
             f"own, with its own weights. Create them separately: self.{a} = ... and "
             f"self.{b} = ....")
    _dec_load_problem(rec["seen"], case, built)
    x, _, _, _ = _dec_inputs(case)
    ref = _ref_decoder(case)
    for name in ("norm1", "norm2", "norm3", "ff"):
        out = rec["parts"].get(name)
        if out is None:
            continue
        value = check_outcome(out, f"Your DecoderLayer's {name}", built)
        got = np.asarray(value) if _is_tensor_record(value) else None
        with torch.no_grad():
            want = _np(getattr(ref, name)(x))
        if got is not None and not close(got, want, atol=2e-5):
            if name == "ff":
                fail(f"Your DecoderLayer's ff does not compute the feed-forward sublayer with "
                     f"activation={case.act!r} ({built}): pass activation on, "
                     "FeedForward(d_model, d_ff, activation).")
            fail(f"Your DecoderLayer's {name} does not use eps={case.eps} ({built}): pass eps "
                 "on, LayerNorm(d_model, eps).")


register("decoder.layout", "DecoderLayer: self_attn, cross_attn, ff, norm1-3 exist, are "
         "separate, and receive eps and activation", _record_layout, _compare_layout)

POST_CASES = [
    DecCase("post-norm (default), causal self_mask, B=2, L=5, S=7, d_model=8, 2 heads",
            8, 2, 16, 2, 5, 7, 741),
    DecCase("norm_first=False, causal self_mask, B=1, L=4, S=3, d_model=12, 3 heads",
            12, 3, 24, 1, 4, 3, 742, norm_first=False),
]
POST_HIDDEN_CASES = [
    DecCase("post-norm, gelu, eps=0.5, causal self_mask and a random (L, S) memory_mask, "
            "B=2, L=6, S=5, d_model=16, 4 heads", 16, 4, 32, 2, 6, 5, 7741, norm_first=False,
            activation="gelu", eps=0.5, memory_mask="random"),
    DecCase("post-norm, no masks, a single target token, B=3, L=1, S=4, d_model=8", 8, 2, 16,
            3, 1, 4, 7742, self_mask=""),
    DecCase("post-norm, causal + padding self_mask (B, 1, L, L), padding memory_mask "
            "(B, 1, 1, S), B=3, L=5, S=6", 8, 2, 16, 3, 5, 6, 7743, self_mask="causal+padding",
            memory_mask="padding"),
]
PRE_CASES = [
    DecCase("norm_first=True, causal self_mask, B=2, L=5, S=7, d_model=8, 2 heads",
            8, 2, 16, 2, 5, 7, 751, norm_first=True),
    DecCase("norm_first=True, causal self_mask, B=1, L=4, S=3, d_model=12, 3 heads",
            12, 3, 24, 1, 4, 3, 752, norm_first=True),
]
PRE_HIDDEN_CASES = [
    DecCase("pre-norm, gelu, eps=0.5, causal self_mask and a random (L, S) memory_mask, "
            "B=2, L=6, S=5, d_model=16, 4 heads", 16, 4, 32, 2, 6, 5, 7751, norm_first=True,
            activation="gelu", eps=0.5, memory_mask="random"),
    DecCase("pre-norm, no masks, a single target token, B=3, L=1, S=4, d_model=8", 8, 2, 16,
            3, 1, 4, 7752, norm_first=True, self_mask=""),
    DecCase("pre-norm, causal + padding self_mask (B, 1, L, L), padding memory_mask "
            "(B, 1, 1, S), B=3, L=5, S=6", 8, 2, 16, 3, 5, 6, 7753, norm_first=True,
            self_mask="causal+padding", memory_mask="padding"),
]
TORCH_POST_CASES = [
    DecCase("post-norm against torch, causal tgt mask and a random (L, S) memory mask, B=2, "
            "L=6, S=4, d_model=16, 4 heads", 16, 4, 32, 2, 6, 4, 7761, memory_mask="random"),
    DecCase("post-norm against torch, gelu, eps=0.5, B=2, L=4, S=5, d_model=8", 8, 2, 16, 2,
            4, 5, 7762, activation="gelu", eps=0.5),
]
TORCH_PRE_CASES = [
    DecCase("pre-norm against torch, causal tgt mask and a random (L, S) memory mask, B=2, "
            "L=6, S=4, d_model=16, 4 heads", 16, 4, 32, 2, 6, 4, 7763, norm_first=True,
            memory_mask="random"),
    DecCase("pre-norm against torch, gelu, eps=0.5, B=2, L=4, S=5, d_model=8", 8, 2, 16, 2,
            4, 5, 7764, norm_first=True, activation="gelu", eps=0.5),
]
MASK_CASES = [
    DecCase("post-norm, causal self_mask, a random (L, S) memory_mask, B=2, L=5, S=6, "
            "d_model=8, 2 heads", 8, 2, 16, 2, 5, 6, 771, memory_mask="random"),
    DecCase("pre-norm, causal self_mask, a padding memory_mask (B, 1, 1, S), B=3, L=4, S=6, "
            "d_model=12, 3 heads", 12, 3, 24, 3, 4, 6, 772, norm_first=True,
            memory_mask="padding"),
]
MASK_HIDDEN_CASES = [
    DecCase("pre-norm, causal + padding self_mask, a random memory_mask, gelu, B=2, L=6, S=5",
            8, 4, 16, 2, 6, 5, 7771, norm_first=True, activation="gelu",
            self_mask="causal+padding", memory_mask="random"),
    DecCase("post-norm, no self_mask, a padding memory_mask, B=2, L=3, S=7", 16, 4, 32, 2, 3,
            7, 7772, self_mask="", memory_mask="padding"),
]

register("decoder.post_norm", "DecoderLayer: post-norm matches the reference",
         _record_decoder(POST_CASES), _compare_decoder(POST_CASES))
register("decoder.post_norm_hidden", "DecoderLayer: post-norm with gelu, eps, one token and "
         "masks", _record_decoder(POST_HIDDEN_CASES), _compare_decoder(POST_HIDDEN_CASES))
register("decoder.torch_post", "DecoderLayer: post-norm equals torch.nn.TransformerDecoderLayer",
         _record_decoder(TORCH_POST_CASES), _compare_decoder(TORCH_POST_CASES, "torch"))
register("decoder.pre_norm", "DecoderLayer: pre-norm matches the reference",
         _record_decoder(PRE_CASES), _compare_decoder(PRE_CASES))
register("decoder.pre_norm_hidden", "DecoderLayer: pre-norm with gelu, eps, one token and "
         "masks", _record_decoder(PRE_HIDDEN_CASES), _compare_decoder(PRE_HIDDEN_CASES))
register("decoder.torch_pre", "DecoderLayer: pre-norm equals torch.nn.TransformerDecoderLayer",
         _record_decoder(TORCH_PRE_CASES), _compare_decoder(TORCH_PRE_CASES, "torch"))
register("decoder.masks", "DecoderLayer: self_mask and memory_mask reach their attentions; "
         "return_weights gives both", _record_decoder(MASK_CASES, weights=True),
         _compare_dec_weights(MASK_CASES))
register("decoder.masks_hidden", "DecoderLayer: padding and combined masks, weights in both "
         "placements", _record_decoder(MASK_HIDDEN_CASES, weights=True),
         _compare_dec_weights(MASK_HIDDEN_CASES))


# ============================================================================= TinyGPT


def _gpt_guard() -> Guard:
    return Guard((), [(OURS.format("TinyGPT"), RefGPT.forward)])


@dataclass(frozen=True)
class GptCase:
    desc: str
    vocab: int
    d_model: int
    n_heads: int
    n_layers: int
    max_len: int
    B: int
    T: int  # tokens of the first call
    seed: int
    T2: int = 0  # tokens of a second call with the cache (0: no second call)

    def args(self) -> tuple:
        return (self.vocab, self.d_model, self.n_heads, self.n_layers, self.max_len)

    @property
    def built(self) -> str:
        return built_text("TinyGPT", self.args(), {})


@lru_cache(maxsize=64)
def _gpt_shapes(vocab: int, d_model: int, n_heads: int, n_layers: int,
                max_len: int) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """The contract's parameter names and shapes, from the sizes alone (the record half runs
    where the course's TinyGPT is withheld; GPTBlock is a provided building block)."""
    with torch.random.fork_rng():
        block = GPTBlock(d_model, n_heads, 4 * d_model).state_dict()
    shapes = {"tok_emb.weight": (vocab, d_model), "pos_emb.weight": (max_len, d_model),
              "ln_f.weight": (d_model,), "ln_f.bias": (d_model,),
              "head.weight": (vocab, d_model), "head.bias": (vocab,)}
    for i in range(n_layers):
        shapes.update({f"blocks.{i}.{k}": tuple(v.shape) for k, v in block.items()})
    return tuple(sorted(shapes.items()))


def gpt_params(args: tuple, seed: int) -> dict[str, Tensor]:
    """Fixed-seed weights for a TinyGPT of these sizes, large enough for every part to matter."""
    g = torch.Generator().manual_seed(seed)
    p = {}
    for name, shape in _gpt_shapes(*args):
        if name.endswith("emb.weight"):
            p[name] = torch.randn(shape, generator=g)
        elif len(shape) == 2:
            p[name] = 1.2 * torch.randn(shape, generator=g) / math.sqrt(shape[1])
        elif name.endswith("weight"):  # LayerNorm gains
            p[name] = 1.0 + 0.3 * torch.randn(shape, generator=g)
        else:
            p[name] = 0.2 * torch.randn(shape, generator=g)
    return p


@lru_cache(maxsize=64)
def ref_gpt(args: tuple, seed: int) -> RefGPT:
    """The course's TinyGPT with the fixed-seed weights of ``gpt_params``, in eval mode."""
    with torch.random.fork_rng():
        model = RefGPT(*args)
    model.load_state_dict(gpt_params(args, seed))
    return model.eval()


def _gpt_tokens(case: GptCase) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(case.seed + 1)
    first = torch.randint(0, case.vocab, (case.B, case.T), generator=g)
    second = torch.randint(0, case.vocab, (case.B, max(case.T2, 1)), generator=g)[:, :case.T2]
    return first, second


@lru_cache(maxsize=256)
def _gpt_reference(case: GptCase) -> dict:
    model = ref_gpt(case.args(), case.seed)
    first, second = _gpt_tokens(case)
    with torch.no_grad():
        logits, cache = model(first)
        out = {"logits": _np(logits), "cache": [(_np(k), _np(v)) for k, v in cache]}
        if case.T2:
            logits2, cache2 = model(second, cache)
            out["logits2"] = _np(logits2)
            out["cache2"] = [(_np(k), _np(v)) for k, v in cache2]
    return out


@lru_cache(maxsize=1024)
def _gpt_variant(case: GptCase, *, second: bool = False, pos: str = "right",
                 pass_past: bool = True, ln_f: bool = True,
                 softmax: bool = False) -> np.ndarray | None:
    """Logits of the first call, or of the second call after the first, with one mistake."""
    model = ref_gpt(case.args(), case.seed)
    first, nxt = _gpt_tokens(case)
    idx, cache = first, None
    if second:
        with torch.no_grad():
            _, cache = model(first)
        idx = nxt
    t_past = 0 if cache is None else cache[0][0].size(-2)
    T = idx.size(1)
    start = {"right": t_past, "restart": 0, "plus_one": t_past + 1, "minus_one": t_past - 1,
             "heads": case.n_heads if cache is not None else 0,
             "layers": case.n_layers if cache is not None else 0, "none": 0}[pos]
    if start < 0 or start + T > case.max_len:
        return None
    with torch.no_grad():
        x = model.tok_emb(idx)
        if pos != "none":
            x = x + model.pos_emb(torch.arange(start, start + T))
        pasts = cache if cache is not None and pass_past else [None] * len(model.blocks)
        for block, past in zip(model.blocks, pasts, strict=True):
            x, _ = block(x, past)
        logits = model.head(model.ln_f(x) if ln_f else x)
        if softmax:
            logits = torch.softmax(logits, dim=-1)
    return _np(logits)


M_NO_POS = ("It matches the model without position embeddings: add self.pos_emb(positions) "
            "to the token embeddings, with positions = torch.arange(...) for the tokens fed in. "
            "Without them attention cannot tell the order of the tokens (lesson 05).")
M_NO_LN_F = ("It matches the logits without the final LayerNorm: apply self.ln_f to the last "
             "block's output before self.head. In a pre-norm stack the residual stream is never "
             "normalised otherwise.")
M_SOFTMAX = ("It matches softmax(logits): forward should return the raw logits (the loss and "
             "generate apply the softmax themselves).")
M_SHARED_BLOCK = ("`[GPTBlock(...)] * n_layers` repeats one module n_layers times. Build a "
                  "new block for each layer: nn.ModuleList(GPTBlock(d_model, n_heads, "
                  "4 * d_model) for _ in range(n_layers)).")
M_RESTART = ("It matches positions that restart at 0 for the new tokens. The tokens fed with a "
             "cache continue the sequence: their positions are t_past, t_past + 1, ..., where "
             "t_past = cache[0][0].size(-2) is the number of tokens already in the cache.")
M_PLUS_ONE = ("It matches positions shifted by one (starting at t_past + 1). The first new "
              "token sits right after the t_past cached ones, at position t_past: "
              "torch.arange(t_past, t_past + T).")
M_MINUS_ONE = ("It matches positions starting at t_past - 1. The first new token sits at "
               "position t_past, right after the cached ones: torch.arange(t_past, t_past + T).")
M_HEADS_DIM = ("It matches positions that start at the number of heads: t_past was read from "
               "the wrong axis of the cached keys. Keys are (B, H, T_past, d_head): "
               "t_past = cache[0][0].size(-2).")
M_LAYERS = ("It matches positions that start at the number of layers: len(cache) counts the "
            "blocks, not the cached positions. Read t_past from the cached keys, "
            "(B, H, T_past, d_head): t_past = cache[0][0].size(-2).")
M_PAST_IGNORED = ("It matches the new tokens attending only to each other: the cache never "
                  "reaches the blocks. Pass each layer's entry to its block: "
                  "x, kv = block(x, cache[i]) (None when there is no cache).")


def _gpt_full_mistakes(case: GptCase) -> list[tuple[str, np.ndarray | None]]:
    v = lambda **kw: _gpt_variant(case, **kw)
    out = [(M_NO_POS, v(pos="none")), (M_NO_LN_F, v(ln_f=False)), (M_SOFTMAX, v(softmax=True)),
           (M_NO_POS + " (And the final LayerNorm is missing too: apply self.ln_f before "
            "self.head.)", v(pos="none", ln_f=False))]
    return out


def _gpt_second_mistakes(case: GptCase) -> list[tuple[str, np.ndarray | None]]:
    v = lambda **kw: _gpt_variant(case, second=True, **kw)
    return [
        (M_RESTART, v(pos="restart")),
        (M_PLUS_ONE, v(pos="plus_one")),
        (M_MINUS_ONE, v(pos="minus_one")),
        (M_HEADS_DIM, v(pos="heads")),
        (M_LAYERS, v(pos="layers")),
        (M_PAST_IGNORED, v(pass_past=False)),
        (M_PAST_IGNORED + " (The positions also restart at 0: they should continue from "
         "t_past.)", v(pass_past=False, pos="restart")),
        (M_NO_POS, v(pos="none")),
    ]


def _shared_blocks(module) -> bool:
    blocks = getattr(module, "blocks", None)
    try:
        items = list(blocks)
    except Exception:
        return False
    return len(items) > 1 and len({id(b) for b in items}) < len(items)


def _record_gpt(cases: list[GptCase], cached: bool = False, causal: bool = False):
    def record(cls) -> dict:
        rec = {}
        for case in cases:
            module, built = build_module(cls, *case.args())
            info: dict = {"construct": built, "seen": {}, "forward": None, "shared": False}
            if module is not None:
                info["shared"] = _shared_blocks(module)
                info["n_blocks"] = _count_blocks(module)
                info["seen"] = load_params(module, gpt_params(case.args(), case.seed))
                first, second = _gpt_tokens(case)
                info["forward"] = call(module, first, guard=_gpt_guard())
                if cached and case.T2:
                    info["second"] = _call_with_own_cache(module, first, second)
                if causal:
                    changed = first.clone()
                    changed[:, -1] = (changed[:, -1] + 1) % case.vocab
                    info["changed_last"] = call(module, changed, guard=_gpt_guard())
                    mid = first.clone()
                    mid[:, case.T // 2] = (mid[:, case.T // 2] + 3) % case.vocab
                    info["changed_mid"] = call(module, mid, guard=_gpt_guard())
                if cached:
                    info["one_by_one"] = _call_token_by_token(module, first)
            rec[case.desc] = info
        return rec
    return record


def _count_blocks(module) -> int | None:
    try:
        return len(module.blocks)
    except Exception:
        return None


def _call_with_own_cache(module, first: Tensor, second: Tensor) -> Outcome:
    """module(first), then module(second, the cache that first call returned)."""
    def run():
        _, cache = module(first)
        return module(second, cache)
    return call(run, guard=_gpt_guard())


def _call_token_by_token(module, idx: Tensor) -> Outcome:
    """Feed idx one token at a time, each call with the cache the previous call returned."""
    def run():
        cache, steps = None, []
        for t in range(idx.size(1)):
            logits, cache = module(idx[:, t:t + 1], cache)
            steps.append(logits)
        return torch.cat(steps, dim=1)
    return call(run, guard=_gpt_guard())


GPT_PARAM_FIX = {
    "tok_emb": "self.tok_emb = nn.Embedding(vocab_size, d_model)",
    "pos_emb": "self.pos_emb = nn.Embedding(max_len, d_model)",
    "blocks": "self.blocks = nn.ModuleList(GPTBlock(d_model, n_heads, 4 * d_model) for _ in "
              "range(n_layers))",
    "ln_f": "self.ln_f = LayerNorm(d_model)",
    "head": "self.head = nn.Linear(d_model, vocab_size)",
}


def _check_gpt_built(info: dict, case: GptCase) -> None:
    built = case.built
    check_outcome(info["construct"], built)
    fwd = info["forward"]
    if fwd is not None and fwd.forbidden:
        fail(f"{GPT} calls {fwd.forbidden[0]}. This exercise asks you to assemble the model "
             "yourself from embeddings, GPTBlocks, a LayerNorm and a linear head.")
    if info.get("shared"):
        fail(f"The blocks of your TinyGPT are all the same module ({built}). {M_SHARED_BLOCK}")
    n = info.get("n_blocks")
    if n is not None and n != case.n_layers:
        fail(f"Your TinyGPT has {n} blocks, but {built} asks for n_layers = {case.n_layers}.")
    for path, status in info["seen"].items():
        if status == "ok":
            continue
        top = path.split(".")[0]
        fix = GPT_PARAM_FIX.get(top, "")
        if status == "missing":
            if top == "blocks" and path.count(".") >= 3:
                fail(f"{GPT} has no `{path}` ({built}). Each block should be a GPTBlock "
                     "(from attnlab) with attn, ln1, ln2 and ff: " + GPT_PARAM_FIX["blocks"]
                     + ".")
            fail(f"{GPT} has no `{path}` ({built}). The exercise names the parts tok_emb, "
                 f"pos_emb, blocks, ln_f and head (the checks load weights through these "
                 f"names): {fix}.")
        if status.startswith("shape"):
            want = dict(_gpt_shapes(*case.args()))[path]
            hint = ""
            if path == "pos_emb.weight" and status == f"shape {(case.vocab, case.d_model)}":
                hint = " The position table has one row per position: max_len rows."
            if path == "head.weight" and status == f"shape {(case.d_model, case.vocab)}":
                hint = " nn.Linear(d_model, vocab_size) stores a weight of shape (vocab, d_model)."
            fail(f"`{path}` of your TinyGPT has {status} in {built}, but should have shape "
                 f"{want}.{hint} {fix}.")
        fail(f"Could not load test values into `{path}` of your TinyGPT: it is {status}. {fix}.")


def _unpack_gpt(out: Outcome, case: GptCase, what: str, where: str) -> tuple:
    value = check_outcome(out, what, where)
    if isinstance(value, np.ndarray):
        fail(f"{what} returned a single array of shape {value.shape} ({where}); forward should "
             "return a pair (logits, cache), the cache being the list of what each block "
             "returned: (keys, values).")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        fail(f"{what} should return a pair (logits, cache) ({where}).")
    return value


def _expect_logits(got, want: np.ndarray, what: str, where: str,
                   mistakes: list[tuple[str, np.ndarray | None]]) -> np.ndarray:
    got = as_array(got, what, where)
    B, T, V = want.shape
    hint = "The logits hold one score per vocabulary entry for every position: (B, T, vocab)."
    if got.shape == (B, V):
        hint = ("That is the last position only: forward returns the logits of every position "
                "fed in, (B, T, vocab); generate picks the last one itself.")
    expect_shape(got, want.shape, what, where, hint=hint)
    expect_finite(got, what, where)
    if close(got, want, atol=1e-4, rtol=1e-4):
        return got
    message = first_close(got, mistakes, 1e-4)
    if message:
        fail(f"{what} do not match the reference ({where}). {message}")
    expect_close(got, want, what, where, atol=1e-4, rtol=1e-4)
    return got


def _compare_gpt_logits(cases: list[GptCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _check_gpt_built(info, case)
            logits, _ = _unpack_gpt(info["forward"], case, GPT, case.desc)
            want = _gpt_reference(case)["logits"]
            _expect_logits(logits, want, "Your logits", case.desc, _gpt_full_mistakes(case))
    return compare


def _expect_cache(cache, want: list, where: str, grown_from: int | None = None) -> None:
    n = len(want)
    if cache is None or isinstance(cache, np.ndarray) or not isinstance(cache, (list, tuple)):
        kind = "None" if cache is None else getattr(cache, "type_name", type(cache).__name__)
        fail(f"The cache your TinyGPT returns is {kind} ({where}); it should be a list with one "
             "(keys, values) pair per block: the second thing each GPTBlock returns.")
    if len(cache) != n:
        fail(f"The cache your TinyGPT returns has {len(cache)} entries ({where}), but the model "
             f"has {n} blocks: keep one (keys, values) pair per block, in order.")
    for i, (entry, (k_want, v_want)) in enumerate(zip(cache, want, strict=True)):
        if not isinstance(entry, (tuple, list)) or len(entry) != 2:
            fail(f"Entry {i} of your cache is not a (keys, values) pair ({where}): store what "
                 "block(x, past) returns as its second value.")
        for name, got, ref in (("keys", entry[0], k_want), ("values", entry[1], v_want)):
            got = as_array(got, f"The cached {name} of block {i}", where)
            if grown_from is not None and got.shape[-2:-1] == (grown_from,) and \
                    got.shape[-2] != ref.shape[-2]:
                fail(f"After a second call, the cached {name} of block {i} still hold "
                     f"{grown_from} positions ({where}), the ones of the first call: return the "
                     "new cache, the (keys, values) each block returns, not the one you were "
                     "given.")
            if grown_from is not None and got.ndim == 4 and got.shape[-2] == \
                    ref.shape[-2] - grown_from:
                fail(f"After a second call, the cached {name} of block {i} hold only the "
                     f"{got.shape[-2]} new positions ({where}); they should hold all "
                     f"{ref.shape[-2]}. Pass each block its past, block(x, cache[i]): the block "
                     "appends the new keys and values to it.")
            expect_shape(got, ref.shape, f"The cached {name} of block {i}", where,
                         hint="Keys and values are cached per head: (B, H, T_so_far, d_head).")
            if not close(got, ref, atol=1e-4, rtol=1e-4):
                fail(f"The cached {name} of block {i} do not match the reference ({where}): "
                     f"largest error {fmt(float(np.abs(got - ref).max()))}. Store exactly the "
                     "(keys, values) each block returns.")


def _compare_gpt_cache(cases: list[GptCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _check_gpt_built(info, case)
            ref = _gpt_reference(case)
            logits, cache = _unpack_gpt(info["forward"], case, GPT, case.desc)
            _expect_logits(logits, ref["logits"], "Your logits", case.desc,
                           _gpt_full_mistakes(case))
            _expect_cache(cache, ref["cache"], f"{case.desc}, first call")
            where = f"{case.desc}; the second call gets the cache of the first"
            logits2, cache2 = _unpack_gpt(info["second"], case, GPT, where)
            _expect_logits(logits2, ref["logits2"], "Your logits for the new tokens", where,
                           _gpt_second_mistakes(case))
            _expect_cache(cache2, ref["cache2"], where, grown_from=case.T)
            one = as_array(check_outcome(info["one_by_one"], GPT, "one token at a time"), GPT)
            if not close(one, ref["logits"], atol=1e-4, rtol=1e-4):
                fail(f"Fed one token at a time, each call with the cache the previous call "
                     f"returned, your TinyGPT gives other logits than one call on the whole "
                     f"sequence ({case.desc}): largest error "
                     f"{fmt(float(np.abs(one - ref['logits']).max()))}. Positions must "
                     "continue from the cache (t_past = cache[0][0].size(-2)), and each block "
                     "needs its own cache entry.")
    return compare


def _compare_gpt_causal(cases: list[GptCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _check_gpt_built(info, case)
            logits = as_array(_unpack_gpt(info["forward"], case, GPT, case.desc)[0], GPT)
            for key, pos in (("changed_last", case.T - 1), ("changed_mid", case.T // 2)):
                other = as_array(_unpack_gpt(info[key], case, GPT, case.desc)[0], GPT)
                if other.shape != logits.shape:
                    fail(f"{GPT} returned logits of another shape when one token changed.")
                moved = np.abs(other[:, :pos] - logits[:, :pos]).max() if pos else 0.0
                if moved > 1e-5:
                    fail(f"Changing only the token at position {pos} changed your logits at "
                         f"earlier positions (by up to {fmt(float(moved))}; {case.desc}): the "
                         "model sees the future. Every block must use a causal mask (GPTBlock "
                         "from attnlab does); nothing else in the model may mix positions.")
    return compare


GPT_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=12), B=2, T=7", 11, 16, 4, 2, 12, 2, 7, 781),
    GptCase("TinyGPT(7, 8, 2, 1, max_len=6), B=3, T=6 (the whole context)", 7, 8, 2, 1, 6, 3,
            6, 782),
]
GPT_HIDDEN_CASES = [
    GptCase("TinyGPT(13, 24, 3, 3, max_len=20), B=2, T=9", 13, 24, 3, 3, 20, 2, 9, 7781),
    GptCase("TinyGPT(5, 8, 1, 2, max_len=4), B=1, T=1 (a single token)", 5, 8, 1, 2, 4, 1, 1,
            7782),
]
CACHE_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=16), B=2: 6 tokens, then 3 more", 11, 16, 4, 2, 16,
            2, 6, 791, T2=3),
]
CACHE_HIDDEN_CASES = [
    GptCase("TinyGPT(9, 12, 3, 3, max_len=14), B=3: 6 tokens, then 1 more", 9, 12, 3, 3, 14, 3,
            6, 7791, T2=1),
    GptCase("TinyGPT(7, 8, 2, 1, max_len=10), B=1: 2 tokens, then 7 more", 7, 8, 2, 1, 10, 1, 2,
            7792, T2=7),
]
CAUSAL_CASES = [
    GptCase("TinyGPT(11, 16, 4, 2, max_len=12), B=2, T=8", 11, 16, 4, 2, 12, 2, 8, 7793),
]

register("gpt.logits", "TinyGPT: the parts exist and the logits match the reference",
         _record_gpt(GPT_CASES), _compare_gpt_logits(GPT_CASES))
register("gpt.logits_hidden", "TinyGPT: more sizes, three layers, a single token",
         _record_gpt(GPT_HIDDEN_CASES), _compare_gpt_logits(GPT_HIDDEN_CASES))
register("gpt.causal", "TinyGPT: changing a later token leaves earlier logits unchanged",
         _record_gpt(CAUSAL_CASES, causal=True), _compare_gpt_causal(CAUSAL_CASES))
register("gpt.cache", "TinyGPT: the cache holds each layer's keys and values, grows, and gives "
         "the same logits", _record_gpt(CACHE_CASES, cached=True),
         _compare_gpt_cache(CACHE_CASES))
register("gpt.cache_hidden", "TinyGPT: the cache with three layers, one new token, a long "
         "continuation", _record_gpt(CACHE_HIDDEN_CASES, cached=True),
         _compare_gpt_cache(CACHE_HIDDEN_CASES))


# ============================================================================= generate


def _gen_guard() -> Guard:
    label = OURS.format("generate")
    # generate is wrapped by @torch.no_grad(), whose wrapper code every decorated function
    # shares: guard the function inside it
    return Guard((), [(label, inspect.unwrap(ref_generate)), (label, ref_decoder._next_token)])


class _Spy(nn.Module):
    """A language model, noting each call: (tokens fed, cached positions or None)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.max_len = model.max_len
        self.calls: list[tuple[int, int | None]] = []

    def forward(self, idx: Tensor, cache=None):
        self.calls.append((int(idx.shape[-1]), None if cache is None else _cache_len(cache)))
        return self.model(idx, cache)


def _cache_len(cache) -> int:
    try:
        return int(cache[0][0].size(-2))
    except Exception:  # not a list of (keys, values): the reference will complain
        return -1


@dataclass(frozen=True)
class GenCase:
    desc: str
    sizes: tuple[int, int, int, int, int]  # TinyGPT(vocab, d_model, n_heads, n_layers, max_len)
    B: int
    T: int  # prompt length
    new: int  # max_new_tokens
    seed: int
    temperature: float = 0.0
    use_cache: bool = False
    same_prompt: bool = False  # every row of the batch is the same prompt (for frequencies)

    @property
    def vocab(self) -> int:
        return self.sizes[0]

    def kwargs(self, generator_seed: int | None = None) -> dict:
        kw = {"temperature": self.temperature, "use_cache": self.use_cache}
        if generator_seed is not None:
            kw["generator"] = torch.Generator().manual_seed(generator_seed)
        return kw


def _prompt(case: GenCase) -> Tensor:
    g = torch.Generator().manual_seed(case.seed + 1)
    if case.same_prompt:
        return torch.randint(0, case.vocab, (1, case.T), generator=g).expand(case.B, -1).clone()
    return torch.randint(0, case.vocab, (case.B, case.T), generator=g)  # (B, T)


class _PrefixLM(nn.Module):
    """A small causal language model with TinyGPT's interface, to run ``generate`` on.

    ``forward(idx, cache=None)`` takes the new tokens (B, T) and returns logits (B, T, vocab)
    and a cache: a list of ``n_layers`` (keys, values) pairs of shape (B, 1, T_so_far, d).
    Position t's logits read its own token and the mean embedding of the tokens 0..t, so
    they depend on the whole prefix, and feeding the cache gives exactly the same numbers as
    feeding everything again. It is not a transformer on purpose: the record half runs in
    the learner's kernel when a class is graded, where the course's TinyGPT is withheld.
    """

    def __init__(self, vocab: int, d_model: int, n_layers: int, max_len: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.max_len, self.n_layers = max_len, n_layers
        self.emb = nn.Parameter(torch.randn(vocab, d_model, generator=g))
        self.pos = nn.Parameter(0.5 * torch.randn(max_len, d_model, generator=g))
        self.out = nn.Parameter(3 * torch.randn(2 * d_model, vocab, generator=g)
                                / math.sqrt(2 * d_model))

    def forward(self, idx: Tensor, cache=None):
        t_past = 0 if cache is None else cache[0][0].size(-2)
        T = idx.size(1)
        if t_past + T > self.max_len:
            raise ValueError(f"{t_past} cached + {T} new tokens exceed max_len={self.max_len}")
        x = self.emb[idx] + self.pos[t_past:t_past + T]  # (B, T, d)
        keys = x[:, None]  # (B, 1, T, d)
        if cache is not None:
            keys = torch.cat([cache[0][0], keys], dim=-2)  # (B, 1, t_past + T, d)
        counts = torch.arange(1, keys.size(-2) + 1, dtype=x.dtype)[:, None]  # (t, 1)
        prefix = (keys.cumsum(-2) / counts)[:, 0, t_past:]  # (B, T, d)
        logits = torch.tanh(torch.cat([x, prefix], dim=-1)) @ self.out  # (B, T, vocab)
        return logits, [(keys, keys) for _ in range(self.n_layers)]


@lru_cache(maxsize=64)
def _prefix_lm(sizes: tuple[int, int, int, int, int], seed: int) -> _PrefixLM:
    vocab, d_model, _, n_layers, max_len = sizes
    return _PrefixLM(vocab, d_model, n_layers, max_len, seed).eval()


def _model(case: GenCase) -> _PrefixLM:
    return _prefix_lm(case.sizes, case.seed)


def _sample_seed(case: GenCase) -> int:
    return case.seed + 2


def _run_generate(fn, case: GenCase, generator_seed: int | None) -> dict:
    """One call on a spied model: the outcome, the calls, and whether the global stream moved."""
    spy = _Spy(_model(case))
    with torch.random.fork_rng():
        before = torch.random.get_rng_state()
        out = call(fn, spy, _prompt(case), case.new, guard=_gen_guard(),
                   **case.kwargs(generator_seed))
        moved = not torch.equal(before, torch.random.get_rng_state())
    return {"out": out, "calls": list(spy.calls), "global_moved": moved}


def _record_generate(cases: list[GenCase], twice: bool = False, both_modes: bool = False):
    def record(fn) -> dict:
        rec = {}
        for case in cases:
            seed = None if case.temperature == 0 else _sample_seed(case)
            info = {"first": _run_generate(fn, case, seed)}
            if twice:
                info["again"] = _run_generate(fn, case, seed)
            if both_modes:
                other = GenCase(case.desc, case.sizes, case.B, case.T, case.new, case.seed,
                                case.temperature, not case.use_cache, case.same_prompt)
                info["other_mode"] = _run_generate(fn, other, seed)
            rec[case.desc] = info
        return rec
    return record


@lru_cache(maxsize=256)
def _gen_reference(case: GenCase) -> np.ndarray:
    seed = None if case.temperature == 0 else _sample_seed(case)
    with torch.random.fork_rng():
        return _np(ref_generate(_model(case), _prompt(case), case.new, **case.kwargs(seed)))


@lru_cache(maxsize=256)
def _greedy_variant(case: GenCase, mode: str) -> np.ndarray:
    """Greedy rollouts with one mistake: "first" reads logits[:, 0], "prompt" never feeds back."""
    model, idx = _model(case), _prompt(case)
    with torch.no_grad():
        for _ in range(case.new):
            feed = _prompt(case) if mode == "prompt" else idx
            logits, _ = model(feed)
            pick = logits[:, 0] if mode == "first" else logits[:, -1]
            idx = torch.cat([idx, pick.argmax(-1, keepdim=True)], dim=1)
    return _np(idx)


M_FIRST = ("It matches picking each new token from the logits of the first position, "
           "logits[:, 0]. The prediction for the next token is at the last position: "
           "logits[:, -1].")
M_NO_FEEDBACK = ("It matches predicting every new token from the prompt alone: each new token "
                 "must be appended to the sequence and fed back in, "
                 "idx = torch.cat([idx, token], dim=1).")
M_CACHE_UNUSED = ("With use_cache=True, your generate never passed a cache to the model: every "
                  "call started from scratch. Keep the cache the model returns, "
                  "`logits, cache = model(feed, cache)`, and pass it to the next call.")
M_CACHE_FULL_FEED = ("With use_cache=True, your generate fed {fed} tokens together with a cache "
                     "of {cached}. The cache already holds the keys and values of every token "
                     "so far: after the first call, feed only the newest token, "
                     "`feed = token` (shape (B, 1)).")
M_CACHE_STUCK = ("With use_cache=True, your generate passed a cache of the same length ({n} "
                 "positions) at every step: it kept the first cache instead of the one each "
                 "call returns. Update it: `logits, cache = model(feed, cache)`.")
M_GLOBAL = ("drew from PyTorch's global random stream. Sampling must use the generator it is "
            "given: torch.multinomial(probs, 1, generator=generator).")


def _check_calls(info: dict, case: GenCase) -> None:
    calls = info["calls"]
    if not case.use_cache:
        if any(c is not None for _, c in calls):
            fail(f"{GEN} passed a cache to the model with use_cache=False ({case.desc}). "
                 "Without the cache, run the model on the whole sequence at every step, "
                 "model(idx), and keep the cache for use_cache=True.")
        return
    cached = [(fed, n) for fed, n in calls if n is not None]
    if calls and not cached and case.new > 1:
        fail(f"{M_CACHE_UNUSED} ({case.desc})")
    for fed, n in cached:
        if fed > 1:
            fail(f"{M_CACHE_FULL_FEED.format(fed=fed, cached=n)} ({case.desc})")
    lengths = [n for _, n in cached]
    if len(lengths) > 1 and len(set(lengths)) == 1:
        fail(f"{M_CACHE_STUCK.format(n=lengths[0])} ({case.desc})")


def _gen_tokens(info: dict, case: GenCase, what: str = GEN) -> np.ndarray:
    out = info["out"]
    if out.error and "probability tensor" in out.error and case.temperature == 0:
        fail(f"{what} raised {out.error} with temperature=0 ({case.desc}). Temperature 0 means "
             "greedy decoding: take the argmax of the logits instead of dividing by 0 and "
             "sampling.")
    got = as_array(check_outcome(out, what, case.desc), what, case.desc)
    B, T, n = case.B, case.T, case.new
    if got.shape == (B, n):
        fail(f"{what} returned shape {got.shape}, only the new tokens ({case.desc}). It should "
             f"return the prompt followed by the new tokens, (B, T + max_new_tokens) = "
             f"{(B, T + n)}: start from idx = prompt and append each token to it.")
    if got.ndim == 2 and got.shape[0] == B and got.shape[1] in (T + n - 1, T + n + 1) \
            and got.shape[1] >= T:
        fail(f"{what} returned {got.shape[1] - T} new tokens instead of max_new_tokens = {n} "
             f"({case.desc}): check the loop runs exactly max_new_tokens times.")
    expect_shape(got, (B, T + n), f"What {what.lower()} returned", case.desc,
                 hint="generate returns the prompt followed by the new tokens.")
    prompt = _np(_prompt(case))
    if not np.array_equal(got[:, :T], prompt):
        fail(f"The first {T} tokens {what.lower()} returned are not the prompt ({case.desc}): "
             "return the prompt followed by the new tokens.")
    return got


def _compare_greedy(cases: list[GenCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]["first"]
            if info["out"].forbidden:
                check_outcome(info["out"], GEN, case.desc)
            _check_calls(info, case)
            got = _gen_tokens(info, case)
            want = _gen_reference(case)
            if np.array_equal(got, want):
                if info["global_moved"]:
                    fail(f"With temperature=0, {GEN.lower()} {M_GLOBAL} Greedy decoding needs "
                         f"no randomness at all: take the argmax ({case.desc}).")
                continue
            for message, mode in ((M_FIRST, "first"), (M_NO_FEEDBACK, "prompt")):
                if np.array_equal(got, _greedy_variant(case, mode)):
                    fail(f"{GEN} does not give the greedy tokens ({case.desc}). {message}")
            if info["global_moved"] or case.temperature == 0:
                first = int(np.argmax(got[:, case.T:] != want[:, case.T:]))
                fail(f"With temperature=0 {GEN.lower()} should pick the most likely token at "
                     f"every step (greedy decoding), but new token {first} differs from the "
                     f"argmax rollout ({case.desc}). Use logits[:, -1].argmax(-1, keepdim=True) "
                     "when temperature == 0, with no sampling.")
            fail(f"{GEN} gives other tokens than the reference ({case.desc}).")
    return compare


def _compare_cache(cases: list[GenCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            entry = rec[case.desc]
            info = entry["first"]
            if info["out"].forbidden:
                check_outcome(info["out"], GEN, case.desc)
            _check_calls(info, case)
            got = _gen_tokens(info, case)
            want = _gen_reference(case)
            other = entry.get("other_mode")
            if other is not None and not other["out"].error:
                other_case = GenCase(case.desc, case.sizes, case.B, case.T, case.new, case.seed,
                                     case.temperature, not case.use_cache, case.same_prompt)
                _check_calls(other, other_case)
                got_other = _gen_tokens(other, other_case)
                if not np.array_equal(got, got_other):
                    fail(f"With the same generator seed, {GEN.lower()} gives other tokens with "
                         f"use_cache=True than with use_cache=False ({case.desc}). The cache "
                         "only saves work: both must compute the same logits, so they draw the "
                         "same tokens.")
            if not np.array_equal(got, want):
                fail(f"With use_cache={case.use_cache}, {GEN.lower()} gives other tokens than "
                     f"the reference ({case.desc}). Feed the prompt first, then one token at a "
                     "time with the cache the previous call returned.")
    return compare


def _frequencies(got: np.ndarray, vocab: int) -> np.ndarray:
    return np.bincount(got.astype(np.int64).ravel(), minlength=vocab)[:vocab] / got.size


@lru_cache(maxsize=64)
def _next_logits(case: GenCase) -> Tensor:
    with torch.no_grad():
        return _model(case)(_prompt(case)[:1])[0][0, -1]  # (vocab,)


def _compare_sampling(cases: list[GenCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            entry = rec[case.desc]
            info = entry["first"]
            if info["out"].forbidden:
                check_outcome(info["out"], GEN, case.desc)
            got = _gen_tokens(info, case)
            if info["global_moved"]:
                fail(f"{GEN} {M_GLOBAL} ({case.desc})")
            again = _gen_tokens(entry["again"], case)
            if not np.array_equal(got, again):
                fail(f"Two calls with generators seeded alike gave different tokens "
                     f"({case.desc}): your sampling does not depend on the generator alone. "
                     "Draw every sample with it: torch.multinomial(probs, 1, "
                     "generator=generator).")
            _check_frequencies(got, case)
    return compare


def _check_frequencies(got: np.ndarray, case: GenCase) -> None:
    T, logits = case.temperature, _next_logits(case)
    freq = _frequencies(got[:, case.T:], case.vocab)
    want = _np(torch.softmax(logits / T, dim=-1))
    tol = 0.03
    if np.abs(freq - want).max() <= tol:
        return
    onehot = np.eye(case.vocab)[int(logits.argmax())]
    candidates = [
        ("Your samples follow softmax(logits), as if the temperature were 1: dividing the "
         "probabilities by the temperature after the softmax changes nothing once they are "
         "renormalised (torch.multinomial does that). Divide the logits before the softmax: "
         "torch.softmax(logits / temperature, dim=-1).", _np(torch.softmax(logits, dim=-1))),
        ("Your samples follow softmax(logits * temperature): divide the logits by the "
         "temperature instead, so that a high temperature flattens the distribution.",
         _np(torch.softmax(logits * T, dim=-1))),
        ("Your generate always picks the most likely token, even with temperature > 0. Greedy "
         "is for temperature == 0 only; otherwise sample: torch.multinomial(probs, 1, "
         "generator=generator).", onehot),
        ("Your samples are spread evenly over the vocabulary: sample from the model's "
         "probabilities, torch.softmax(logits / temperature, dim=-1), not uniformly.",
         np.full(case.vocab, 1 / case.vocab)),
    ]
    for message, dist in candidates:
        if np.abs(freq - dist).max() <= tol:
            fail(f"{message} ({case.desc})")
    worst = int(np.argmax(np.abs(freq - want)))
    fail(f"Over {case.B} samples of the first new token, token {worst} came up "
         f"{freq[worst]:.1%} of the time, but softmax(logits / {T:g}) gives it {want[worst]:.1%} "
         f"({case.desc}). Sample from torch.softmax(logits[:, -1] / temperature, dim=-1) with "
         "torch.multinomial(probs, 1, generator=generator).")


GEN_SIZES = (11, 16, 4, 2, 16)
GREEDY_CASES = [
    GenCase("temperature=0, a prompt of B=2 rows and 3 tokens, 6 new tokens", GEN_SIZES, 2, 3,
            6, 801),
]
GREEDY_HIDDEN_CASES = [
    GenCase("temperature=0, B=1, a 1-token prompt, 10 new tokens", (7, 8, 2, 1, 12), 1, 1, 10,
            7801),
    GenCase("temperature=0, B=3, a 5-token prompt, 1 new token", GEN_SIZES, 3, 5, 1, 7802),
    GenCase("temperature=0, B=2, a 4-token prompt, 0 new tokens (the prompt itself)",
            GEN_SIZES, 2, 4, 0, 7803),
]
CACHE_GEN_CASES = [
    GenCase("use_cache=True, temperature=0, B=2, a 3-token prompt, 6 new tokens", GEN_SIZES,
            2, 3, 6, 811, use_cache=True),
]
CACHE_GEN_HIDDEN_CASES = [
    GenCase("use_cache=True, temperature=0, three layers, B=3, a 4-token prompt, 8 new tokens",
            (13, 24, 3, 3, 14), 3, 4, 8, 7811, use_cache=True),
    GenCase("use_cache=True, temperature=1.0, B=2, a 2-token prompt, 9 new tokens",
            GEN_SIZES, 2, 2, 9, 7812, temperature=1.0, use_cache=True),
    GenCase("use_cache=True, temperature=0.7, B=4, a 1-token prompt, 5 new tokens",
            (7, 8, 2, 1, 8), 4, 1, 5, 7813, temperature=0.7, use_cache=True),
]
SAMPLING_CASES = [
    GenCase("temperature=0.5, 8000 copies of one 3-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 3, 1, 821, temperature=0.5, same_prompt=True),
]
SAMPLING_HIDDEN_CASES = [
    GenCase("temperature=2.0, 8000 copies of one 2-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 2, 1, 7821, temperature=2.0, same_prompt=True),
    GenCase("temperature=1.0, 8000 copies of one 4-token prompt, 1 new token",
            (6, 16, 2, 1, 8), 8000, 4, 1, 7822, temperature=1.0, same_prompt=True),
]

register("generate.greedy", "generate: temperature=0 is the argmax rollout, returned after the "
         "prompt", _record_generate(GREEDY_CASES), _compare_greedy(GREEDY_CASES))
register("generate.greedy_hidden", "generate: greedy with one-token prompts, one and zero new "
         "tokens", _record_generate(GREEDY_HIDDEN_CASES), _compare_greedy(GREEDY_HIDDEN_CASES))
register("generate.cache", "generate: use_cache=True feeds one token at a time with a growing "
         "cache and gives the same tokens", _record_generate(CACHE_GEN_CASES, both_modes=True),
         _compare_cache(CACHE_GEN_CASES))
register("generate.cache_hidden", "generate: cached and uncached sampling give the same tokens",
         _record_generate(CACHE_GEN_HIDDEN_CASES, both_modes=True),
         _compare_cache(CACHE_GEN_HIDDEN_CASES))
register("generate.sampling", "generate: samples softmax(logits / T) with the given generator",
         _record_generate(SAMPLING_CASES, twice=True), _compare_sampling(SAMPLING_CASES))
register("generate.sampling_hidden", "generate: temperatures 1 and 2 sample the right "
         "distribution", _record_generate(SAMPLING_HIDDEN_CASES, twice=True),
         _compare_sampling(SAMPLING_HIDDEN_CASES))
