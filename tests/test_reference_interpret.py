"""Lesson 09's reference attention_to on hand-made attention matrices."""

import numpy as np
import pytest
import torch

from autograder.reference import attention_to

TOKENS = ["[CLS]", "The", "trophy", "did", "not", "fit", "because", "it", "was", "big", "[SEP]"]


def weights_for(row_index, row):
    """A uniform (L, L) matrix whose row row_index is replaced by row."""
    L = len(TOKENS)
    w = np.full((L, L), 1 / L)
    w[row_index] = row
    return w


def test_attention_to_sorts_the_words_row():
    """Does attention_to return every (token, weight) of the word's row, largest first?"""
    row = np.array([0.05, 0.05, 0.5, 0.0, 0.0, 0.1, 0.0, 0.2, 0.0, 0.1, 0.0])
    result = attention_to(TOKENS, weights_for(7, row), "it")
    assert [t for t, _ in result[:3]] == ["trophy", "it", "fit"]
    assert len(result) == len(TOKENS) and all(isinstance(w, float) for _, w in result)
    assert sorted(w for _, w in result) == sorted(row.tolist())
    assert [w for _, w in result] == sorted(row.tolist(), reverse=True)


def test_attention_to_keeps_sentence_order_for_ties():
    """Do tokens with equal weights keep their order in the sentence?"""
    row = np.zeros(len(TOKENS))
    row[[9, 2, 5]] = 0.25
    row[0] = 0.25
    result = attention_to(TOKENS, weights_for(7, row), "it")
    assert [t for t, _ in result[:4]] == ["[CLS]", "trophy", "fit", "big"]
    assert [t for t, _ in result[4:]] == [t for i, t in enumerate(TOKENS) if row[i] == 0]


def test_attention_to_is_case_insensitive_and_takes_the_first_match():
    """Do "The" and "the" both find the first token spelled that way, whatever the case?"""
    tokens = ["the", "cat", "saw", "The", "dog"]
    w = np.eye(5)
    assert attention_to(tokens, w, "THE")[0] == ("the", 1.0)
    assert attention_to(tokens, torch.tensor(w, dtype=torch.float32), "Dog")[0] == ("dog", 1.0)


def test_attention_to_accepts_tensors_with_grad():
    """Does a torch tensor that requires grad work like a numpy array?"""
    w = torch.softmax(torch.randn(4, 4, generator=torch.Generator().manual_seed(0)), -1)
    w.requires_grad_(True)
    tokens = ["a", "b", "c", "d"]
    assert attention_to(tokens, w, "c") == attention_to(tokens, w.detach().numpy(), "c")


def test_attention_to_explains_a_missing_word():
    """Does a word that is not in the sentence raise a ValueError naming it and the tokens?"""
    with pytest.raises(ValueError, match="'suitcase' is not among the tokens"):
        attention_to(TOKENS, weights_for(0, np.full(len(TOKENS), 0.1)), "suitcase")


def test_attention_to_rejects_mismatched_shapes():
    """Does a weight matrix of the wrong size for the tokens raise a ValueError?"""
    with pytest.raises(ValueError, match="weights must be"):
        attention_to(TOKENS, np.ones((3, 3)), "it")
