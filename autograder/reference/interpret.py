"""Lesson 09: reading one head's attention on a real sentence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {"attention_to": 9}


def attention_to(tokens: Sequence[str], weights, word: str) -> list[tuple[str, float]]:
    """(token, weight) for every key the first `word` (case-insensitive) attends to, largest first.

    weights is one layer/head's (L, L) matrix (tensor or array), rows = queries; ties keep
    sentence order.
    """
    if hasattr(weights, "detach"):  # a torch tensor
        weights = weights.detach().cpu().float().numpy()
    weights = np.asarray(weights)
    L = len(tokens)
    if weights.shape != (L, L):
        raise ValueError(f"weights must be ({L}, {L}) for {L} tokens, got {weights.shape}")
    lowered = [t.lower() for t in tokens]
    if word.lower() not in lowered:
        raise ValueError(f"{word!r} is not among the tokens {list(tokens)}")
    row = weights[lowered.index(word.lower())]  # (L,): the query's weights over keys
    order = sorted(range(L), key=lambda j: row[j], reverse=True)  # stable: ties keep order
    return [(tokens[j], float(row[j])) for j in order]
