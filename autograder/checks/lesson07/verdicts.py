"""Lesson 07's verdicts: reference oracles, known mistakes and messages (trusted side only).

``compare`` loads the fixed-seed values the record half loaded into the learner's module into
the reference (or into ``torch.nn.TransformerDecoderLayer``); ``generate``'s tokens are
compared with the reference's on the same ``PrefixLM``, and its calls (what was fed, how long
the cache was) with what a cache that is used and advanced gives.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from autograder.reference import DecoderLayer as RefDecoder
from autograder.reference import TinyGPT as RefGPT
from autograder.reference import generate as ref_generate

from .._core import Outcome
from .._module_verdicts import (
    blocked_weight,
    check_built,
    compare_cases,
    expect_layer,
    explain_layer_load,
    reference_module,
    reference_output,
    renamed_state,
    single_output,
    to_numpy,
    torch_attention_state,
)
from .._verdict import (
    Mistake,
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    first_close,
    fmt,
)
from .cases import (
    CACHE_CASES,
    CACHE_GEN_CASES,
    CACHE_GEN_HIDDEN_CASES,
    CACHE_HIDDEN_CASES,
    CAUSAL_CASES,
    GPT_CASES,
    GPT_HIDDEN_CASES,
    GREEDY_CASES,
    GREEDY_HIDDEN_CASES,
    LAYOUT_CASE,
    MASK_CASES,
    MASK_HIDDEN_CASES,
    POST_CASES,
    POST_HIDDEN_CASES,
    PRE_CASES,
    PRE_HIDDEN_CASES,
    SAMPLING_CASES,
    SAMPLING_HIDDEN_CASES,
    TORCH_POST_CASES,
    TORCH_PRE_CASES,
    DecCase,
    GenCase,
    GptCase,
    dec_inputs,
    dec_params,
    gen_model,
    gen_prompt,
    gpt_params,
    gpt_shapes,
    gpt_tokens,
    sample_seed,
)

DEC = "Your DecoderLayer"
GPT = "Your TinyGPT"
GEN = "Your generate"
SHAPE_WORDS = ("size of tensor", "shape", "broadcast", "must match", "mat1 and mat2",
               "dimension")


_np = to_numpy


def _is_tensor_record(value) -> bool:
    return isinstance(value, np.ndarray)


# ============================================================================= DecoderLayer


@lru_cache(maxsize=256)
def _ref_decoder(case: DecCase) -> RefDecoder:
    return reference_module(RefDecoder, (case.d_model, case.n_heads, case.d_ff),
                            {"norm_first": case.pre, "activation": case.act,
                             "eps": case.eps_value}, dec_params(case))


@lru_cache(maxsize=256)
def _dec_reference(case: DecCase) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, memory, self_mask, memory_mask = dec_inputs(case)
    with torch.no_grad():
        out, w = _ref_decoder(case)(x, memory, self_mask, memory_mask, return_weights=True)
    return _np(out), _np(w["self"]), _np(w["cross"])


@lru_cache(maxsize=256)
def _dec_torch(case: DecCase) -> np.ndarray:
    """The same weights in torch.nn.TransformerDecoderLayer (its bool masks: True = blocked)."""
    p = dec_params(case)
    state = {**torch_attention_state(p, "self_attn", "self_attn"),
             **torch_attention_state(p, "cross_attn", "multihead_attn"),
             **renamed_state(p, (("ff.linear1", "linear1"), ("ff.linear2", "linear2"),
                                 ("norm1", "norm1"), ("norm2", "norm2"), ("norm3", "norm3")))}
    layer = reference_module(nn.TransformerDecoderLayer, (case.d_model, case.n_heads, case.d_ff),
                             {"dropout": 0.0, "activation": case.act,
                              "layer_norm_eps": case.eps_value, "batch_first": True,
                              "norm_first": case.pre}, state)
    x, memory, self_mask, memory_mask = dec_inputs(case)
    kwargs = {}
    if self_mask is not None:
        kwargs["tgt_mask"] = ~self_mask
    if memory_mask is not None:
        kwargs["memory_mask"] = ~memory_mask
    return reference_output(layer, x, memory, **kwargs)


@lru_cache(maxsize=1024)
def _dec_variant(case: DecCase, *, form: str = "", kv: str = "memory", self_mask: str = "as_is",
                 memory_mask: str = "as_is", norms: tuple[str, str, str] = ("norm1", "norm2",
                                                                            "norm3"),
                 order: tuple[str, ...] = ("self", "cross", "ff"), norm_memory: bool = False,
                 res_from_norm: bool = False, resid: tuple[str, ...] = ("self", "cross", "ff"),
                 ) -> np.ndarray | None:
    """The layer with one deliberate wiring mistake (None when that mistake cannot run)."""
    ref = _ref_decoder(case)
    x, memory, s_mask, m_mask = dec_inputs(case)
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


def _dec_mistakes(case: DecCase) -> list[Mistake]:
    v = lambda **kw: _dec_variant(case, **kw)
    out: list[Mistake] = [
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
    fixes = {
        "self_attn": "self.self_attn = MultiHeadAttention(d_model, n_heads)",
        "cross_attn": "self.cross_attn = MultiHeadAttention(d_model, n_heads)",
        "ff": "self.ff = FeedForward(d_model, d_ff, activation)",
        "norm1": "self.norm1 = LayerNorm(d_model, eps)",
        "norm2": "self.norm2 = LayerNorm(d_model, eps)",
        "norm3": "self.norm3 = LayerNorm(d_model, eps)",
    }
    shapes = {path: tuple(value.shape) for path, value in dec_params(case).items()}
    explain_layer_load(seen, DEC, built, fixes, shapes, case.d_model, case.d_ff,
                       lambda path, top: f"{DEC} has no `{path}` ({built}). The exercise names "
                       "its parts self_attn, cross_attn, ff, norm1, norm2 and norm3 (from_torch "
                       f"and the checks load weights through these names): {fixes[top]}.")


def _expect_separate(shared: list) -> None:
    for a, b in shared:
        fail(f"{a} and {b} of your DecoderLayer are the same module: each sublayer needs its "
             f"own, with its own weights. Create them separately: self.{a} = ... and "
             f"self.{b} = ....")


def _check_dec_built(info: dict, case: DecCase) -> str:
    check_built(info, case.built, DEC, forbidden="This exercise asks you to wire the layer "
                "yourself from MultiHeadAttention, FeedForward and LayerNorm.")
    _expect_separate(info.get("shared", []))
    _dec_load_problem(info["seen"], case, case.built)
    return case.built


def _dec_output(out: Outcome, case: DecCase) -> np.ndarray:
    _dec_error(out, DEC, case)
    return single_output(out, DEC, case.desc)


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
    expect_layer(got, want, DEC, case.desc, lambda: _dec_mistakes(case),
                 against="the reference" if oracle == "reference" else
                 "torch.nn.TransformerDecoderLayer",
                 wiring="Pre-norm: x = x + self_attn(norm1(x)), x = x + cross_attn(norm2(x), "
                 "memory), x = x + ff(norm3(x))." if case.pre else
                 "Post-norm: x = norm1(x + self_attn(x)), x = norm2(x + cross_attn(x, memory)), "
                 "x = norm3(x + ff(x)).")
    return got


def _compare_decoder(cases: list[DecCase], oracle: str = "reference"):
    return compare_cases(cases, lambda info, case: _compare_decoder_case(info, case, oracle))


def _compare_dec_weights_case(info: dict, case: DecCase) -> None:
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
    _, _, self_mask, memory_mask = dec_inputs(case)
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
        if mask is not None and blocked_weight(w, mask) > 1e-6:
            name = "self_mask" if key == "self" else "memory_mask"
            fail(f'Your weights["{key}"] give weight to positions {name} blocks '
                 f"({case.desc}). Pass {name} on: {fix}.")
        if not close(w, want, atol=1e-5):
            fail(f'Your weights["{key}"] do not match the reference ({case.desc}): '
                 f"largest error {fmt(float(np.abs(w - want).max()))}. Return the "
                 f"weights that {key}_attn gives you.")


def _compare_dec_weights(cases: list[DecCase]):
    return compare_cases(cases, _compare_dec_weights_case)


def _compare_layout(rec: dict) -> None:
    case = LAYOUT_CASE
    built = case.desc
    check_outcome(rec["construct"], built)
    for name, kind in rec.get("attrs", {}).items():
        if kind == "NoneType":
            fail(f"{DEC} has no attribute `{name}` ({built}). The exercise names its parts "
                 "self_attn, cross_attn, ff, norm1, norm2 and norm3.")
    _expect_separate(rec.get("shared", []))
    _dec_load_problem(rec["seen"], case, built)
    x, _, _, _ = dec_inputs(case)
    ref = _ref_decoder(case)
    for name in ("norm1", "norm2", "norm3", "ff"):
        out = rec.get("parts", {}).get(name)
        if out is None:
            continue
        value = check_outcome(out, f"Your DecoderLayer's {name}", built)
        got = np.asarray(value) if _is_tensor_record(value) else None
        want = reference_output(getattr(ref, name), x)
        if got is not None and not close(got, want, atol=2e-5):
            if name == "ff":
                fail(f"Your DecoderLayer's ff does not compute the feed-forward sublayer with "
                     f"activation={case.act!r} ({built}): pass activation on, "
                     "FeedForward(d_model, d_ff, activation).")
            fail(f"Your DecoderLayer's {name} does not use eps={case.eps} ({built}): pass eps "
                 "on, LayerNorm(d_model, eps).")


# ============================================================================= TinyGPT


@lru_cache(maxsize=64)
def ref_gpt(case: GptCase) -> RefGPT:
    """The course's TinyGPT with the case's fixed-seed weights (``gpt_params``), in eval mode."""
    return reference_module(RefGPT, case.sizes, params=gpt_params(case))


@lru_cache(maxsize=256)
def _gpt_reference(case: GptCase) -> dict:
    model = ref_gpt(case)
    first, second = gpt_tokens(case)
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
    model = ref_gpt(case)
    first, nxt = gpt_tokens(case)
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


def _gpt_full_mistakes(case: GptCase) -> list[Mistake]:
    v = lambda **kw: _gpt_variant(case, **kw)
    out = [(M_NO_POS, v(pos="none")), (M_NO_LN_F, v(ln_f=False)), (M_SOFTMAX, v(softmax=True)),
           (M_NO_POS + " (And the final LayerNorm is missing too: apply self.ln_f before "
            "self.head.)", v(pos="none", ln_f=False))]
    return out


def _gpt_second_mistakes(case: GptCase) -> list[Mistake]:
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
    check_built(info, built, GPT, forbidden="This exercise asks you to assemble the model "
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
            want = dict(gpt_shapes(*case.sizes))[path]
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
                   mistakes: list[Mistake]) -> np.ndarray:
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


def _compare_gpt_logits_case(info: dict, case: GptCase) -> None:
    _check_gpt_built(info, case)
    logits, _ = _unpack_gpt(info["forward"], case, GPT, case.desc)
    want = _gpt_reference(case)["logits"]
    _expect_logits(logits, want, "Your logits", case.desc, _gpt_full_mistakes(case))


def _compare_gpt_logits(cases: list[GptCase]):
    return compare_cases(cases, _compare_gpt_logits_case)


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


def _compare_gpt_cache_case(info: dict, case: GptCase) -> None:
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


def _compare_gpt_cache(cases: list[GptCase]):
    return compare_cases(cases, _compare_gpt_cache_case)


def _compare_gpt_causal_case(info: dict, case: GptCase) -> None:
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


def _compare_gpt_causal(cases: list[GptCase]):
    return compare_cases(cases, _compare_gpt_causal_case)


# ============================================================================= generate


@lru_cache(maxsize=256)
def _gen_reference(case: GenCase) -> np.ndarray:
    with torch.random.fork_rng():
        return _np(ref_generate(gen_model(case), gen_prompt(case), case.new,
                                **case.kwargs(sample_seed(case))))


@lru_cache(maxsize=256)
def _greedy_variant(case: GenCase, mode: str) -> np.ndarray:
    """Greedy rollouts with one mistake: "first" reads logits[:, 0], "prompt" never feeds back."""
    model, idx = gen_model(case), gen_prompt(case)
    with torch.no_grad():
        for _ in range(case.new):
            feed = gen_prompt(case) if mode == "prompt" else idx
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
    prompt = _np(gen_prompt(case))
    if not np.array_equal(got[:, :T], prompt):
        fail(f"The first {T} tokens {what.lower()} returned are not the prompt ({case.desc}): "
             "return the prompt followed by the new tokens.")
    return got


def _first_run(entry: dict, case: GenCase) -> tuple[dict, np.ndarray, np.ndarray]:
    """The first recorded run: a forbidden call, then how the model was called, then the
    tokens; with the reference's tokens."""
    info = entry["first"]
    if info["out"].forbidden:
        check_outcome(info["out"], GEN, case.desc)
    _check_calls(info, case)
    return info, _gen_tokens(info, case), _gen_reference(case)


def _compare_greedy_case(entry: dict, case: GenCase) -> None:
    info, got, want = _first_run(entry, case)
    if np.array_equal(got, want):
        if info["global_moved"]:
            fail(f"With temperature=0, {GEN.lower()} {M_GLOBAL} Greedy decoding needs "
                 f"no randomness at all: take the argmax ({case.desc}).")
        return
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


def _compare_greedy(cases: list[GenCase]):
    return compare_cases(cases, _compare_greedy_case)


def _compare_cache_case(entry: dict, case: GenCase) -> None:
    _, got, want = _first_run(entry, case)
    other = entry.get("other_mode")
    if other is not None and not other["out"].error:
        other_case = case.other_mode()
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


def _compare_cache(cases: list[GenCase]):
    return compare_cases(cases, _compare_cache_case)


def _frequencies(got: np.ndarray, vocab: int) -> np.ndarray:
    return np.bincount(got.astype(np.int64).ravel(), minlength=vocab)[:vocab] / got.size


@lru_cache(maxsize=64)
def _next_logits(case: GenCase) -> Tensor:
    with torch.no_grad():
        return gen_model(case)(gen_prompt(case)[:1])[0][0, -1]  # (vocab,)


def _compare_sampling_case(entry: dict, case: GenCase) -> None:
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


def _compare_sampling(cases: list[GenCase]):
    return compare_cases(cases, _compare_sampling_case)


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


VERDICTS = {
    "decoder.layout": ("DecoderLayer: self_attn, cross_attn, ff, norm1-3 exist, are separate, "
                       "and receive eps and activation", _compare_layout),
    "decoder.post_norm": ("DecoderLayer: post-norm matches the reference",
                          _compare_decoder(POST_CASES)),
    "decoder.post_norm_hidden": ("DecoderLayer: post-norm with gelu, eps, one token and masks",
                                 _compare_decoder(POST_HIDDEN_CASES)),
    "decoder.torch_post": ("DecoderLayer: post-norm equals torch.nn.TransformerDecoderLayer",
                           _compare_decoder(TORCH_POST_CASES, "torch")),
    "decoder.pre_norm": ("DecoderLayer: pre-norm matches the reference",
                         _compare_decoder(PRE_CASES)),
    "decoder.pre_norm_hidden": ("DecoderLayer: pre-norm with gelu, eps, one token and masks",
                                _compare_decoder(PRE_HIDDEN_CASES)),
    "decoder.torch_pre": ("DecoderLayer: pre-norm equals torch.nn.TransformerDecoderLayer",
                          _compare_decoder(TORCH_PRE_CASES, "torch")),
    "decoder.masks": ("DecoderLayer: self_mask and memory_mask reach their attentions; "
                      "return_weights gives both", _compare_dec_weights(MASK_CASES)),
    "decoder.masks_hidden": ("DecoderLayer: padding and combined masks, weights in both "
                             "placements", _compare_dec_weights(MASK_HIDDEN_CASES)),
    "gpt.logits": ("TinyGPT: the parts exist and the logits match the reference",
                   _compare_gpt_logits(GPT_CASES)),
    "gpt.logits_hidden": ("TinyGPT: more sizes, three layers, a single token",
                          _compare_gpt_logits(GPT_HIDDEN_CASES)),
    "gpt.causal": ("TinyGPT: changing a later token leaves earlier logits unchanged",
                   _compare_gpt_causal(CAUSAL_CASES)),
    "gpt.cache": ("TinyGPT: the cache holds each layer's keys and values, grows, and gives the "
                  "same logits", _compare_gpt_cache(CACHE_CASES)),
    "gpt.cache_hidden": ("TinyGPT: the cache with three layers, one new token, a long "
                         "continuation", _compare_gpt_cache(CACHE_HIDDEN_CASES)),
    "generate.greedy": ("generate: temperature=0 is the argmax rollout, returned after the "
                        "prompt", _compare_greedy(GREEDY_CASES)),
    "generate.greedy_hidden": ("generate: greedy with one-token prompts, one and zero new "
                               "tokens", _compare_greedy(GREEDY_HIDDEN_CASES)),
    "generate.cache": ("generate: use_cache=True feeds one token at a time with a growing cache "
                       "and gives the same tokens", _compare_cache(CACHE_GEN_CASES)),
    "generate.cache_hidden": ("generate: cached and uncached sampling give the same tokens",
                              _compare_cache(CACHE_GEN_HIDDEN_CASES)),
    "generate.sampling": ("generate: samples softmax(logits / T) with the given generator",
                          _compare_sampling(SAMPLING_CASES)),
    "generate.sampling_hidden": ("generate: temperatures 1 and 2 sample the right "
                                 "distribution", _compare_sampling(SAMPLING_HIDDEN_CASES)),
}
