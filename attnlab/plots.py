"""Plots shared by the lessons: titled, labelled, and readable by colour-blind viewers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _to_numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def attention_heatmap(weights, query_tokens: Sequence[str], key_tokens: Sequence[str] | None = None,
                      title: str = "Attention weights", ax=None, annotate: bool | None = None,
                      vmax: float | None = 1.0):
    """Draw one (Lq, Lk) weight matrix: rows are queries, columns are keys, cells in [0, 1]."""
    import matplotlib.pyplot as plt

    w = _to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"attention_heatmap takes one (Lq, Lk) matrix, got shape {w.shape}")
    key_tokens = list(query_tokens if key_tokens is None else key_tokens)
    if w.shape != (len(query_tokens), len(key_tokens)):
        raise ValueError(f"weights of shape {w.shape} do not match {len(query_tokens)} query "
                         f"and {len(key_tokens)} key tokens")
    if ax is None:
        size = max(3.0, 0.45 * max(w.shape) + 1.5)
        _, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(w, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(key_tokens)), key_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(query_tokens)), query_tokens)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    if annotate if annotate is not None else max(w.shape) <= 8:
        for i, j in np.ndindex(w.shape):
            ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=8,
                    color="black" if w[i, j] > 0.6 * (vmax or w.max() or 1) else "white")
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax
