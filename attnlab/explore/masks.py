"""Lesson 04: word vectors for a toy sentence, a mask plot, and a mask builder over a sentence."""

from __future__ import annotations

import html
import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch

from attnlab.plots import attention_heatmap

SENTENCE = ("the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired")
PAD = "<pad>"


def word_vectors(words: Sequence[str], d_model: int = 8) -> torch.Tensor:
    """(len(words), d_model): one fixed random vector per word, seeded by the word itself.

    The same word always gets the same vector, whatever the sentence; the padding token
    "<pad>" is the zero vector.
    """
    rows = []
    for word in words:
        if word == PAD:
            rows.append(torch.zeros(d_model))
            continue
        g = torch.Generator().manual_seed(zlib.crc32(word.encode("utf-8")))
        rows.append(torch.randn(d_model, generator=g))
    return torch.stack(rows) if rows else torch.zeros(0, d_model)  # (L, d_model)


def toy_projections(d_model: int = 8, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """W_q, W_k, W_v, each (d_model, d_model), from a seeded generator (x @ W gives q, k, v)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(d_model, d_model, generator=g) * (1.5 / math.sqrt(d_model))
                 for _ in range(3))


def mask_heatmap(mask, query_tokens: Sequence[str], key_tokens: Sequence[str] | None = None,
                 title: str = "Mask (bright = may attend)", ax=None):
    """Draw one (Lq, Lk) bool mask: bright cells may be attended to, dark ones are blocked."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    m = mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)
    m = m.astype(float)
    if m.ndim != 2:
        raise ValueError(f"mask_heatmap takes one (Lq, Lk) mask, got shape {m.shape}")
    key_tokens = list(query_tokens if key_tokens is None else key_tokens)
    if ax is None:
        size = max(3.0, 0.45 * max(m.shape) + 1.5)
        _, ax = plt.subplots(figsize=(size + 1, size))
    two_colours = ListedColormap(plt.cm.cividis([0.05, 0.95]))  # blocked, may attend
    image = ax.imshow(m, cmap=two_colours, vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(key_tokens)), key_tokens, rotation=60, ha="right")
    ax.set_yticks(range(len(query_tokens)), query_tokens)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title)
    bar = ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, ticks=[0.25, 0.75])
    bar.ax.set_yticklabels(["blocked\n(False)", "may attend\n(True)"])
    return ax


def _builder_tokens(tokens: Sequence[str], n_real: int, side: str) -> list[str]:
    pads = [PAD] * (len(tokens) - n_real)
    real = list(tokens[:n_real])
    return pads + real if side == "left" else real + pads


def build_mask(L: int, n_real: int, padding: bool, causal: bool, side: str) -> torch.Tensor:
    """(L, L) bool mask for one sequence of n_real tokens padded to L (True = may attend)."""
    mask = torch.ones(L, L, dtype=torch.bool)
    if padding:
        real = torch.arange(L) < n_real  # (L,): right padding, real tokens first
        mask = mask & (real.flip(0) if side == "left" else real)[None, :]  # keys only
    if causal:
        mask = mask & torch.ones(L, L, dtype=torch.bool).tril()
    return mask


def mask_builder(attention, tokens: Sequence[str] = SENTENCE, d_model: int = 8, seed: int = 0):
    """Toggle a padding mask (length, side) and a causal mask over a sentence; see both maps.

    ``attention(q, k, v, mask) -> (output, weights)`` is the learner's ``masked_attention``
    (the course's own is withheld while lesson 04 is graded). If it raises, the builder shows
    the mask and says why the weights are missing.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    L = len(tokens)
    W_q, W_k, W_v = toy_projections(d_model, seed)
    padding = widgets.Checkbox(value=True, description="padding mask")
    length = widgets.IntSlider(value=6, min=0, max=L, description="real tokens",
                               continuous_update=False)
    side = widgets.ToggleButtons(options=["right", "left"], value="right",
                                 description="pad on the")
    causal = widgets.Checkbox(value=False, description="causal mask")
    caption = widgets.HTML()
    out = widgets.Output()

    def draw(change=None) -> None:
        labels = _builder_tokens(tokens, length.value, side.value)
        x = word_vectors(labels, d_model)  # (L, d_model)
        mask = build_mask(L, length.value, padding.value, causal.value, side.value)  # (L, L)
        try:
            _, weights = attention(x @ W_q, x @ W_k, x @ W_v, mask)  # (L, L)
        except Exception as err:  # an unfinished exercise: show the mask, say why
            weights = None
            failure = f"{type(err).__name__}: {err}".strip().rstrip(":")
        empty = [labels[i] + f" (position {i})" for i in range(L) if not mask[i].any()]
        note = []
        if length.value < L and not padding.value:
            note.append("The padding mask is off: real words give weight to the "
                        "<code>&lt;pad&gt;</code> keys, and their outputs now depend on "
                        "how much padding the batch needed.")
        if empty:
            note.append(f"<b>{len(empty)} quer{'y has' if len(empty) == 1 else 'ies have'} no "
                        f"key left</b> ({', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''}"
                        "): their rows are all zeros. Lesson 02's attention would give NaN "
                        "there; <code>masked_attention</code> gives zero weights and a zero "
                        "output.")
        if weights is None:
            note = [f"Your <code>masked_attention</code> raised <code>{html.escape(failure)}"
                    "</code>: the weights appear here once exercise 3 works."]
        if not note:
            note.append("Every query has at least one key it may attend to; each row of "
                        "weights sums to 1.")
        caption.value = "<p>" + "<br>".join(note) + "</p>"
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.4))
            mask_heatmap(mask, labels, title="Mask (bright = may attend)", ax=ax1)
            if weights is None:
                ax2.set_axis_off()
                ax2.set_title("Attention weights: write masked_attention first")
            else:
                attention_heatmap(weights, labels, title="Attention weights with this mask",
                                  ax=ax2, annotate=False)
            fig.tight_layout()
            plt.show()

    for widget in (padding, length, side, causal):
        widget.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([padding, length, side]), causal, caption, out])
