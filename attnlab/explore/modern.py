"""Lesson 10: pictures of today's decoder block, published configurations, a KV-cache explorer.

Nothing here computes a lesson's answer: the explorer takes the learner's ``kv_cache_bytes``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

# Published configurations, from each model's config.json on the Hugging Face Hub (and the
# papers: Touvron et al. 2023, Llama 2, Table 1 and sec. 2.2: GQA for 34B and 70B; Jiang et al.
# 2023, Mistral 7B, Table 1). d_ff is "intermediate_size"; every one has vocab_size 32000.
PUBLISHED = {
    "Llama-2-7B": dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=32,
                       d_ff=11008, source="meta-llama/Llama-2-7b-hf config.json"),
    "Llama-2-70B": dict(vocab_size=32000, d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8,
                        d_ff=28672, source="meta-llama/Llama-2-70b-hf config.json"),
    "Mistral-7B": dict(vocab_size=32000, d_model=4096, n_layers=32, n_heads=32, n_kv_heads=8,
                       d_ff=14336, source="mistralai/Mistral-7B-v0.1 config.json"),
}
DTYPES = {"float32 (4 bytes)": 4, "bfloat16 / float16 (2 bytes)": 2, "int8 (1 byte)": 1}
GIB = 2 ** 30


def plot_activations():
    """ReLU, GELU and SiLU (Swish) on [-4, 4]: the gates of a GLU feed-forward."""
    import matplotlib.pyplot as plt
    import torch
    import torch.nn.functional as F

    z = torch.linspace(-4, 4, 401)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, (name, fn) in enumerate((("ReLU", F.relu), ("GELU", F.gelu),
                                    ("SiLU = z * sigmoid(z)", F.silu))):
        ax.plot(z, fn(z), lw=2, color=plt.cm.viridis(0.1 + 0.4 * i), label=name,
                ls=("--", ":", "-")[i])
    ax.axhline(0, color="grey", lw=0.5)
    ax.set_xlabel("z (pre-activation)")
    ax.set_ylabel("activation(z)")
    ax.set_title("Gate activations: SiLU is smooth and dips below zero")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_head_groups(n_heads: int = 8, kv_options: Sequence[int] = (8, 2, 1)):
    """Which kv head each query head reads, for multi-head, grouped and multi-query attention."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(kv_options), figsize=(4 * len(kv_options), 3.4))
    for ax, n_kv in zip(np.atleast_1d(axes), kv_options, strict=True):
        reads = np.arange(n_heads) // (n_heads // n_kv)  # query head -> kv head
        grid = np.zeros((n_heads, n_kv))
        grid[np.arange(n_heads), reads] = 1
        ax.imshow(grid, cmap="cividis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(n_kv), [f"kv {g}" for g in range(n_kv)], rotation=60)
        ax.set_yticks(range(n_heads), [f"q {h}" for h in range(n_heads)])
        ax.set_xlabel("key/value head")
        ax.set_ylabel("query head")
        name = {n_heads: "multi-head", 1: "multi-query"}.get(n_kv, "grouped-query")
        ax.set_title(f"{name}: {n_kv} kv head{'s' * (n_kv > 1)}\ncache {n_kv}/{n_heads} "
                     "of multi-head's", fontsize=10)
    fig.tight_layout()
    return fig


def plot_alignment(t_new: int = 3, t_past: int = 4):
    """Top-left against bottom-right causal alignment for t_new queries after t_past keys."""
    import matplotlib.pyplot as plt

    L = t_past + t_new
    top_left = np.tril(np.ones((t_new, L), bool))
    bottom_right = np.tril(np.ones((t_new, L), bool), k=t_past)
    rows = [f"new {i} (pos {t_past + i})" for i in range(t_new)]
    cols = [f"{j}{' cached' if j < t_past else ''}" for j in range(L)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.2))
    for ax, allowed, title in ((axes[0], top_left, "top-left (is_causal=True): wrong with "
                                "a cache"),
                               (axes[1], bottom_right, "bottom-right: what a cache needs")):
        ax.imshow(allowed.astype(float), cmap="cividis", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(L), cols, rotation=60, ha="right")
        ax.set_yticks(range(t_new), rows)
        ax.set_xlabel("key position (bright = may attend)")
        ax.set_ylabel("new query")
        ax.set_title(title, fontsize=10)
        ax.axvline(t_past - 0.5, color=plt.cm.cividis(0.5), lw=3)
    fig.tight_layout()
    return fig


def plot_filtered(probs, panels: dict[str, np.ndarray], labels: Sequence[str]):
    """One bar chart per filter: the distribution, kept tokens bright, removed ones dark."""
    import matplotlib.pyplot as plt

    probs = np.asarray(probs, dtype=float)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.2), sharey=True)
    for ax, (title, kept) in zip(np.atleast_1d(axes), panels.items(), strict=True):
        kept = np.asarray(kept, bool)
        colours = [plt.cm.viridis(0.75) if k else plt.cm.viridis(0.1) for k in kept]
        ax.bar(labels, probs, color=colours)
        ax.set_xlabel("token")
        ax.set_title(f"{title}: {kept.sum()} kept, mass {probs[kept].sum():.2f}", fontsize=10)
    np.atleast_1d(axes)[0].set_ylabel("probability (bright = kept)")
    fig.tight_layout()
    return fig


def plot_comparison(histories: dict, target: float = 0.99):
    """Training loss and held-out accuracy of several models on the sorting task."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (name, h) in enumerate(histories.items()):
        colour, style = plt.cm.viridis(0.15 + 0.6 * i), ("-", "--", ":")[i % 3]
        ax1.plot(h.steps, h.losses, color=colour, ls=style, lw=1, label=name)
        ax2.plot(h.eval_steps, h.accuracies, color=colour, ls=style, marker="o", ms=3,
                 label=name)
    ax1.set_yscale("log")
    ax1.set_xlabel("training step")
    ax1.set_ylabel("cross-entropy loss (answer digits)")
    ax1.set_title("Training loss")
    ax2.axhline(target, color="grey", lw=0.8, ls=":", label=f"criterion {target:.0%}")
    ax2.set_ylim(0, 1.02)
    ax2.set_xlabel("training step")
    ax2.set_ylabel("held-out strings sorted exactly")
    ax2.set_title("Held-out accuracy")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def kv_cache_explorer(kv_cache_bytes: Callable[..., int], n_layers: int = 32,
                      d_head: int = 128):
    """Context length, query heads, kv heads and dtype -> the KV cache's memory, with a plot.

    Uses the learner's ``kv_cache_bytes``; the model's depth and head width are fixed at a
    7B-class model's (32 layers, d_head = 128), batch 1.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    wide = {"description_width": "initial"}
    length = widgets.SelectionSlider(options=[2 ** k for k in range(8, 18)], value=4096,
                                     description="context (tokens)", style=wide)
    heads = widgets.Dropdown(options=[8, 16, 32, 64], value=32, description="query heads",
                             style=wide)
    kv = widgets.Dropdown(description="kv heads", style=wide)
    dtype = widgets.Dropdown(options=list(DTYPES), value="bfloat16 / float16 (2 bytes)",
                             description="dtype", style=wide)
    out = widgets.Output()

    def kv_options(change=None) -> None:
        options = [g for g in (1, 2, 4, 8, 16, 32, 64) if heads.value % g == 0]
        kv.options = options
        kv.value = 8 if 8 in options else options[-1]

    def gib(n_kv: int, tokens: np.ndarray) -> np.ndarray:
        return np.array([kv_cache_bytes(n_layers, n_kv, d_head, int(t), 1,
                                        DTYPES[dtype.value]) for t in tokens]) / GIB

    def draw(change=None) -> None:
        if kv.value is None:
            return
        tokens = np.unique(np.geomspace(256, 131072, 40).astype(int))
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7.5, 3.8))
            for i, (name, n_kv) in enumerate((("multi-head", heads.value),
                                              (f"your choice ({kv.value} kv heads)", kv.value),
                                              ("multi-query", 1))):
                ax.plot(tokens, gib(n_kv, tokens), color=plt.cm.viridis(0.1 + 0.4 * i),
                        ls=("-", "--", ":")[i], lw=2, label=name)
            now = gib(kv.value, np.array([length.value]))[0]
            ax.plot([length.value], [now], "o", color="black")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("context length (tokens)")
            ax.set_ylabel("KV cache (GiB)")
            ax.set_title(f"{n_layers} layers, d_head {d_head}, {dtype.value.split(' (')[0]}: "
                         f"{now:.3g} GiB at {length.value} tokens", fontsize=10)
            ax.legend(fontsize=8)
            fig.tight_layout()
            plt.show()

    kv_options()
    heads.observe(kv_options, names="value")
    for control in (length, kv, dtype):
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([length, widgets.HBox([heads, kv, dtype]), out])
