"""Lesson 09's checks against realistic wrong answers: each gets the message meant for it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import attnlab
from attnlab import MultiHeadAttention
from attnlab.minilm import course_layer_from_bert
from autograder.checks import REGISTRY

from .wrong_answers import fails, passes, row_test

LESSON09 = sorted(cid for cid, c in REGISTRY.items()
                  if c.record.__module__ == "autograder.checks.lesson09.cases")
LAYER_IDS = [cid for cid in LESSON09 if cid.startswith(("bert_layer.", "minilm."))]
TO_IDS = [cid for cid in LESSON09 if cid.startswith("attention_to.")]


def not_written(*args, **kwargs):
    raise NotImplementedError()


# --------------------------------------------------------------------------- layer_from_bert

RENAME = {  # BERT's module name -> the course's, written out independently of attnlab.minilm
    "attention.self.query": "self_attn.q_proj", "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj", "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1", "intermediate.dense": "ff.linear1",
    "output.dense": "ff.linear2", "output.LayerNorm": "norm2",
}


def make_layer(weights, n_heads, rename=RENAME, transform=lambda name, t: t, cls=None,
               **config):
    """Build an EncoderLayer and load BERT's tensors through a (possibly wrong) renaming."""
    d_ff, d_model = weights["intermediate.dense.weight"].shape
    settings = {"norm_first": False, "activation": "gelu", "eps": 1e-12, **config}
    with torch.random.fork_rng():
        layer = (cls or attnlab.EncoderLayer)(d_model, n_heads, d_ff, **settings)
    state = {f"{ours}.{p}": transform(bert, weights[f"{bert}.{p}"])
             for bert, ours in rename.items() for p in ("weight", "bias")}
    layer.load_state_dict(state)
    return layer.eval()


def good_layer(weights, n_heads):
    return make_layer(weights, n_heads)


def swapped(a, b):
    rename = dict(RENAME)
    rename[a], rename[b] = RENAME[b], RENAME[a]
    return lambda weights, n_heads: make_layer(weights, n_heads, rename=rename)


def transposed_attention(weights, n_heads):
    return make_layer(weights, n_heads, transform=lambda name, t: t.T if (
        name.startswith("attention.") and t.dim() == 2) else t)


def transposed_everything(weights, n_heads):
    return make_layer(weights, n_heads, transform=lambda name, t: t.T if t.dim() == 2 else t)


def default_eps(weights, n_heads):
    return make_layer(weights, n_heads, eps=1e-5)


def relu(weights, n_heads):
    return make_layer(weights, n_heads, activation="relu")


def pre_norm(weights, n_heads):
    return make_layer(weights, n_heads, norm_first=True)


def returns_state_dict(weights, n_heads):
    return make_layer(weights, n_heads).state_dict()


def forgets_return(weights, n_heads):
    make_layer(weights, n_heads)


def full_names(weights, n_heads):
    d_ff, d_model = weights["encoder.layer.0.intermediate.dense.weight"].shape
    return make_layer(weights, n_heads)


def calls_course(weights, n_heads):
    return course_layer_from_bert(weights, n_heads)


class MyLayerNorm(nn.Module):
    """A learner's own LayerNorm from lesson 06."""

    def __init__(self, d_model, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model))

    def forward(self, x):
        mean, var = x.mean(-1, keepdim=True), x.var(-1, unbiased=False, keepdim=True)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias


class MyFeedForward(nn.Module):
    def __init__(self, d_model, d_ff, activation="relu"):
        super().__init__()
        self.act = F.gelu if activation == "gelu" else F.relu
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)

    def forward(self, x):
        return self.linear2(self.act(self.linear1(x)))


class MyEncoderLayer(nn.Module):
    """A learner's own post/pre-norm EncoderLayer from lesson 06, pasted into lesson 09."""

    def __init__(self, d_model, n_heads, d_ff, dropout=0.0, norm_first=False,
                 activation="relu", eps=1e-5):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = MyFeedForward(d_model, d_ff, activation)
        self.norm1, self.norm2 = MyLayerNorm(d_model, eps), MyLayerNorm(d_model, eps)

    def forward(self, x, mask=None, return_weights=False):
        if self.norm_first:
            h = self.norm1(x)
            attn, weights = self.self_attn(h, h, h, mask)
            x = x + attn
            x = x + self.ff(self.norm2(x))
        else:
            attn, weights = self.self_attn(x, x, x, mask)
            x = self.norm1(x + attn)
            x = self.norm2(x + self.ff(x))
        return (x, weights) if return_weights else x


def own_classes(weights, n_heads):
    return make_layer(weights, n_heads, cls=MyEncoderLayer)


def own_classes_default_eps(weights, n_heads):
    return make_layer(weights, n_heads, cls=MyEncoderLayer, eps=1e-5)


QK = ("attention.self.query", "attention.self.key")
NORMS = ("attention.output.LayerNorm", "output.LayerNorm")
VALUE_OUT = ("attention.self.value", "attention.output.dense")

WRONG_MAPPINGS = [
    ("bert_layer.weights", swapped(*QK), "query-key-swapped",
     "holds BERT.s `attention.self.key.weight`.*query and key are swapped"),
    ("bert_layer.weights", swapped(*NORMS), "norms-swapped", "the two LayerNorms are swapped"),
    ("bert_layer.weights", swapped(*VALUE_OUT), "value-out-swapped",
     "value and output projections are swapped"),
    ("bert_layer.weights", transposed_attention, "", "transposed.*without .T"),
    ("bert_layer.weights", transposed_everything, "", "did not fit.*without .T"),
    ("bert_layer.weights", returns_state_dict, "", "returned an OrderedDict.*the layer itself"),
    ("bert_layer.weights", forgets_return, "", "returned None"),
    ("bert_layer.weights", full_names, "", "KeyError.*without the encoder.layer.N. prefix"),
    ("bert_layer.weights", calls_course, "", "course's own mapping"),
    ("bert_layer.config", default_eps, "", "eps = 1e-5, PyTorch.s default.*eps=1e-12"),
    ("bert_layer.config", own_classes_default_eps, "", "eps = 1e-5"),
    ("bert_layer.config", relu, "", "uses ReLU.*exact GELU"),
    ("bert_layer.config", pre_norm, "", "pre-norm.*norm_first=False"),
    ("bert_layer.forward", pre_norm, "", "pre-norm"),
    ("bert_layer.forward", relu, "", "ReLU"),
    ("bert_layer.forward", swapped(*QK), "query-key-swapped", "query and key swapped"),
    ("bert_layer.forward", swapped(*NORMS), "norms-swapped", "LayerNorms swapped"),
    ("minilm.hidden_states", relu, "", "differ from the real model's"),
]

MAPPING_ROWS = [
    # a correct mapping passes every layer check, with the course's or a learner's classes
    *passes(good_layer, *LAYER_IDS, name="course-classes"),
    *passes(own_classes, *LAYER_IDS, name="own-classes"),
    # the untouched exercise is "not written yet" everywhere
    *[fails(not_written, cid, "not written yet") for cid in LAYER_IDS],
    *[fails(fn, cid, message, name=name) for cid, fn, name, message in WRONG_MAPPINGS],
    # eps = 1e-5 in the layers stays below 1e-4 on MiniLM (so the config check must catch it)
    *passes(default_eps, "minilm.hidden_states"),
    # a mapping mistake costs only the checks that see it (config still passes)
    *passes(swapped(*QK), "bert_layer.config", name="query-key-swapped"),
    *passes(swapped(*NORMS), "bert_layer.config", name="norms-swapped"),
]


# --------------------------------------------------------------------------- attention_to


def good_to(tokens, weights, word):
    """Written independently: numpy, argsort with a stable sort on the negated row."""
    w = weights.detach().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    lowered = [t.lower() for t in tokens]
    if word.lower() not in lowered:
        raise ValueError(f"no token {word!r} in this sentence")
    row = w[lowered.index(word.lower())]
    return [(tokens[j], float(row[j])) for j in np.argsort(-row, kind="stable")]


def rows_of(tokens, weights, word):
    lowered = [t.lower() for t in tokens]
    return weights[lowered.index(word.lower())]


def ascending(tokens, weights, word):
    return sorted(((t, float(w)) for t, w in zip(tokens, rows_of(tokens, weights, word),
                                                   strict=True)), key=lambda p: p[1])


def column(tokens, weights, word):
    i = [t.lower() for t in tokens].index(word.lower())
    return sorted(((t, float(w)) for t, w in zip(tokens, weights[:, i], strict=True)),
                  key=lambda p: p[1], reverse=True)


def indices(tokens, weights, word):
    row = rows_of(tokens, weights, word)
    return sorted(((j, float(w)) for j, w in enumerate(row)), key=lambda p: p[1], reverse=True)


def tensors_not_floats(tokens, weights, word):
    return sorted(zip(tokens, rows_of(tokens, weights, word), strict=True),
                  key=lambda p: float(p[1]), reverse=True)


def numpy_scalars(tokens, weights, word):
    w = weights.numpy() if isinstance(weights, torch.Tensor) else weights
    return sorted(zip(tokens, w[[t.lower() for t in tokens].index(word.lower())], strict=True),
                  key=lambda p: p[1], reverse=True)


def last_occurrence(tokens, weights, word):
    where = {t.lower(): i for i, t in enumerate(tokens)}  # a later duplicate overwrites
    row = weights[where[word.lower()]]
    return sorted(((t, float(w)) for t, w in zip(tokens, row, strict=True)),
                  key=lambda p: p[1], reverse=True)


def case_sensitive(tokens, weights, word):
    row = weights[tokens.index(word)]
    return sorted(((t, float(w)) for t, w in zip(tokens, row, strict=True)),
                  key=lambda p: p[1], reverse=True)


def without_itself(tokens, weights, word):
    i = [t.lower() for t in tokens].index(word.lower())
    return sorted(((t, float(w)) for j, (t, w) in enumerate(zip(tokens, weights[i], strict=True))
                   if j != i), key=lambda p: p[1], reverse=True)


def silent_when_missing(tokens, weights, word):
    lowered = [t.lower() for t in tokens]
    if word.lower() not in lowered:
        return []
    return good_to(tokens, weights, word)


def index_error_when_missing(tokens, weights, word):
    i = np.where(np.array([t.lower() for t in tokens]) == word.lower())[0][0]
    row = weights[int(i)]
    return sorted(((t, float(w)) for t, w in zip(tokens, row, strict=True)),
                  key=lambda p: p[1], reverse=True)


def lowercased_tokens(tokens, weights, word):
    return [(t.lower(), w) for t, w in good_to(tokens, weights, word)]


def weight_first(tokens, weights, word):
    return [(w, t) for t, w in good_to(tokens, weights, word)]


def sentence_order(tokens, weights, word):
    return [(t, float(w)) for t, w in zip(tokens, rows_of(tokens, weights, word), strict=True)]


def top_three(tokens, weights, word):
    return good_to(tokens, weights, word)[:3]


def calls_course_to(tokens, weights, word):
    return attnlab.attention_to(tokens, weights, word)


WRONG_TO = [
    ("attention_to.row", ascending, "smallest weight up"),
    ("attention_to.row", column, "COLUMN.*ROW, weights\\[i\\]"),
    ("attention_to.row", indices, "positions \\(integers\\) instead of tokens"),
    ("attention_to.row", without_itself, "leaves out the word itself"),
    ("attention_to.row", lowercased_tokens, "in lower case"),
    ("attention_to.row", weight_first, "\\(weight, token\\) pairs"),
    ("attention_to.row", sentence_order, "sentence order"),
    ("attention_to.row", top_three, "returned 3 pairs but the sentence has 16 tokens"),
    ("attention_to.row", calls_course_to, "course's own attention_to"),
    ("attention_to.hidden", last_occurrence, "last 'the'.*FIRST occurrence"),
    ("attention_to.hidden", case_sensitive, "without regard to case"),
    ("attention_to.pairs", tensors_not_floats, "torch Tensor.*float\\(row\\[j\\]\\)"),
    ("attention_to.pairs", numpy_scalars, "float32, not a Python float"),
    ("attention_to.missing", silent_when_missing, "returned an answer.*not in the sentence"),
    ("attention_to.missing", index_error_when_missing, "IndexError.*does not say which word"),
]

TO_ROWS = [
    *passes(good_to, *TO_IDS),  # numpy, stable argsort
    *[fails(not_written, cid, "not written yet") for cid in TO_IDS],
    *[fails(fn, cid, message) for cid, fn, message in WRONG_TO],
    # a learner who forgets float() is told so once (pairs), not also on the values
    *passes(tensors_not_floats, "attention_to.row"),
]


# --------------------------------------------------------------------------- the rows

ROWS = [*MAPPING_ROWS, *TO_ROWS]

test_row = row_test(ROWS)


def test_every_lesson09_check_is_exercised():
    """Are lesson 09's check ids the six layer checks and the four attention_to checks?"""
    assert set(LESSON09) == set(LAYER_IDS) | set(TO_IDS)
    assert len(LAYER_IDS) == 6 and len(TO_IDS) == 4
