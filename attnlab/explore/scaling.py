"""Lesson 02: why attention divides its scores by sqrt(d_k), one query at a time."""

from __future__ import annotations

import math

import torch

D_K_CHOICES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
TYPICAL_SEED = 82  # a query whose curve follows the averages of lesson 02, section 2b


def query_weights(d_k: int, scaled: bool, n_keys: int = 12,
                  seed: int = TYPICAL_SEED) -> torch.Tensor:
    """Softmax weights (n_keys,) of one random unit-variance query over random keys of width d_k.

    The vectors are the first d_k coordinates of fixed 1024-wide ones, so a larger d_k adds
    coordinates to the same query and keys rather than drawing new ones.
    """
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(max(D_K_CHOICES), generator=g)[:d_k]  # (d_k,)
    keys = torch.randn(n_keys, max(D_K_CHOICES), generator=g)[:, :d_k]  # (n_keys, d_k)
    scores = keys @ q  # (n_keys,)
    if scaled:
        scores = scores / math.sqrt(d_k)
    return torch.softmax(scores, dim=-1)  # (n_keys,)


def entropy(weights: torch.Tensor) -> float:
    """Entropy in nats of a distribution; 0 * log 0 counts as 0."""
    w = weights[weights > 0]
    return float(-(w * w.log()).sum())


def scaling_explorer(n_keys: int = 12, seed: int = TYPICAL_SEED):
    """A d_k slider and a scaled/unscaled toggle: one query's weights over n_keys keys."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    d_k = widgets.SelectionSlider(options=D_K_CHOICES, value=64, description="d_k",
                                  continuous_update=True)
    mode = widgets.ToggleButtons(options=["scaled", "unscaled"], value="unscaled",
                                 description="scores")
    out = widgets.Output()
    labels = [f"k{j}" for j in range(n_keys)]

    def draw(change=None) -> None:
        w = query_weights(d_k.value, mode.value == "scaled", n_keys, seed)
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7, 3.4))
            ax.bar(labels, w.numpy(), color=plt.cm.viridis(0.35))
            ax.axhline(1 / n_keys, color="gray", linestyle=":", label="uniform weights")
            ax.set_ylim(0, 1)
            ax.set_xlabel("key")
            ax.set_ylabel("weight")
            ax.legend(loc="best")
            ax.set_title(f"One query, {mode.value} scores, d_k = {d_k.value}\nlargest weight "
                         f"{float(w.max()):.2f}, entropy {entropy(w):.2f} nats "
                         f"(uniform: {math.log(n_keys):.2f})", fontsize=10)
            fig.tight_layout()
            plt.show()

    d_k.observe(draw, names="value")
    mode.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([d_k, mode]), out])
