"""Lesson 03: pictures of split/merge, a hand-built model with specialised heads, a head menu."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from attnlab.plots import attention_heatmap

# ----------------------------------------------------------------------------- split picture


def split_picture(tokens: Sequence[str] = ("the", "cat", "sat", "down"), d_model: int = 6,
                  n_heads: int = 2):
    """Draw x (L, d_model), its heads after split_heads, and the scramble a bare view makes.

    Cell colour = which token the number came from; the number = its feature index.
    """
    import matplotlib.pyplot as plt

    L, H = len(tokens), n_heads
    GAP = 2.8  # space between head blocks
    dh = d_model // H
    feat = np.tile(np.arange(d_model), (L, 1))  # (L, d_model): feature index of each cell
    tok = np.repeat(np.arange(L), d_model).reshape(L, d_model)  # token index of each cell
    right = (feat.reshape(L, H, dh).transpose(1, 0, 2), tok.reshape(L, H, dh).transpose(1, 0, 2))
    wrong = (feat.reshape(H, L, dh), tok.reshape(H, L, dh))  # what x.view(B, H, L, d_head) gives
    colours = plt.cm.viridis(np.linspace(0.0, 0.85, L))

    fig, ax = plt.subplots(figsize=(11, 0.9 * L + 3.2))

    def block(x0, y0, f, t, title, row_labels):
        for i, j in np.ndindex(f.shape):
            ax.add_patch(plt.Rectangle((x0 + j, y0 - i - 1), 1, 1, facecolor=colours[t[i, j]],
                                       edgecolor="white", lw=1.5))
            ax.text(x0 + j + 0.5, y0 - i - 0.5, str(f[i, j]), ha="center", va="center",
                    fontsize=9, color="white" if t[i, j] < L / 2 else "black")
        for i, label in enumerate(row_labels):
            ax.text(x0 - 0.15, y0 - i - 0.5, label, ha="right", va="center", fontsize=8)
        ax.text(x0 + f.shape[1] / 2, y0 + 0.35, title, ha="center", va="bottom", fontsize=9)

    top = L + 2.5
    block(1.2, top - 0.5, feat, tok, f"x[b]: (L, d_model) = ({L}, {d_model})", tokens)
    x_heads = d_model + 5.5
    for h in range(H):
        x0 = x_heads + h * (dh + GAP)
        block(x0, top, right[0][h], right[1][h], f"head {h}: (L, d_head) = ({L}, {dh})",
              tokens)
        block(x0, top - L - 2.2, wrong[0][h], wrong[1][h], f"'head' {h} after a bare view",
              [tokens[t] for t in wrong[1][h][:, 0]])
    mid = d_model + 1.2
    ax.annotate("", xy=(x_heads - 1.0, top - L / 2), xytext=(mid + 0.3, top - L / 2),
                arrowprops=dict(arrowstyle="->", lw=1.5))
    ax.text((mid + x_heads) / 2 - 0.3, top - L / 2 + 0.3, "split_heads", ha="center",
            fontsize=9)
    ax.annotate("", xy=(mid + 0.3, top - L / 2 - 0.6), xytext=(x_heads - 1.0, top - L / 2 - 0.6),
                arrowprops=dict(arrowstyle="->", lw=1.5, color="gray"))
    ax.text((mid + x_heads) / 2 - 0.3, top - L / 2 - 1.3, "merge_heads", ha="center",
            fontsize=9, color="gray")
    ax.text(x_heads + (H * (dh + GAP) - GAP) / 2, top - L - 0.55,
            "right: view (B, L, H, d_head), then transpose(1, 2)  ->  (B, H, L, d_head)",
            ha="center", fontsize=9, color="darkgreen")
    ax.text(x_heads + (H * (dh + GAP) - GAP) / 2, -L - 0.1,
            "wrong: view (B, H, L, d_head) directly: each 'head' gets whole tokens",
            ha="center", va="top", fontsize=9, color="darkred")
    ax.set_xlim(-1.5, x_heads + H * (dh + GAP))
    ax.set_ylim(-L - 1.2, top + 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("split_heads: head h takes features h*d_head ... (h+1)*d_head - 1 of every "
                 "token (colour = token, number = feature index)", fontsize=10)
    return ax


# ----------------------------------------------------------------------------- a toy model

SENTENCE = ("the", "cat", "sat", "on", "the", "mat", "because", "it", "was", "tired")
# each word's syntactic head (a dependency parse; the root "sat" points at itself)
SYNTACTIC_HEAD = (1, 2, 2, 2, 5, 3, 8, 8, 2, 8)
ANTECEDENT = (0, 1, 2, 3, 4, 5, 6, 1, 8, 9)  # "it" -> "cat"; every other word -> itself
HEAD_NAMES = (
    "head 0: previous word",
    "head 1: syntactic head (the -> cat, cat -> sat, it -> was)",
    "head 2: coreference (it -> cat)",
    "head 3: broad average",
)
HEAD_NOTES = (
    "Positional proximity: every word looks one step back (the first word looks at itself).",
    "Syntax: every word looks at the word it depends on in a parse tree.",
    "Coreference: the pronoun 'it' looks at the noun it refers to; other words look at "
    "themselves.",
    "A head with nothing to find spreads its weight evenly: its output is the sentence's "
    "average, a summary of the context.",
)


def specialised_heads(strength: float = 4.3, seed: int = 0):
    """A hand-built 4-head model on SENTENCE; returns (tokens, x, head_names, state_dict).

    x is (1, L, d_model) with d_model = 48, H = 4, d_head = 12. Its features spell out what
    a trained model's earlier layers would have to compute: a one-hot position (features
    0-9), the position of the word's syntactic head (10-19) and of its antecedent (20-29),
    then 18 features of random "content". Each head's q_proj rows read one of those, its
    k_proj rows read the position, so a head's query matches exactly one key. state_dict
    fits MultiHeadAttention(48, 4) (q_proj, k_proj, v_proj, out_proj with biases).
    """
    import torch

    L, d_model, H = len(SENTENCE), 48, 4
    dh = d_model // H
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(1, L, d_model)
    for i in range(L):
        x[0, i, i] = 1.0  # position
        x[0, i, 10 + SYNTACTIC_HEAD[i]] = 1.0
        x[0, i, 20 + ANTECEDENT[i]] = 1.0
    x[0, :, 30:] = torch.randn(L, d_model - 30, generator=g)

    w_q = 0.02 * torch.randn(d_model, d_model, generator=g)
    w_k = 0.02 * torch.randn(d_model, d_model, generator=g)
    for i in range(L):
        w_q[0 * dh + max(i - 1, 0), i] = strength  # head 0: query "position i - 1"
        w_q[1 * dh + i, 10 + i] = strength  # head 1: query "my syntactic head's position"
        w_q[2 * dh + i, 20 + i] = strength  # head 2: query "my antecedent's position"
        for h in range(H):  # head 3's queries stay (almost) zero: every key scores the same
            w_k[h * dh + i, i] = strength  # every head's key: "I am at position i"
    state = {
        "q_proj.weight": w_q, "q_proj.bias": torch.zeros(d_model),
        "k_proj.weight": w_k, "k_proj.bias": torch.zeros(d_model),
        "v_proj.weight": torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model),
        "v_proj.bias": torch.zeros(d_model),
        "out_proj.weight": torch.randn(d_model, d_model, generator=g) / math.sqrt(d_model),
        "out_proj.bias": torch.zeros(d_model),
    }
    return list(SENTENCE), x, list(HEAD_NAMES), state


# ----------------------------------------------------------------------------- plots


def _per_head(weights) -> np.ndarray:
    w = weights.detach().cpu().numpy() if hasattr(weights, "detach") else np.asarray(weights)
    if w.ndim == 4:
        w = w[0]  # the first batch item
    if w.ndim != 3:
        raise ValueError(f"expected per-head weights (H, L, L) or (B, H, L, L), got {w.shape}")
    return w


def head_grid(weights, tokens: Sequence[str], head_names: Sequence[str] | None = None,
              ncols: int = 2):
    """One heatmap per head, side by side: weights (H, Lq, Lk) or (B, H, Lq, Lk) (item 0)."""
    import matplotlib.pyplot as plt

    w = _per_head(weights)
    H = w.shape[0]
    names = list(head_names) if head_names else [f"head {h}" for h in range(H)]
    ncols = min(ncols, H)
    nrows = math.ceil(H / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.6 * ncols, 4.8 * nrows), squeeze=False)
    for h, ax in enumerate(axes.flat):
        if h < H:
            attention_heatmap(w[h], tokens, title=names[h], ax=ax, annotate=False)
        else:
            ax.axis("off")
    fig.suptitle("Per-head attention weights (rows: queries, columns: keys)")
    fig.tight_layout()
    return fig


AVERAGE_NOTE = ("The average over all heads: what nn.MultiheadAttention returns unless you pass "
                "average_attn_weights=False. Each sharp pattern is diluted to about 1/H of its "
                "strength and blurred with the others; you can no longer tell which head did "
                "what.")


def head_selector(weights, tokens: Sequence[str], head_names: Sequence[str] | None = None,
                  notes: Sequence[str] | None = None):
    """A dropdown over the heads of weights (H, L, L) or (B, H, L, L), plus their average."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    w = _per_head(weights)
    H = w.shape[0]
    names = list(head_names) if head_names else [f"head {h}" for h in range(H)]
    options = [(name, h) for h, name in enumerate(names)] + [("average over heads", -1)]
    choose = widgets.Dropdown(options=options, value=0, description="show",
                              layout=widgets.Layout(width="520px"))
    caption = widgets.HTML()
    out = widgets.Output()

    def draw(change=None) -> None:
        h = choose.value
        matrix = w.mean(axis=0) if h < 0 else w[h]
        sharp = matrix.max(axis=-1).mean()
        note = AVERAGE_NOTE if h < 0 else (notes[h] if notes and h < len(notes) else "")
        caption.value = (f"<p>{note}<br>Average of each query's largest weight: "
                         f"<b>{sharp:.2f}</b> (1.00 = every query picks one key).</p>")
        with out:
            out.clear_output(wait=True)
            attention_heatmap(matrix, tokens, title=names[h] if h >= 0 else
                              f"Average over {H} heads")
            plt.show()

    choose.observe(draw, names="value")
    draw()
    return widgets.VBox([choose, caption, out])
