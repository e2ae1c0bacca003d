"""Lesson 09's verdicts: reference oracles, known mistakes and messages (trusted side only).

``layer_from_bert``: the same BERT tensors are rebuilt and each part judged: where every
tensor went, the configuration BERT needs (post-norm, exact GELU, eps = 1e-12), and the
layer's output against the course's reference mapping (proven against transformers and
sentence-transformers in tests/test_minilm.py). ``attention_to``: the recorded answer against
the reference, with the known mistakes named.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from autograder.reference import EncoderLayer as RefEncoder
from autograder.reference import attention_to as ref_attention_to
from autograder.reference.pretrained import (
    BERT_TO_COURSE,
    MiniLMEncoder,
    MiniLMMissing,
    course_layer_from_bert,
    load_minilm,
    tokenize,
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
    CONFIG_CASES,
    FORWARD_CASES,
    FORWARD_HIDDEN_CASES,
    MINILM_SENTENCES,
    MISSING_CASES,
    PARAMS,
    ROW_CASES,
    ROW_HIDDEN_CASES,
    TYPE_CASES,
    WEIGHT_CASES,
    WEIGHT_HIDDEN_CASES,
    BertCase,
    ToCase,
    bert_weights,
    ff_input,
    flat_vectors,
    layer_inputs,
    to_np,
    to_weights,
)

MAP = "Your layer_from_bert"
LAYER = "The layer from your layer_from_bert"
TO = "Your attention_to"
COURSE_TO_BERT = {f"{ours}.{p}": f"{bert}.{p}" for bert, ours in BERT_TO_COURSE.items()
                  for p in ("weight", "bias")}
NO_TRANSPOSE = ("nn.Linear stores its weight as (out_features, in_features), exactly as BERT "
                "does: copy each tensor as it is, without .T.")


# ============================================================================= layer_from_bert


def _checked_build(info: dict, case: BertCase) -> None:
    """The call itself: not written, forbidden, raised, or returned no module."""
    out = info["build"]
    if out.error and not out.forbidden and out.error_type != "NotImplementedError":
        text = " ".join(line.strip() for line in out.error.splitlines()[:2])
        if any(s in text for s in ("size", "shape", "match")):
            fail(f"{MAP} raised {text} ({case.desc}). A tensor did not fit where you put it: "
                 f"{NO_TRANSPOSE} Check each BERT name against the course's name too "
                 "(intermediate.dense -> ff.linear1, output.dense -> ff.linear2).")
        if "KeyError" in text:
            fail(f"{MAP} raised {text} ({case.desc}). The weights dict uses BERT's names "
                 "without the encoder.layer.N. prefix, such as 'attention.self.query.weight': "
                 "print(sorted(weights)) to see them all.")
    check_outcome(out, MAP, case.desc)
    if not info["module"]:
        kind = info["kind"]
        got = "None (no return statement?)" if kind == "NoneType" else \
            f"{'an' if kind[0] in 'AEIOU' else 'a'} {kind}"
        fail(f"{MAP} returned {got} ({case.desc}). It should return the layer itself: an "
             "EncoderLayer (from attnlab, or your own from lesson 06) holding BERT's weights.")


def _layer_params(info: dict, case: BertCase) -> dict[str, np.ndarray]:
    """Every contract parameter present, a tensor, the right shape; returns them."""
    want = bert_weights(case)
    params = {}
    for path in PARAMS:
        value = info["params"][path]
        bert = COURSE_TO_BERT[path]
        shape = tuple(want[bert].shape)
        if isinstance(value, str):
            if value == "missing":
                fail(f"{LAYER} has no `{path}` ({case.desc}). Build it with the course's "
                     "EncoderLayer(d_model, n_heads, d_ff, ...): its parts are self_attn "
                     "(q_proj, k_proj, v_proj, out_proj), ff (linear1, linear2), norm1 and "
                     "norm2.")
            fail(f"`{path}` of your layer is {value[len('not a tensor '):]}, not a tensor "
                 f"({case.desc}).")
        if value.shape != shape:
            if value.shape == shape[::-1]:
                fail(f"`{path}` has shape {value.shape}, but BERT's `{bert}` has shape {shape} "
                     f"({case.desc}). Did you build the layer with d_model and d_ff swapped? "
                     "weights['intermediate.dense.weight'].shape is (d_ff, d_model).")
            fail(f"`{path}` has shape {value.shape} but should have shape {shape} "
                 f"({case.desc}): build the layer with d_model = {case.d_model}, "
                 f"n_heads = {case.n_heads} and d_ff = {case.d_ff}, read from the weights' "
                 "shapes.")
        params[path] = value
    return params


PAIR_MESSAGES = {
    frozenset({"attention.self.query", "attention.self.key"}):
        "query and key are swapped: attention.self.query goes into self_attn.q_proj and "
        "attention.self.key into self_attn.k_proj. (The scores q . k are not symmetric in "
        "the two maps, so the swap changes every attention weight.)",
    frozenset({"attention.output.LayerNorm", "output.LayerNorm"}):
        "the two LayerNorms are swapped. attention.output.LayerNorm closes the attention "
        "block (BERT's 'attention.output' is the attention sublayer's output): it is norm1. "
        "output.LayerNorm closes the whole layer, after the feed-forward: it is norm2.",
    frozenset({"attention.self.value", "attention.output.dense"}):
        "value and output projections are swapped: attention.self.value is v_proj (it makes "
        "the values, before the weighted average); attention.output.dense is out_proj (it "
        "mixes the merged heads, after it).",
    frozenset({"intermediate.dense", "output.dense"}):
        "the two feed-forward maps are swapped: intermediate.dense (d_model -> d_ff) is "
        "ff.linear1, output.dense (d_ff -> d_model) is ff.linear2.",
}


def _compare_weights(cases: list[BertCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _checked_build(info, case)
            params = _layer_params(info, case)
            bert = {k: to_np(v) for k, v in bert_weights(case).items()}
            for path in PARAMS:
                got, name = params[path], COURSE_TO_BERT[path]
                if close(got, bert[name], atol=1e-6, rtol=1e-6):
                    continue
                held = [other for other, value in bert.items()
                        if value.shape == got.shape and close(got, value, atol=1e-6, rtol=1e-6)]
                if held:
                    pair = frozenset({name.rsplit(".", 1)[0], held[0].rsplit(".", 1)[0]})
                    detail = PAIR_MESSAGES.get(
                        pair, f"Match each BERT name with its part: {name} belongs in {path}.")
                    fail(f"`{path}` holds BERT's `{held[0]}`, not `{name}` ({case.desc}): "
                         f"{detail}")
                if got.ndim == 2 and close(got, bert[name].T, atol=1e-6, rtol=1e-6):
                    fail(f"`{path}` holds BERT's `{name}` transposed ({case.desc}). "
                         f"{NO_TRANSPOSE}")
                fail(f"`{path}` does not hold BERT's `{name}` ({case.desc}); its first values "
                     f"are {fmt(float(got.ravel()[0]))}, ... instead of "
                     f"{fmt(float(bert[name].ravel()[0]))}, .... Copy "
                     f"weights['{name}'] into it (with torch.no_grad(): "
                     f"layer.{path}.copy_(...)).")
    return compare


def _ln(x: Tensor, w: Tensor, b: Tensor, eps: float) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * w + b


def _their(params: dict[str, np.ndarray], path: str) -> Tensor:
    return torch.from_numpy(np.asarray(params[path], dtype=np.float32))


def _ref_layer(state: dict[str, Tensor], case: BertCase, norm_first: bool = False,
               activation: str = "gelu") -> RefEncoder:
    """The course's EncoderLayer (eps 1e-12) holding a course-named state."""
    with torch.random.fork_rng():
        layer = RefEncoder(case.d_model, case.n_heads, case.d_ff, norm_first=norm_first,
                           activation=activation, eps=1e-12)
    layer.load_state_dict(state)
    return layer.eval()


def _ff(case: BertCase, params: dict[str, np.ndarray], act) -> np.ndarray:
    """linear2(act(linear1(u))) with the learner's own recorded ff weights."""
    w1, b1 = _their(params, "ff.linear1.weight"), _their(params, "ff.linear1.bias")
    w2, b2 = _their(params, "ff.linear2.weight"), _their(params, "ff.linear2.bias")
    return to_np(act(ff_input(case) @ w1.T + b1) @ w2.T + b2)


GELU_TANH = lambda t: F.gelu(t, approximate="tanh")


def _compare_config(cases: list[BertCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _checked_build(info, case)
            params = _layer_params(info, case)
            parts = info["parts"]
            for name in ("norm1", "norm2"):
                out = parts[name]
                if out is None:
                    fail(f"{LAYER} has no callable `{name}` ({case.desc}).")
                got = as_array(check_outcome(out, f"The layer's {name}", case.desc),
                               f"The layer's {name}")
                w, b = _their(params, f"{name}.weight"), _their(params, f"{name}.bias")
                z = flat_vectors(case)
                if close(got, to_np(_ln(z, w, b, 1e-12)), atol=1e-4, rtol=1e-3):
                    continue
                for eps, text in ((1e-5, "1e-5, PyTorch's default"), (1e-6, "1e-6")):
                    if close(got, to_np(_ln(z, w, b, eps)), atol=1e-4, rtol=1e-3):
                        fail(f"The layer's {name} uses eps = {text} ({case.desc}). BERT's "
                             "LayerNorms use eps = 1e-12 (config.json: layer_norm_eps): "
                             "build the layer with EncoderLayer(..., eps=1e-12). The "
                             "difference is small on vectors of ordinary size and large on "
                             "small ones (this test uses nearly constant vectors).")
                fail(f"The layer's {name} does not compute a layer norm with eps = 1e-12 and "
                     f"its own weight and bias ({case.desc}). Build the layer from the "
                     "course's EncoderLayer with eps=1e-12.")
            out = parts["ff"]
            if out is None:
                fail(f"{LAYER} has no callable `ff` ({case.desc}).")
            got = as_array(check_outcome(out, "The layer's ff", case.desc), "The layer's ff")
            if not close(got, _ff(case, params, F.gelu), atol=1e-4):
                if close(got, _ff(case, params, F.relu), atol=1e-4):
                    fail(f"The layer's feed-forward uses ReLU ({case.desc}). BERT uses the exact "
                         "GELU (config.json: hidden_act = \"gelu\"): build the layer with "
                         "activation=\"gelu\".")
                if close(got, _ff(case, params, GELU_TANH), atol=1e-4):
                    fail(f"The layer's feed-forward uses the tanh approximation of GELU "
                         f"({case.desc}). BERT's \"gelu\" is the exact one, F.gelu(x).")
                fail(f"The layer's feed-forward is not linear2(gelu(linear1(x))) with its own "
                     f"weights ({case.desc}). Build the layer with activation=\"gelu\".")
            state = {path: _their(params, path) for path in PARAMS}
            x, _ = layer_inputs(case)
            got = as_array(check_outcome(info["forward"], LAYER, case.desc), LAYER)
            expect_shape(got, tuple(x.shape), "The output of your layer", case.desc)
            with torch.no_grad():
                post = to_np(_ref_layer(state, case)(x))
                pre = to_np(_ref_layer(state, case, norm_first=True)(x))
            if close(got, post, atol=1e-4):
                continue
            if close(got, pre, atol=1e-4):
                fail(f"{LAYER} is pre-norm (norm_first=True) ({case.desc}). BERT is post-norm, "
                     "like the original Transformer: x = norm1(x + attn(x)), then "
                     "x = norm2(x + ff(x)). Build it with norm_first=False (the default).")
            fail(f"{LAYER} does not compute a post-norm encoder layer with its own weights "
                 f"({case.desc}): largest difference {fmt(float(np.abs(got - post).max()))}. "
                 "Use the course's EncoderLayer (or your own that passes lesson 06's tests).")
    return compare


def _forward_mistakes(case: BertCase) -> list[tuple[str, Tensor]]:
    """The layer's output for each known mapping mistake (all on the masked input)."""
    bert = bert_weights(case)
    x, mask = layer_inputs(case)

    def course_state(rename: dict[str, str] | None = None) -> dict[str, Tensor]:
        rename = rename or {}
        swap = {**rename, **{v: k for k, v in rename.items()}}
        out = {}
        for path, name in COURSE_TO_BERT.items():
            module, p = name.rsplit(".", 1)
            out[path] = bert[f"{swap.get(module, module)}.{p}"]
        return out

    def run(state, **kwargs) -> Tensor:
        with torch.no_grad():
            return _ref_layer(state, case, **kwargs)(x, mask, return_weights=True)

    return [
        ("It matches a pre-norm layer (norm_first=True). BERT is post-norm: build the layer "
         "with norm_first=False.", run(course_state(), norm_first=True)),
        ("It matches ReLU in the feed-forward. BERT uses the exact GELU: activation=\"gelu\".",
         run(course_state(), activation="relu")),
        ("It matches query and key swapped: attention.self.query -> self_attn.q_proj, "
         "attention.self.key -> self_attn.k_proj.",
         run(course_state({"attention.self.query": "attention.self.key"}))),
        ("It matches the two LayerNorms swapped: attention.output.LayerNorm -> norm1, "
         "output.LayerNorm -> norm2.",
         run(course_state({"attention.output.LayerNorm": "output.LayerNorm"}))),
        ("It matches value and output projections swapped: attention.self.value -> v_proj, "
         "attention.output.dense -> out_proj.",
         run(course_state({"attention.self.value": "attention.output.dense"}))),
    ]


def _compare_forward(cases: list[BertCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            info = rec[case.desc]
            _checked_build(info, case)
            what = f"{LAYER}, called with a padding mask and return_weights=True"
            out, weights = unpack_pair(check_outcome(info["masked"], what, case.desc), what,
                                       case=case.desc)
            x, mask = layer_inputs(case)
            with torch.no_grad():
                ref = course_layer_from_bert(bert_weights(case), case.n_heads)
                want_out, want_w = (to_np(t) for t in ref(x, mask, return_weights=True))
            expect_shape(out, want_out.shape, "The output of your layer", case.desc)
            expect_shape(weights, want_w.shape, "The attention weights of your layer",
                         case.desc, hint="They should be per head: (B, H, L, L).")
            expect_finite(out, "The output of your layer", case.desc)
            if close(out, want_out, atol=1e-4) and close(weights, want_w, atol=1e-5):
                continue
            for message, (wrong_out, _) in _forward_mistakes(case):
                if close(out, to_np(wrong_out), atol=1e-4):
                    fail(f"{LAYER} does not compute BERT's layer ({case.desc}). {message}")
            err = float(np.abs(out - want_out).max())
            fail(f"{LAYER} does not compute BERT's layer ({case.desc}): largest difference "
                 f"{fmt(err)} from the same weights in the course's reference. The tests "
                 "above (parameters, configuration) say which part differs.")
    return compare


# ----- the real model: six of the learner's layers on all-MiniLM-L6-v2

def _compare_minilm(rec: dict) -> None:
    out = rec["run"]
    if out.error_type == "MiniLMMissing":
        fail(out.error.split(": ", 1)[-1])
    check_outcome(out, MAP, "on all-MiniLM-L6-v2")
    got = np.asarray(rec["hidden"])
    try:
        tokenizer, config, state = load_minilm()
    except MiniLMMissing as exc:
        fail(str(exc))
    ids, real, _ = tokenize(tokenizer, MINILM_SENTENCES)
    keep = to_np(real)[..., None]
    with torch.no_grad():
        want = to_np(MiniLMEncoder(config, state)(ids, real)[0])
    expect_shape(got, want.shape, "MiniLM's hidden states with your layers", "2 sentences")
    expect_finite(got, "MiniLM's hidden states with your layers", "2 sentences")
    err = float(np.abs((got - want) * keep).max())
    if err > 1e-4:
        fail(f"With your layers MiniLM's hidden states differ from the real model's by up to "
             f"{fmt(err)} (the tolerance is 1e-4). The layer tests above say which part "
             "differs.")


# ============================================================================= attention_to


def _reference(case: ToCase, column: bool = False, index: int | None = None):
    w = np.asarray(to_weights(case), dtype=np.float64)
    if column:
        w = w.T
    if index is not None:  # the row of a given position (a mistake's choice of occurrence)
        row = w[index]
        return sorted(zip(case.tokens, row.tolist(), strict=True), key=lambda p: -p[1])
    return ref_attention_to(list(case.tokens), w, case.word)


def _same(pairs: list[tuple[str, float]], want: list[tuple[str, float]]) -> bool:
    return (len(pairs) == len(want) and all(a == c for (a, _), (c, _) in zip(pairs, want,
                                                                              strict=True))
            and np.allclose([b for _, b in pairs], [d for _, d in want], atol=1e-6, rtol=1e-5))


def _show(pairs, n: int = 3) -> str:
    return "[" + ", ".join(f"({t!r}, {w:.3f})" for t, w in pairs[:n]) + ", ...]"


def _checked_call(info: dict, case: ToCase) -> dict:
    out = info["call"]
    present = [t for t in case.tokens if t.lower() == case.word.lower()]
    if out.error and out.error_type != "NotImplementedError" and not out.forbidden \
            and present and case.word not in case.tokens:
        fail(f"{TO} raised {out.error} for word={case.word!r}, but the sentence has "
             f"{present[0]!r} ({case.desc}). Match without regard to case: compare "
             "word.lower() with each token.lower().")
    check_outcome(out, TO, case.desc)
    return info["result"]


def _pairs(result: dict, case: ToCase) -> list[tuple[str, float]]:
    """The returned pairs as (token, number); fails on anything that is not a list of pairs."""
    L = len(case.tokens)
    if result is None or result["items"] is None:
        kind = "None (no return statement?)" if result is None or \
            result["container"] == "NoneType" else f"a {result['container']}"
        fail(f"{TO} returned {kind} ({case.desc}). It should return a list of (token, "
             "weight) pairs, one per token, largest weight first.")
    items = result["items"]
    if items and not all(item["pair"] for item in items):
        bad = next(item for item in items if not item["pair"])
        fail(f"{TO} returned a list of {bad['type']} ({case.desc}); each item should be a "
             "pair (token, weight), e.g. ('trophy', 0.31).")
    firsts = [item["first"] for item in items]
    seconds = [item["second"] for item in items]
    if firsts and all(k == "num" for k, _ in firsts) and all(k == "str" for k, _ in seconds):
        fail(f"{TO} returns (weight, token) pairs ({case.desc}); the contract is (token, "
             "weight): put the token first.")
    if firsts and all(k == "int" for k, _ in firsts):
        fail(f"{TO} returns positions (integers) instead of tokens ({case.desc}): return "
             "tokens[j], the token itself, with its weight.")
    if any(k != "str" for k, _ in firsts):
        fail(f"{TO} returns tokens that are not strings ({case.desc}): the first item of each "
             "pair should be the token from `tokens`.")
    if any(k not in ("num", "int") for k, _ in seconds):
        fail(f"{TO} returns weights that are not numbers ({case.desc}).")
    pairs = [(t, float(w)) for (_, t), (_, w) in zip(firsts, seconds, strict=True)]
    if len(pairs) != L:
        got_tokens = sorted(t for t, _ in pairs)
        if len(pairs) == L - 1:
            missing = list(case.tokens)
            for t in got_tokens:
                if t in missing:
                    missing.remove(t)
            if missing and missing[0].lower() == case.word.lower():
                fail(f"{TO} leaves out the word itself ({case.desc}). Return every token of "
                     "the sentence, the word included: how much it attends to itself is part "
                     "of its row.")
        fail(f"{TO} returned {len(pairs)} pairs but the sentence has {L} tokens "
             f"({case.desc}): return one (token, weight) pair per token, all of them.")
    return pairs


def _compare_row(cases: list[ToCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            pairs = _pairs(_checked_call(rec[case.desc], case), case)
            want = _reference(case)
            if _same(pairs, want):
                continue
            lowered = [(t.lower(), w) for t, w in want]
            if _same(pairs, lowered) and lowered != want:
                fail(f"{TO} returns the tokens in lower case ({case.desc}). Lower-case only to "
                     "find the word; return the tokens as they are in `tokens`.")
            ascending = list(reversed(want))
            index = [t.lower() for t in case.tokens].index(case.word.lower())
            row = np.asarray(to_weights(case), dtype=np.float64)[index]
            in_order = list(zip(case.tokens, row.tolist(), strict=True))
            mistakes = [
                ("The pairs are sorted from the smallest weight up: sort largest first, "
                 "sorted(..., key=lambda p: p[1], reverse=True).", ascending),
                ("It matches the word's COLUMN, weights[:, i]: how much every token attends "
                 "to the word. This exercise asks for the ROW, weights[i]: what the word "
                 "attends to (the row of a query holds its weights over the keys).",
                 _reference(case, column=True)),
                ("It matches the word's column, weights[:, i], sorted smallest first: take "
                 "the row weights[i] and sort largest first.",
                 list(reversed(_reference(case, column=True)))),
                ("The pairs are in sentence order: sort them by weight, largest first.",
                 in_order),
            ]
            positions = [j for j, t in enumerate(case.tokens) if t.lower() == case.word.lower()]
            if len(positions) > 1:
                mistakes.append(
                    (f"It matches the row of the last {case.word!r} (position "
                     f"{positions[-1]}). Use the FIRST occurrence, position {positions[0]}: "
                     "list.index finds it.", _reference(case, index=positions[-1])))
            for message, wrong in mistakes:
                if _same(pairs, wrong):
                    fail(f"{TO} does not match the reference ({case.desc}). {message}")
            if any(a[1] < b[1] - 1e-9 for a, b in zip(pairs, pairs[1:], strict=False)):
                fail(f"{TO} does not return the pairs largest weight first ({case.desc}): "
                     f"yours start {_show(pairs)}.")
            fail(f"{TO} does not match the reference ({case.desc}): yours start "
                 f"{_show(pairs)}, expected {_show(want)}. Take the row of the word, "
                 "weights[i] with i its first position, and pair each token with its weight.")
    return compare


def _compare_types(cases: list[ToCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            result = _checked_call(rec[case.desc], case)
            _pairs(result, case)
            for item in result["items"]:
                if item["is_float"]:
                    continue
                kind = item["second_type"]
                if kind == "Tensor":
                    fail(f"{TO} returns each weight as a torch Tensor (a 0-d tensor), not a "
                         f"Python float ({case.desc}). Convert it: float(row[j]) or "
                         "row[j].item().")
                fail(f"{TO} returns each weight as a {kind}, not a Python float "
                     f"({case.desc}). Convert it with float(...).")
            if result["container"] != "list":
                fail(f"{TO} returns a {result['container']}; the contract is a list of "
                     "(token, weight) pairs: wrap it in list(...).")
    return compare


def _compare_missing(cases: list[ToCase]):
    def compare(rec: dict) -> None:
        for case in cases:
            out = rec[case.desc]["call"]
            if out.error_type == "NotImplementedError" or out.forbidden:
                check_outcome(out, TO, case.desc)
            if out.error is None:
                fail(f"{TO} returned an answer for word={case.word!r}, which is not in the "
                     f"sentence ({case.desc}). Raise an error that says so, e.g. "
                     f"raise ValueError(f\"{{word!r}} is not among the tokens {{tokens}}\").")
            if case.word.lower() not in out.error.lower():
                fail(f"{TO} raised {out.error} for a word that is not in the sentence "
                     f"({case.desc}); the message does not say which word is missing. Check "
                     "first and raise a clear error: raise ValueError(f\"{word!r} is not "
                     "among the tokens {tokens}\").")
    return compare


VERDICTS = {
    "bert_layer.weights": ("layer_from_bert: every BERT tensor lands in its place, "
                           "untransposed", _compare_weights(WEIGHT_CASES)),
    "bert_layer.weights_hidden": ("layer_from_bert: another layer size",
                                  _compare_weights(WEIGHT_HIDDEN_CASES)),
    "bert_layer.config": ("layer_from_bert: post-norm, exact GELU, LayerNorm eps = 1e-12",
                          _compare_config(CONFIG_CASES)),
    "bert_layer.forward": ("layer_from_bert: the layer computes BERT's layer, padding mask "
                           "included", _compare_forward(FORWARD_CASES)),
    "bert_layer.forward_hidden": ("layer_from_bert: a wider layer and a single token",
                                  _compare_forward(FORWARD_HIDDEN_CASES)),
    "minilm.hidden_states": ("layer_from_bert: all-MiniLM-L6-v2 built from your layers gives "
                             "the real model's hidden states (to 1e-4)", _compare_minilm),
    "attention_to.row": ("attention_to: the word's row, every token, largest weight first",
                         _compare_row(ROW_CASES)),
    "attention_to.hidden": ("attention_to: numpy input, first occurrence, any case",
                            _compare_row(ROW_HIDDEN_CASES)),
    "attention_to.pairs": ("attention_to: a list of (str, float) pairs",
                           _compare_types(TYPE_CASES)),
    "attention_to.missing": ("attention_to: a word that is not there raises a clear error",
                             _compare_missing(MISSING_CASES)),
}
