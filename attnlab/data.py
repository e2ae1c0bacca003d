"""Small, deterministic toy data for the lessons (made here, never downloaded)."""

from __future__ import annotations

import numpy as np

# French-English word pairs of the toy translation; each pair shares a meaning vector.
TRANSLATION_PAIRS = (("le", "the"), ("chat", "cat"), ("noir", "black"), ("dort", "sleeps"))


def translation_toy(dim: int = 8, noise: float = 0.3, seed: int = 0):
    """Word vectors for "le chat noir dort" -> "the black cat sleeps".

    Returns ``(french_tokens, french_vectors, english_tokens, english_vectors)`` where a
    word and its translation share a random meaning vector plus a little noise, standing in
    for the encoder and decoder states a trained model would learn.
    """
    rng = np.random.default_rng(seed)
    meaning = {fr: rng.normal(size=dim) for fr, _ in TRANSLATION_PAIRS}
    to_fr = {en: fr for fr, en in TRANSLATION_PAIRS}
    french = ["le", "chat", "noir", "dort"]
    english = ["the", "black", "cat", "sleeps"]  # English puts the adjective first
    fr_vecs = np.stack([meaning[w] + noise * rng.normal(size=dim) for w in french])
    en_vecs = np.stack([meaning[to_fr[w]] + noise * rng.normal(size=dim) for w in english])
    return french, fr_vecs, english, en_vecs


def toy_sentence_embeddings(tokens, dim: int = 8, seed: int = 1) -> np.ndarray:
    """One fixed random vector per distinct token (the same token always gets the same one)."""
    rng = np.random.default_rng(seed)
    table = {tok: rng.normal(size=dim) for tok in dict.fromkeys(tokens)}
    return np.stack([table[t] for t in tokens])
