"""Lesson 05: sinusoid frequencies, rotation angles and ALiBi biases, drawn and explored."""

from __future__ import annotations

import math

import numpy as np


def angles(positions, d_model: int, base: float = 10000.0) -> np.ndarray:
    """(len(positions), d_model // 2) angles pos * omega_i, omega_i = base^(-2i / d_model)."""
    pos = np.asarray(positions, dtype=float)[:, None]  # (P, 1)
    omega = base ** (-np.arange(0, d_model, 2) / d_model)  # (d_model // 2,)
    return pos * omega  # (P, d_model // 2)


def offset_similarity(offsets, d_model: int, base: float = 10000.0) -> np.ndarray:
    """PE[m] . PE[n] as a function of the offset m - n: sum_i cos((m - n) omega_i)."""
    return np.cos(angles(offsets, d_model, base)).sum(axis=-1)  # (len(offsets),)


def alibi_grid(bias, ncols: int = 4, title: str = "ALiBi bias per head"):
    """One heatmap per head of an (H, L, L) bias, on one shared colour scale."""
    import matplotlib.pyplot as plt

    b = bias.detach().cpu().numpy() if hasattr(bias, "detach") else np.asarray(bias)
    H, L, _ = b.shape
    ncols = min(ncols, H)
    nrows = math.ceil(H / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols + 1.2, 3.0 * nrows),
                             squeeze=False, constrained_layout=True)
    image = None
    for h, ax in enumerate(axes.flat):
        if h >= H:
            ax.axis("off")
            continue
        image = ax.imshow(b[h], cmap="cividis", vmin=min(b.min(), -1e-9), vmax=0.0)
        slope = -b[h, 0, 1] if L > 1 else float("nan")
        ax.set_title(f"head {h}: slope {slope:.3g}", fontsize=9)
        if h // ncols == nrows - 1 or h + ncols >= H:
            ax.set_xlabel("key position j")
        if h % ncols == 0:
            ax.set_ylabel("query position i")
    fig.colorbar(image, ax=axes, fraction=0.025, pad=0.02, label="bias added to the score")
    fig.suptitle(title)
    return fig


def frequency_explorer(d_model: int = 64, max_pos: int = 100):
    """Sliders for pair i, position m and base: sinusoids, rotation angle, PE[m].PE[n] curve."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    pair = widgets.IntSlider(value=2, min=0, max=d_model // 2 - 1, description="pair i",
                             continuous_update=True)
    pos = widgets.IntSlider(value=10, min=0, max=max_pos, description="position m",
                            continuous_update=True)
    base = widgets.FloatLogSlider(value=10000.0, base=10, min=1, max=6, step=0.1,
                                  description="base", continuous_update=False)
    out = widgets.Output()
    grid = np.arange(max_pos + 1)  # integer positions
    fine = np.linspace(0, max_pos, 20 * max_pos + 1)  # a smooth curve through them

    def draw(change=None) -> None:
        i, m, b = pair.value, pos.value, base.value
        omega = b ** (-2 * i / d_model)  # frequency of pair i, radians per position
        theta = m * omega  # the angle of pair i at position m
        offsets = np.arange(-max_pos, max_pos + 1)
        colour = plt.cm.viridis
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(14, 3.9),
                                                gridspec_kw={"width_ratios": [1.5, 1, 1.5]})
            for f, name, shade in ((np.sin, "sin", 0.15), (np.cos, "cos", 0.7)):
                dim = 2 * i + (name == "cos")
                ax1.plot(fine, f(fine * omega), color=colour(shade), lw=1, alpha=0.5)
                ax1.plot(grid, f(grid * omega), "o", ms=2.5, color=colour(shade),
                         label=f"dim {dim}: {name}")
                ax1.plot([m], [f(theta)], "o", ms=8, color=colour(shade), mec="black")
            ax1.axvline(m, color="gray", linestyle=":")
            ax1.set_xlabel("position (dots: the integer positions a model sees)")
            ax1.set_ylabel("encoding value")
            ax1.set_title(f"Pair {i}: {omega:.3g} rad per position, one turn every "
                          f"{2 * math.pi / omega:.3g} positions", fontsize=9)
            ax1.set_ylim(-1.15, 1.15)
            ax1.legend(loc="lower left", fontsize=8)

            circle = np.linspace(0, 2 * math.pi, 200)
            ax2.plot(np.cos(circle), np.sin(circle), color="lightgray")
            ax2.plot([0, 1], [0, 0], color="gray", linestyle=":")
            ax2.annotate("", xy=(math.cos(theta), math.sin(theta)), xytext=(0, 0),
                         arrowprops=dict(arrowstyle="->", lw=2, color=colour(0.4)))
            ax2.set_aspect("equal")
            ax2.set_xlim(-1.2, 1.2)
            ax2.set_ylim(-1.2, 1.2)
            ax2.set_xlabel("first dim of the pair")
            ax2.set_ylabel("second dim of the pair")
            ax2.set_title(f"Angle of pair {i} at position {m}: {theta:.3g} rad "
                          f"({math.degrees(theta) % 360:.0f}°)", fontsize=9)

            ax3.plot(offsets, offset_similarity(offsets, d_model, b), color=colour(0.3),
                     label=f"base {b:,.0f}")
            ax3.plot(offsets, offset_similarity(offsets, d_model, 10000.0), color="gray",
                     linestyle="--", lw=1, label="base 10,000")
            ax3.set_xlabel("offset m - n")
            ax3.set_ylabel("PE[m] · PE[n]")
            ax3.set_title(f"Similarity of two positions (d_model = {d_model})", fontsize=9)
            ax3.legend(loc="lower left", fontsize=8)
            fig.tight_layout()
            plt.show()

    for w in (pair, pos, base):
        w.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([pair, pos, base]), out])
