"""Lesson 01, attention as retrieval: a numerically stable softmax and one query's attention.

Numpy only. Scores here are raw dot products; the 1/sqrt(d) scaling arrives in lesson 02.
"""

from __future__ import annotations

import numpy as np

# The exercise contract (docs/ARCHITECTURE.md, "The trust boundary"): the lesson that asks
# learners to write each kernel here. While that lesson, or an earlier one, is graded, the
# sandbox withholds it.
TAUGHT_IN = {"softmax": 1, "attend": 1}


def softmax(x, axis: int = -1) -> np.ndarray:
    """Softmax along `axis`, stable for large inputs: subtract the max before exp (float64)."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # the largest entry becomes exp(0) = 1
    return e / e.sum(axis=axis, keepdims=True)


def attend(query, keys, values) -> tuple[np.ndarray, np.ndarray]:
    """One query (d,) against keys (n, d): softmax of raw dot products, weighted mean of values."""
    query, keys, values = np.asarray(query), np.asarray(keys), np.asarray(values)
    if query.ndim != 1 or keys.ndim != 2 or values.ndim != 2:
        raise ValueError(
            f"expected query (d,), keys (n, d), values (n, d_v); got {query.shape}, "
            f"{keys.shape}, {values.shape}"
        )
    weights = softmax(keys @ query)  # (n,)
    return weights @ values, weights  # (d_v,), (n,)
