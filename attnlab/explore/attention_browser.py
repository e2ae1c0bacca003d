"""Lesson 09: one word's attention in a real model, layer by layer and head by head.

``sentences`` maps a short label ("big", "small") to ``(tokens, weights)``: the sentence's L
tokens and its attention weights ``(n_layers, H, L, L)`` (rows: queries, columns: keys).
The sentences must have the same number of tokens (the coreference pair differs in one word).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from attnlab.plots import attention_heatmap


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().float().numpy() if hasattr(x, "detach") else np.asarray(x, float)


def _prepare(sentences: Mapping[str, tuple[Sequence[str], object]], word: str):
    """Labels, token lists, weights (n_layers, H, L, L) as numpy, each word's row index."""
    labels = list(sentences)
    tokens = [list(sentences[k][0]) for k in labels]
    weights = [_numpy(sentences[k][1]) for k in labels]
    for label, toks, w in zip(labels, tokens, weights, strict=True):
        if w.ndim != 4 or w.shape[-2:] != (len(toks), len(toks)):
            raise ValueError(f"{label!r}: weights must be (n_layers, H, L, L) with L = "
                             f"{len(toks)} tokens, got {w.shape}")
    if len({len(t) for t in tokens}) != 1:
        raise ValueError("the sentences must have the same number of tokens")
    rows = []
    for toks in tokens:
        lowered = [t.lower() for t in toks]
        if word.lower() not in lowered:
            raise ValueError(f"{word!r} is not among the tokens {toks}")
        rows.append(lowered.index(word.lower()))
    return labels, tokens, weights, rows


def merged_labels(tokens: Sequence[Sequence[str]]) -> list[str]:
    """One label per position: the token, or "big/small" where the sentences differ."""
    return ["/".join(dict.fromkeys(column)) for column in zip(*tokens, strict=True)]


def word_attention_by_layer(sentences: Mapping[str, tuple[Sequence[str], object]],
                            word: str = "it"):
    """One heatmap per sentence: rows are layers, columns the keys, colour = word's weight
    averaged over heads (the word's row of each layer's head-averaged weights)."""
    import matplotlib.pyplot as plt

    labels, tokens, weights, rows = _prepare(sentences, word)
    n_layers, H, L, _ = weights[0].shape
    fig, axes = plt.subplots(1, len(labels), figsize=(6.2 * len(labels), 0.5 * n_layers + 2.4),
                             squeeze=False)
    vmax = max(float(w[:, :, r].mean(1).max()) for w, r in zip(weights, rows, strict=True))
    for ax, label, toks, w, r in zip(axes[0], labels, tokens, weights, rows, strict=True):
        grid = w[:, :, r].mean(1)  # (n_layers, L): the word's row, averaged over heads
        image = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
        for i, j in np.ndindex(grid.shape):
            ax.text(j, i, f"{grid[i, j]:.2f}"[1:] if grid[i, j] < 1 else "1.0", ha="center",
                    va="center", fontsize=6.5,
                    color="black" if grid[i, j] > 0.6 * vmax else "white")
        ax.set_xticks(range(L), toks, rotation=60, ha="right")
        ax.set_yticks(range(n_layers), [f"layer {n}" for n in range(n_layers)])
        ax.set_xlabel(f"key (what {word!r} attends to)")
        ax.set_ylabel("layer")
        ax.set_title(f"{label}: row of {word!r}, mean over {H} heads")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02, label="weight")
    fig.suptitle(f"What {word!r} attends to in each layer (each row sums to 1)")
    fig.tight_layout()
    return fig


def value_weighted_shares(layer, x, mask=None):
    """Kobayashi et al. (2020): ||sum_h w[h, i, j] * (v_j W_O^h)||, normalised over keys j.

    layer: a course EncoderLayer (self_attn with v_proj and out_proj), x its input
    (B, L, d_model). Returns (B, L, L): for query i, each key's share of the size of what the
    attention sublayer adds (out_proj's bias, shared by all keys, left out).
    """
    import torch

    attn = layer.self_attn
    with torch.no_grad():
        _, weights = layer.self_attn(x, x, x, mask)  # (B, H, L, L)
        B, H, L, _ = weights.shape
        v = attn.v_proj(x).unflatten(-1, (H, -1))  # (B, L, H, d_head)
        w_out = attn.out_proj.weight.unflatten(-1, (H, -1))  # (d_model, H, d_head)
        moved = torch.einsum("blhe,dhe->bhld", v, w_out)  # (B, H, L, d_model): key j via head h
        vectors = torch.einsum("bhij,bhjd->bijd", weights, moved)  # (B, Lq, Lk, d_model)
        size = vectors.norm(dim=-1)  # (B, Lq, Lk)
    return size / size.sum(-1, keepdim=True)


def plot_weight_and_share(tokens: Sequence[str], weight_row, share_row, title: str):
    """Two bars per key: the head-averaged weight and the value-weighted share of one query."""
    import matplotlib.pyplot as plt

    weight_row, share_row = _numpy(weight_row), _numpy(share_row)
    L = len(tokens)
    fig, ax = plt.subplots(figsize=(9, 3.4))
    xs = np.arange(L)
    ax.bar(xs - 0.2, weight_row, width=0.4, color=plt.cm.viridis(0.25),
           label="attention weight (mean over heads)")
    ax.bar(xs + 0.2, share_row, width=0.4, color=plt.cm.viridis(0.75),
           label="share of ||weight x transformed value||")
    ax.set_xticks(xs, tokens, rotation=60, ha="right")
    ax.set_xlabel("key")
    ax.set_ylabel("fraction (sums to 1)")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def attention_browser(sentences: Mapping[str, tuple[Sequence[str], object]], word: str = "it"):
    """Layer slider, head menu (or the average over heads), sentence toggle; returns a VBox.

    Left: the chosen sentence's full (L, L) map for that layer and head, the word's row
    framed. Right: the word's row (what it attends to) in every sentence, side by side.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    labels, tokens, weights, rows = _prepare(sentences, word)
    n_layers, H, L, _ = weights[0].shape
    layer = widgets.IntSlider(value=n_layers - 1, min=0, max=n_layers - 1, description="layer",
                              continuous_update=True)
    head = widgets.Dropdown(options=[("average over heads", -1)]
                            + [(f"head {h}", h) for h in range(H)], value=-1,
                            description="head")
    which = widgets.ToggleButtons(options=labels, value=labels[0], description="sentence")
    caption = widgets.HTML()
    out = widgets.Output()
    colours = plt.cm.viridis(np.linspace(0.15, 0.8, len(labels)))
    shared = merged_labels(tokens)

    def matrix(k: int) -> np.ndarray:
        w = weights[k][layer.value]  # (H, L, L)
        return w.mean(0) if head.value < 0 else w[head.value]

    def draw(change=None) -> None:
        k = labels.index(which.value)
        name = "mean over heads" if head.value < 0 else f"head {head.value}"
        tops = []
        for j, label in enumerate(labels):
            row = matrix(j)[rows[j]]
            best = sorted(range(L), key=lambda t: row[t], reverse=True)[:3]
            tops.append(f"<b>{label}</b>: " + ", ".join(
                f"{tokens[j][t]} {row[t]:.2f}" for t in best))
        caption.value = (f"<p>Layer {layer.value}, {name}. Largest weights in the row of "
                         f"{word!r}: " + "; ".join(tops) + "</p>")
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5.4),
                                           gridspec_kw={"width_ratios": [1.15, 1]})
            attention_heatmap(matrix(k), tokens[k], ax=ax1, annotate=False, vmax=None,
                              title=f"{which.value}: layer {layer.value}, {name}")
            ax1.add_patch(Rectangle((-0.5, rows[k] - 0.5), L, 1, fill=False, lw=2,
                                    edgecolor="white"))
            ys = np.arange(L)
            height = 0.8 / len(labels)
            for j, label in enumerate(labels):
                ax2.barh(ys + (j - (len(labels) - 1) / 2) * height, matrix(j)[rows[j]],
                         height=height, color=colours[j], label=label)
            ax2.set_yticks(ys, shared)
            ax2.invert_yaxis()
            ax2.set_xlim(0, 1)
            ax2.set_xlabel("weight")
            ax2.set_ylabel("key")
            ax2.set_title(f"row of {word!r}: what it attends to")
            ax2.legend(loc="lower right")
            fig.tight_layout()
            plt.show()

    for control in (layer, head, which):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([layer, head, which, caption, out])
