"""Lesson 01: how a temperature (or a scale) sharpens or flattens a softmax."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def temperature_explorer(scores: Sequence[float], labels: Sequence[str],
                         title: str = "Softmax of the scores at temperature T"):
    """A slider for T: bars show softmax(scores / T) over the labelled keys."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=float)
    slider = widgets.FloatLogSlider(value=1.0, base=10, min=-1.5, max=1.5, step=0.05,
                                    description="T", continuous_update=True)
    out = widgets.Output()

    def draw(change=None) -> None:
        z = scores / slider.value
        w = np.exp(z - z.max())
        w /= w.sum()
        with out:
            out.clear_output(wait=True)
            fig, ax = plt.subplots(figsize=(6, 3))
            ax.bar(labels, w, color=plt.cm.viridis(0.35))
            ax.set_ylim(0, 1)
            ax.set_xlabel("key")
            ax.set_ylabel("weight")
            ax.set_title(f"{title} (T = {slider.value:.2f}, largest weight {w.max():.2f})")
            plt.show()

    slider.observe(draw, names="value")
    draw()
    return widgets.VBox([slider, out])
