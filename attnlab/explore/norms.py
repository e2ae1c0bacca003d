"""Lesson 06: how far gradients reach down a deep stack, with or without residuals and norms."""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autograder.reference import MultiHeadAttention

PLACEMENTS = ("post-norm", "pre-norm", "no norm")
MAX_DEPTH = 48
EXPLORER_DEPTH = 24  # the explorer's first view
B, L = 4, 8  # a small batch of short sequences is enough to see the trend


class ToyLayer(nn.Module):
    """The parts of an encoder layer, unwired: ``self_attn``, ``ff``, ``norm1``, ``norm2``.

    Built from lesson 03's MultiHeadAttention and PyTorch's own modules, never from lesson
    06's exercises, so the lesson's demonstrations run while those are being written (and
    graded). ``layer_step`` wires the parts; ``ff`` is linear2(relu(linear1(x))).
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ff = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))
        self.norm1 = nn.LayerNorm(d_model)  # eps 1e-5, weight 1, bias 0
        self.norm2 = nn.LayerNorm(d_model)


@lru_cache(maxsize=4)
def toy_stack(depth: int = MAX_DEPTH, d_model: int = 32, n_heads: int = 4, d_ff: int = 64,
              seed: int = 0) -> nn.ModuleList:
    """depth ToyLayers with nn.Linear's default init, drawn from a seeded generator.

    Each layer has ``self_attn``, ``ff``, ``norm1`` and ``norm2``; the functions below wire
    them with or without residuals and with the norms after, before, or nowhere.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # the default init draws from the global stream: restore it
        stack = nn.ModuleList(ToyLayer(d_model, n_heads, d_ff) for _ in range(depth))
    with torch.no_grad():
        for module in stack.modules():
            if isinstance(module, nn.Linear):  # nn.Linear's default: U(-1/sqrt(fan_in), ...)
                bound = 1 / math.sqrt(module.in_features)
                module.weight.uniform_(-bound, bound, generator=g)
                module.bias.uniform_(-bound, bound, generator=g)
    return stack


def layer_step(layer: nn.Module, h: torch.Tensor, placement: str = "post-norm",
               residual: bool = True) -> torch.Tensor:
    """One encoder layer (attention, then feed-forward) in the given wiring; h (B, L, d_model)."""
    sublayers = ((lambda t: layer.self_attn(t, t, t)[0], layer.norm1), (layer.ff, layer.norm2))
    for sublayer, norm in sublayers:
        if placement == "pre-norm":
            out = sublayer(norm(h))
            h = h + out if residual else out
        elif placement == "post-norm":
            out = sublayer(h)
            h = norm(h + out) if residual else norm(out)
        else:
            out = sublayer(h)
            h = h + out if residual else out
    return h


@lru_cache(maxsize=256)
def gradient_norms(depth: int, placement: str = "post-norm", residual: bool = True,
                   seed: int = 0) -> tuple[float, ...]:
    """||d loss / d h|| at the input of each of `depth` layers; the top gradient has norm 1.

    The loss is ``(output * probe).sum()`` for a fixed random ``probe`` of norm 1: it stands in
    for the gradient a real loss would send back. Pre-norm stacks end with one more LayerNorm,
    as pre-norm models do.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    stack = toy_stack(MAX_DEPTH, seed=seed)
    d_model = stack[0].norm1.weight.numel()
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(B, L, d_model, generator=g)  # (B, L, d_model)
    probe = torch.randn(B, L, d_model, generator=g)
    probe = probe / probe.norm()
    inputs = []
    h = x.requires_grad_()
    for layer in stack[:depth]:
        inputs.append(h)
        h = layer_step(layer, h, placement, residual)
    if placement == "pre-norm":
        h = F.layer_norm(h, (d_model,))
    grads = torch.autograd.grad((h * probe).sum(), inputs)  # leaves the weights' .grad alone
    return tuple(float(g.norm()) for g in grads)


def plot_gradient_norms(curves: dict[str, np.ndarray], ax=None, title: str = "",
                        floor: float = 1e-12):
    """Log-scale gradient norms per layer, one labelled line per curve; layer 1 is the first."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4))
    colours = plt.cm.viridis(np.linspace(0.05, 0.75, max(len(curves), 2)))
    for (label, norms), colour in zip(curves.items(), colours, strict=False):
        norms = np.asarray(norms, dtype=float)
        layers = np.arange(1, len(norms) + 1)
        shown = np.where(norms > 0, norms, np.nan)  # exact zeros cannot sit on a log scale
        ax.semilogy(layers, shown, "o-", ms=3, color=colour, label=label)
        if (norms < floor).any():
            last = int(np.nonzero(norms < floor)[0].max()) + 1
            note = f"layers 1-{last}: below {floor:.0e}"
            if (norms == 0).any():
                note += f"\n(layers 1-{int(np.nonzero(norms == 0)[0].max()) + 1}: exactly 0)"
            ax.annotate(note, xy=(last, floor), xytext=(-4, 8), textcoords="offset points",
                        ha="right", fontsize=8, color=colour)
    ax.axhline(1.0, color="gray", linestyle=":", label="gradient at the top (norm 1)")
    ax.set_ylim(bottom=floor)
    ax.set_xlim(0, max(len(n) for n in curves.values()) + 1)
    ax.set_xlabel("layer (1 = first, farthest from the loss)")
    ax.set_ylabel("‖∂loss/∂h‖ at the layer's input")
    ax.set_title(title or "Gradient reaching each layer")
    ax.legend(fontsize=8, loc="best")
    return ax


def norm_placement_explorer(max_depth: int = MAX_DEPTH):
    """Toggle norm placement and residuals, slide the depth: gradient norm per layer (log)."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    placement = widgets.ToggleButtons(options=list(PLACEMENTS), value="post-norm",
                                      description="norm")
    residual = widgets.ToggleButtons(options=["on", "off"], value="on",
                                     description="residuals")
    depth = widgets.IntSlider(value=EXPLORER_DEPTH, min=2, max=max_depth, step=2,
                              description="layers", continuous_update=False)
    out = widgets.Output()

    def draw(change=None) -> None:
        on = residual.value == "on"
        norms = np.array(gradient_norms(depth.value, placement.value, on))
        label = f"{placement.value}, residuals {residual.value}"
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(7.5, 4.2))
            for other in PLACEMENTS:  # the other settings, faint, for comparison
                for other_on in (True, False):
                    if (other, other_on) != (placement.value, on):
                        ax.semilogy(range(1, depth.value + 1),
                                    gradient_norms(depth.value, other, other_on),
                                    color="lightgray", lw=1)
            ax.plot([], [], color="lightgray", lw=1, label="the other five settings")
            first = norms[0]
            summary = ("exactly 0: nothing reaches layer 1" if first == 0 else
                       f"{first:.1e} at layer 1" if math.isfinite(first) else "overflowed")
            plot_gradient_norms({label: norms}, ax=ax,
                                title=f"{label}, {depth.value} layers: gradient {summary}")
            fig.tight_layout()
            plt.show()

    for w in (placement, residual, depth):
        w.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([placement, residual]), depth, out])


def warm() -> None:
    """Fill the caches with what the lesson's cells ask of this module: every setting at the
    explorer's first depth and at MAX_DEPTH (``attnlab.warmup``: the class grader does this
    once, before it forks a kernel per learner). The values are those the cells would
    compute; the global random streams are left as they were."""
    for depth in (EXPLORER_DEPTH, MAX_DEPTH):
        for placement in PLACEMENTS:
            for residual in (True, False):
                gradient_norms(depth, placement, residual)
