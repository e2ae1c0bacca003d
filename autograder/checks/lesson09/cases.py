"""Lesson 09's cases and record halves (run in the learner's kernel: no answers here).

``layer_from_bert(weights, n_heads)`` is called on a fixed-seed, small BERT-like layer
(restoring the global random stream afterwards); the record keeps the layer's parameters
(through the contract's names ``self_attn.q_proj`` ... ``norm2``), what its norms and
feed-forward do, and its forward pass. ``minilm.hidden_states`` runs the learner's mapping on
the real all-MiniLM-L6-v2 (handed out ready-made by lesson 09, so visible here).
``attention_to(tokens, weights, word)`` is called on fixed-seed weight matrices; its answer is
recorded as plain data (tokens, numbers, and the types they came in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from autograder.reference.pretrained import (
    BERT_TO_COURSE,
    MiniLMEncoder,
    course_layer_from_bert,
    load_minilm,
    tokenize,
)

from .._core import Guard, call, get_path
from .._modules import course_kernels

PARAMS = [f"{ours}.{p}" for ours in BERT_TO_COURSE.values() for p in ("weight", "bias")]


def to_np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# --------------------------------------------------------------------------- layer_from_bert


def map_guard() -> Guard:
    return Guard((), [("the course's own mapping (attnlab.minilm.course_layer_from_bert)",
                       course_layer_from_bert)])


@dataclass(frozen=True)
class BertCase:
    desc: str
    d_model: int
    n_heads: int
    d_ff: int
    B: int
    L: int
    seed: int
    padding: bool = True  # the second batch item has padding at the end


def bert_weights(case: BertCase) -> dict[str, Tensor]:
    """A random BERT-like layer, BERT's names: Linear weights (out, in), LayerNorms near 1, 0."""
    g = torch.Generator().manual_seed(case.seed)
    d, h = case.d_model, case.d_ff
    shapes = {"attention.self.query": (d, d), "attention.self.key": (d, d),
              "attention.self.value": (d, d), "attention.output.dense": (d, d),
              "intermediate.dense": (h, d), "output.dense": (d, h)}
    weights = {}
    for name in BERT_TO_COURSE:
        if name in shapes:
            out_f, in_f = shapes[name]
            scale = 1.5 / math.sqrt(in_f)
            weights[f"{name}.weight"] = scale * torch.randn(out_f, in_f, generator=g)
            weights[f"{name}.bias"] = 0.3 * torch.randn(out_f, generator=g)
        else:  # a LayerNorm
            weights[f"{name}.weight"] = 1.0 + 0.4 * torch.randn(d, generator=g)
            weights[f"{name}.bias"] = 0.3 * torch.randn(d, generator=g)
    return weights


def layer_inputs(case: BertCase) -> tuple[Tensor, Tensor | None]:
    g = torch.Generator().manual_seed(case.seed + 1)
    x = torch.randn(case.B, case.L, case.d_model, generator=g)  # (B, L, d_model)
    if not case.padding:
        return x, None
    lengths = torch.full((case.B,), case.L)
    lengths[1:] = torch.randint(1, case.L, (case.B - 1,), generator=g)
    mask = torch.arange(case.L) < lengths[:, None]  # (B, L): True on real tokens
    return x, mask[:, None, None, :]  # (B, 1, 1, L): True = may attend


def flat_vectors(case: BertCase) -> Tensor:
    """Nearly constant vectors (variance about 1e-8): eps = 1e-12 and 1e-5 differ plainly."""
    g = torch.Generator().manual_seed(case.seed + 2)
    return 1e-4 * torch.randn(3, case.d_model, generator=g) + 1e-5  # (3, d_model)


def ff_input(case: BertCase) -> Tensor:
    g = torch.Generator().manual_seed(case.seed + 3)
    return 1.5 * torch.randn(2, 3, case.d_model, generator=g)  # (2, 3, d_model)


def record_layer_case(fn, case: BertCase) -> dict:
    holder: dict = {}

    def build(weights: dict, n_heads: int) -> object:
        with torch.random.fork_rng():  # their EncoderLayer's init draws from the global stream
            holder["layer"] = fn(weights, n_heads)
        return holder["layer"]

    info: dict = {"build": call(build, bert_weights(case), case.n_heads, guard=map_guard())}
    layer = holder.get("layer")
    info["kind"] = type(layer).__name__
    info["module"] = isinstance(layer, nn.Module)
    if not info["module"]:
        return info
    params = {}
    for path in PARAMS:
        try:
            value = get_path(layer, path)
        except Exception:  # AttributeError, or a property that raises
            params[path] = "missing"
            continue
        params[path] = (to_np(value).copy() if isinstance(value, torch.Tensor)
                        else f"not a tensor ({type(value).__name__})")
    info["params"] = params
    parts = {}
    for name in ("norm1", "norm2"):
        part = getattr(layer, name, None)
        parts[name] = call(part, flat_vectors(case)) if callable(part) else None
    ff = getattr(layer, "ff", None)
    parts["ff"] = call(ff, ff_input(case)) if callable(ff) else None
    info["parts"] = parts
    x, mask = layer_inputs(case)
    info["forward"] = call(layer, x, guard=map_guard())
    info["masked"] = call(lambda x, mask: layer(x, mask, return_weights=True), x, mask,
                          guard=map_guard())
    return info


def record_layer(cases: list[BertCase]):
    def record(fn) -> dict:
        return {case.desc: record_layer_case(fn, case) for case in cases}
    return record


WEIGHT_CASES = [
    BertCase("a BERT-like layer with d_model=8, 2 heads, d_ff=24", 8, 2, 24, 2, 5, 901),
]
WEIGHT_HIDDEN_CASES = [
    BertCase("a BERT-like layer with d_model=12, 3 heads, d_ff=20", 12, 3, 20, 2, 4, 9901),
]
CONFIG_CASES = [
    BertCase("a BERT-like layer with d_model=8, 2 heads, d_ff=24", 8, 2, 24, 2, 5, 911),
]
FORWARD_CASES = [
    BertCase("d_model=8, 2 heads, d_ff=24, B=2, L=5, the second sentence padded", 8, 2, 24,
             2, 5, 921),
]
FORWARD_HIDDEN_CASES = [
    BertCase("d_model=32, 4 heads, d_ff=64, B=3, L=7, padded sentences", 32, 4, 64, 3, 7,
             9921),
    BertCase("d_model=12, 3 heads, d_ff=48, a single token", 12, 3, 48, 1, 1, 9922,
             padding=False),
]

# ----- the real model: six of the learner's layers on all-MiniLM-L6-v2

MINILM_SENTENCES = ("The trophy did not fit in the suitcase because it was too big.",
                    "It was too small.")


def record_minilm(fn) -> dict:
    holder: dict = {}

    def run() -> None:
        tokenizer, config, state = load_minilm()
        with torch.random.fork_rng():
            encoder = MiniLMEncoder(config, state, fn)
        ids, real, _ = tokenize(tokenizer, MINILM_SENTENCES)
        with torch.no_grad():
            holder["hidden"] = encoder(ids, real)[0]  # (B, L, d_model)

    out = call(run, guard=map_guard())
    return {"run": out, "hidden": to_np(holder["hidden"]) if "hidden" in holder else None}


# --------------------------------------------------------------------------- attention_to


def to_guard() -> Guard:
    # the course's own attention_to by name (it is withheld while lesson 09 is graded)
    return Guard((), [("the course's own attention_to (attnlab)", fn)
                      for _, fn in course_kernels("attention_to")])


SENTENCE = ("[CLS]", "the", "trophy", "did", "not", "fit", "in", "the", "suitcase", "because",
            "it", "was", "too", "big", ".", "[SEP]")
CAT = ("[CLS]", "the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired", ".",
       "[SEP]")


@dataclass(frozen=True)
class ToCase:
    desc: str
    tokens: tuple[str, ...]
    word: str
    seed: int
    kind: str = "torch"  # "torch": float32 tensor; "numpy": float64 array


def to_weights(case: ToCase):
    L = len(case.tokens)
    g = torch.Generator().manual_seed(case.seed)
    w = torch.softmax(2.0 * torch.randn(L, L, generator=g), dim=-1)  # (L, L), rows sum to 1
    return w.double().numpy() if case.kind == "numpy" else w


def plain_value(v) -> tuple[str, object]:
    """A returned item as plain data: ("str", s), ("int", n), ("num", x) or ("other", repr)."""
    if isinstance(v, str):
        return ("str", str(v))
    if isinstance(v, (bool, np.bool_)):
        return ("other", repr(v))
    if isinstance(v, (int, np.integer)):
        return ("int", int(v))
    if hasattr(v, "detach") and getattr(v, "ndim", 1) == 0:
        return ("int", int(v)) if not v.is_floating_point() else ("num", float(v))
    try:
        return ("num", float(v))
    except Exception:  # anything else
        return ("other", repr(v)[:60])


def describe(result) -> dict:
    """What attention_to returned, as plain data with the Python types it came in."""
    kind = type(result).__name__
    if not isinstance(result, (list, tuple)):
        return {"container": kind, "items": None}
    items = []
    for item in list(result)[:200]:
        if isinstance(item, (tuple, list)) and len(item) == 2:
            items.append({"pair": True, "first": plain_value(item[0]),
                          "second": plain_value(item[1]), "second_type": type(item[1]).__name__,
                          "is_float": isinstance(item[1], float)})
        else:
            items.append({"pair": False, "type": type(item).__name__,
                          "value": plain_value(item)})
    return {"container": kind, "items": items, "length": len(result)}


def record_to_case(fn, case: ToCase) -> dict:
    holder: dict = {}

    def capture(tokens, weights, word) -> None:
        holder["result"] = fn(tokens, weights, word)

    out = call(capture, list(case.tokens), to_weights(case), case.word, guard=to_guard())
    return {"call": out, "result": describe(holder["result"]) if "result" in holder else None}


def record_to(cases: list[ToCase]):
    def record(fn) -> dict:
        return {case.desc: record_to_case(fn, case) for case in cases}
    return record


ROW_CASES = [
    ToCase("the trophy sentence (16 tokens), torch weights, word 'it'", SENTENCE, "it", 931),
    ToCase("'the cat sat on the mat because it was tired', word 'cat'", CAT, "cat", 932),
]
ROW_HIDDEN_CASES = [
    ToCase("a float64 numpy array, word 'it'", CAT, "it", 9931, kind="numpy"),
    ToCase("'the' appears twice: the first one counts", SENTENCE, "the", 9932),
    ToCase("word 'She' for the token 'she'", ("[CLS]", "anna", "said", "she", "was", "late",
                                             "[SEP]"), "She", 9933),
    ToCase("the token 'It' (capital) for word 'it'", ("It", "rained", "."), "it", 9934),
    ToCase("a single token", ("it",), "it", 9935),
]
TYPE_CASES = [ToCase("the trophy sentence, torch weights, word 'it'", SENTENCE, "it", 941)]
MISSING_CASES = [
    ToCase("word 'suitcase' in the cat sentence", CAT, "suitcase", 951),
]


RECORDS = {
    "bert_layer.weights": record_layer(WEIGHT_CASES),
    "bert_layer.weights_hidden": record_layer(WEIGHT_HIDDEN_CASES),
    "bert_layer.config": record_layer(CONFIG_CASES),
    "bert_layer.forward": record_layer(FORWARD_CASES),
    "bert_layer.forward_hidden": record_layer(FORWARD_HIDDEN_CASES),
    "minilm.hidden_states": record_minilm,
    "attention_to.row": record_to(ROW_CASES),
    "attention_to.hidden": record_to(ROW_HIDDEN_CASES),
    "attention_to.pairs": record_to(TYPE_CASES),
    "attention_to.missing": record_to(MISSING_CASES),
}
