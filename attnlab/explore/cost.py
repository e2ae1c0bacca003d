"""Lesson 08: measuring what attention costs (time, peak memory) and a tiled-attention explorer.

Peak memory is measured by :class:`PeakMemory`, which watches every tensor torch creates while
a function runs and adds up the bytes of those still alive. It counts what a computation holds
in tensors (scores, weights, tiles, outputs), not memory a kernel borrows inside one operation,
nor the inputs it was given; ``benchmarks/attention_memory.py`` cross-checks it against the
operating system's view (peak resident memory of a fresh process).
"""

from __future__ import annotations

import math
import os
import statistics
import time
import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from autograder.reference.pretrained import one_thread  # one copy: MiniLM runs on it too


class PeakMemory(TorchDispatchMode):
    """``with PeakMemory() as m: f(x)``: m.peak is the most bytes held at once in new tensors.

    Every new storage an operation allocates is counted from its creation until the last
    tensor using it is freed; views share their base's bytes, and views of tensors made
    before the block (the inputs) cost nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors using it]
        self.now = 0  # bytes alive right now
        self.peak = 0  # most bytes alive at any moment

    def _release(self, address: int) -> None:
        entry = self.live.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            self.now -= entry[0]
            del self.live[address]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            address = storage.data_ptr()
            if address in self.live:  # a view of a tensor we count: same bytes, one more user
                self.live[address][1] += 1
            elif address in inputs:  # a view of (or in-place on) a tensor made before: not new
                continue
            else:
                self.live[address] = [storage.nbytes(), 1]
                self.now += storage.nbytes()
                self.peak = max(self.peak, self.now)
            weakref.finalize(t, self._release, address)
        return out


def peak_bytes(fn: Callable, *args) -> int:
    """Peak bytes held in tensors created while fn(*args) runs (no autograd graph kept)."""
    with torch.no_grad(), PeakMemory() as memory:
        fn(*args)
    return memory.peak


def seconds(fn: Callable, *args, repeat: int = 3) -> float:
    """Median wall-clock seconds of fn(*args) over ``repeat`` runs (one thread, after a warm-up)."""
    times = []
    with torch.no_grad(), one_thread():
        fn(*args)
        for _ in range(repeat):
            start = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def fit_power_law(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(exponent p, prefactor c) of the least-squares line log y = p log x + log c."""
    p, log_c = np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)
    return float(p), float(math.exp(log_c))


def human_bytes(n: float) -> str:
    """Bytes in decimal units (1 GB = 10^9 bytes), as hardware vendors count them."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def machine_memory_bytes() -> int | None:
    """This machine's total memory in bytes, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


# ----------------------------------------------------------------------------- the explorer


def _toy(L: int, d: int = 8, seed: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed random queries and keys (L, d), scaled so that weights are neither flat nor one-hot."""
    g = torch.Generator().manual_seed(seed)
    q = 1.6 * torch.randn(L, d, generator=g)  # (L, d)
    k = torch.randn(L, d, generator=g)  # (L, d)
    return q, k


def partial_weights(scores: torch.Tensor, seen: int) -> tuple[torch.Tensor, float, float]:
    """One query's weights over the first ``seen`` keys, as the online softmax holds them.

    Returns (weights (Lk,), with 0 for keys not seen yet; running max m; running sum l).
    """
    if seen == 0:
        return torch.zeros_like(scores), float("-inf"), 0.0
    s = scores[:seen]
    m = s.max()
    p = torch.exp(s - m)  # (seen,)
    l_sum = p.sum()
    w = torch.zeros_like(scores)
    w[:seen] = p / l_sum
    return w, float(m), float(l_sum)


def tiling_explorer(max_len: int = 48, d: int = 8, seed: int = 8):
    """Sliders for L, block size and key blocks done: the tiles computed, one query's weights."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Rectangle

    length = widgets.IntSlider(value=24, min=4, max=max_len, step=4, description="L",
                               continuous_update=False)
    block = widgets.IntSlider(value=8, min=1, max=max_len, description="block_size",
                              continuous_update=False)
    steps = widgets.IntSlider(value=1, min=0, max=3, description="key blocks done",
                              continuous_update=True, style={"description_width": "initial"})
    query = widgets.IntSlider(value=20, min=0, max=23, description="query i",
                              continuous_update=True)
    causal = widgets.Checkbox(value=False, description="causal")
    caption = widgets.HTML()
    out = widgets.Output()
    colours = ListedColormap(plt.cm.viridis([0.0, 0.35, 0.95]))  # not yet, skipped, computed

    syncing = [False]  # while the sliders' ranges change, draw once at the end

    def sync(change=None) -> None:
        syncing[0] = True
        try:
            n_blocks = math.ceil(length.value / block.value)
            steps.value = min(steps.value, n_blocks)
            steps.max = n_blocks
            query.value = min(query.value, length.value - 1)
            query.max = length.value - 1
        finally:
            syncing[0] = False
        draw()

    def draw(change=None) -> None:
        if syncing[0]:
            return
        L, b, n_done, i = length.value, block.value, steps.value, query.value
        q, k = _toy(L, d, seed)
        scores = q @ k.T / math.sqrt(d)  # (L, L): small enough to draw; the point is the tiles
        state = np.zeros((L, L))
        for i0 in range(0, L, b):
            for jb, j0 in enumerate(range(0, L, b)):
                future = causal.value and j0 > i0 + b - 1
                state[i0:i0 + b, j0:j0 + b] = 1 if future else (2 if jb < n_done else 0)
        row = scores[i].clone()
        if causal.value:
            row[i + 1:] = float("-inf")
        seen = min(n_done * b, i + 1 if causal.value else L)
        w, m, l_sum = partial_weights(row, seen)
        exact, _, _ = partial_weights(row, i + 1 if causal.value else L)
        tile = min(b, L)
        full_bytes = 4 * L * L
        tile_bytes = 4 * tile * tile + 4 * L * (d + 2)
        caption.value = (
            f"<p>Each query block keeps only a running max <i>m</i>, a running sum <i>l</i> and "
            f"a running output; one ({tile} x {tile}) tile of scores exists at a time. Query {i} "
            f"after {n_done} key block(s): m = {m:.2f}, l = {l_sum:.2f}; its output is "
            f"{'exact' if torch.allclose(w, exact) else 'not final yet'}.<br>Memory at L = {L} "
            f"(float32, one head): full scores {human_bytes(full_bytes)}; tiled: one tile plus "
            f"the running statistics and outputs, {human_bytes(tile_bytes)}. At L = 100,000 the "
            f"full scores would take {human_bytes(4 * 1e5 ** 2)}.</p>")
        with out:
            out.clear_output(wait=True)
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
            ax1.imshow(state, cmap=colours, vmin=0, vmax=2, aspect="equal")
            for t in range(0, L + 1, b):
                ax1.axhline(t - 0.5, color="white", lw=1)
                ax1.axvline(t - 0.5, color="white", lw=1)
            ax1.add_patch(Rectangle((-0.5, i - 0.5), L, 1, fill=False, ec="red", lw=1.5))
            ax1.set_xlabel("key j")
            ax1.set_ylabel("query i")
            ax1.set_title("Score tiles: yellow computed, teal skipped (future), dark not yet",
                          fontsize=10)
            ax2.bar(range(L), exact.numpy(), color="lightgray", label="final weights")
            ax2.bar(range(L), w.numpy(), color=plt.cm.viridis(0.35),
                    label=f"after {n_done} key block(s)")
            ax2.set_ylim(0, max(0.05, float(w.max()), float(exact.max())) * 1.1)
            ax2.set_xlabel("key j")
            ax2.set_ylabel(f"weight of query {i} (red row)")
            ax2.set_title("Seen so far, renormalised: older weights shrink when a larger "
                          "score arrives", fontsize=10)
            ax2.legend(loc="upper right")
            fig.tight_layout()
            plt.show()

    length.observe(sync, names="value")
    block.observe(sync, names="value")
    for widget in (steps, query, causal):
        widget.observe(draw, names="value")
    sync()
    return widgets.VBox([widgets.HBox([length, block, causal]), widgets.HBox([steps, query]),
                         caption, out])
