"""Lesson 07: pictures of decoder attention, the training curve, and a sorting-model explorer."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from attnlab.plots import attention_heatmap
from autograder.reference import causal_mask

# ----------------------------------------------------------------------------- architectures


def _mask_panel(ax, allowed: np.ndarray, rows: Sequence[str], cols: Sequence[str], title: str,
                split: int | None = None) -> None:
    """One "who may attend to whom" picture: bright = may attend, dark = blocked."""
    import matplotlib.pyplot as plt

    ax.imshow(allowed.astype(float), cmap="cividis", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    ax.set_title(title, fontsize=10)
    if split is not None:
        ax.axvline(split - 0.5, color=plt.cm.cividis(0.5), lw=3)


def plot_architectures():
    """Who may attend to whom in BERT-like, GPT-like and T5/BART-like models."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    sentence = ["the", "cat", "sat", "on", "the", "mat"]
    source, target = ["le", "chat", "noir"], ["<s>", "the", "black", "cat"]
    L, S, T = len(sentence), len(source), len(target)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6),
                             gridspec_kw={"width_ratios": [L, L, S + T]})
    _mask_panel(axes[0], np.ones((L, L), bool), sentence, sentence,
                "encoder-only (BERT):\nevery token sees every token")
    _mask_panel(axes[1], causal_mask(L).numpy(), sentence, sentence,
                "decoder-only (GPT):\neach token sees itself and the past")
    decoder_view = np.concatenate([np.ones((T, S), bool), causal_mask(T).numpy()], axis=1)
    _mask_panel(axes[2], decoder_view, target, source + target,
                "encoder-decoder (T5, BART), the decoder:\nall of the source | its own past",
                split=S)
    fig.legend(handles=[Patch(color=plt.cm.cividis(1.0), label="may attend"),
                        Patch(color=plt.cm.cividis(0.0), label="blocked")],
               loc="lower center", ncol=2, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def plot_decoder_attention(weights: dict, target: Sequence[str], source: Sequence[str],
                           head: int = 0):
    """A decoder layer's two attentions side by side, for batch item 0 and one head."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2),
                             gridspec_kw={"width_ratios": [len(target), len(source)]})
    attention_heatmap(weights["self"][0, head].detach(), target, target, ax=axes[0],
                      title=f"masked self-attention, head {head}\n(target looks at target)")
    attention_heatmap(weights["cross"][0, head].detach(), target, source, ax=axes[1],
                      title=f"cross-attention, head {head}\n(target looks at source)")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- training


def plot_training(history, target: float = 0.99, title: str = "Training TinyGPT to sort digits"):
    """Loss per step (log scale) and the held-out exact-sequence accuracy."""
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
    ax1.plot(history.steps, history.losses, color=plt.cm.viridis(0.3), lw=1)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("cross-entropy loss (log scale)")
    ax1.set_title("training loss")
    ax2.plot(history.eval_steps, [100 * a for a in history.accuracies], "o-",
             color=plt.cm.viridis(0.6), ms=3)
    ax2.axhline(100 * target, color=plt.cm.viridis(0.9), ls="--", label=f"{target:.0%} target")
    ax2.set_ylim(0, 101)
    ax2.set_xlabel("step")
    ax2.set_ylabel("held-out sequences sorted exactly (%)")
    ax2.set_title("exact-sequence accuracy on held-out data")
    ax2.legend(loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- attention maps


@torch.no_grad()
def gpt_attention(model, idx: torch.Tensor) -> list[torch.Tensor]:
    """Per-layer attention weights (B, H, T, T) of a TinyGPT on idx (B, T).

    Runs the model's own parts by hand (tok_emb, pos_emb, and each block's ln1, attn, ln2, ff)
    and asks each block's attention for its weights with a causal mask.
    """
    T = idx.size(1)
    x = model.tok_emb(idx) + model.pos_emb(torch.arange(T, device=idx.device))  # (B, T, d)
    mask = causal_mask(T, device=idx.device)  # (T, T)
    maps = []
    for block in model.blocks:
        h = block.ln1(x)
        out, weights = block.attn(h, h, h, mask)  # (B, T, d), (B, H, T, T)
        maps.append(weights)
        x = x + out
        x = x + block.ff(block.ln2(x))
    return maps


@torch.no_grad()
def retrieval_scores(model, task, seqs: torch.Tensor) -> tuple[np.ndarray, float]:
    """How much weight each head gives the prompt digits equal to the digit being written.

    For every answer position (the query that predicts the next sorted digit) we add up the
    attention weight on the prompt positions holding that digit, and average over positions
    and sequences: an (n_layers, H) array. Also returns what uniform attention over the
    query's visible positions would give, for comparison.
    """
    n = task.n_digits
    x, _ = task.inputs_targets(seqs)
    maps = gpt_attention(model, x)  # n_layers x (N, H, 2n, 2n)
    answer = seqs[:, n + 1:]  # (N, n): the digit each answer query must write
    holds = (seqs[:, None, :n] == answer[:, :, None]).float()  # (N, n queries, n prompt keys)
    scores = np.array([[(w[:, h, n:2 * n, :n] * holds).sum(-1).mean().item()
                        for h in range(w.size(1))] for w in maps])
    visible = torch.arange(n, 2 * n).float() + 1  # query at position q sees q + 1 positions
    uniform = (holds.sum(-1) / visible).mean().item()
    return scores, uniform


def plot_answer_attention(model, task, seq: torch.Tensor, layer: int = 0):
    """For one sequence: every head of one layer, answer queries (rows) over prompt digits."""
    import matplotlib.pyplot as plt

    n = task.n_digits
    x, _ = task.inputs_targets(seq[None])
    w = gpt_attention(model, x)[layer][0]  # (H, 2n, 2n)
    prompt = list(task.decode(seq[:n]))
    rows = [f"writes {c}" for c in task.decode(seq[n + 1:])]
    H = w.size(0)
    fig, axes = plt.subplots(1, H, figsize=(3.4 * H + 1, 3.8))
    for h, ax in enumerate(np.atleast_1d(axes)):
        attention_heatmap(w[h, n:2 * n, :n], rows if h == 0 else [""] * n, prompt, ax=ax,
                          annotate=False, title=f"layer {layer}, head {h}")
        ax.set_xlabel("prompt digit (key)")
        ax.set_ylabel("answer query" if h == 0 else "")
    fig.suptitle(f"Where the answer positions look in the prompt {task.decode(seq[:n])}")
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- explorer


def sorting_explorer(model, task, generate: Callable, prompt: str = "31415926"):
    """Type digits, pick a temperature, a layer and a head: the model's answer and attention."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    n_layers, H = len(model.blocks), model.blocks[0].attn.n_heads
    text = widgets.Text(value=prompt, description="digits", continuous_update=False,
                        layout=widgets.Layout(width="260px"))
    temp = widgets.FloatSlider(value=0.0, min=0.0, max=2.0, step=0.1, description="temperature",
                               continuous_update=False, style={"description_width": "initial"})
    layer = widgets.Dropdown(options=list(range(n_layers)), value=0, description="layer")
    head = widgets.Dropdown(options=list(range(H)), value=0, description="head")
    out = widgets.Output()

    def draw(change=None) -> None:
        with out:
            out.clear_output(wait=True)
            digits = "".join(c for c in text.value if c.isdigit())
            if len(digits) != task.n_digits:
                print(f"Type exactly {task.n_digits} digits (you typed {len(digits)}).")
                return
            idx = task.encode(digits + "|")[None]  # (1, n + 1)
            g = torch.Generator().manual_seed(0)
            seq = generate(model, idx, task.n_digits, temperature=temp.value, use_cache=True,
                           generator=g)[0]  # (2n + 1,)
            answer, right = task.decode(seq[task.n_digits + 1:]), "".join(sorted(digits))
            verdict = "correct" if answer == right else f"wrong: sorted is {right}"
            with torch.no_grad():
                logits, _ = model(idx)
            probs = torch.softmax(logits[0, -1] / max(temp.value, 1e-6), dim=-1)
            w = gpt_attention(model, seq[None, :-1])[layer.value][0, head.value]  # (2n, 2n)
            tokens = list(task.decode(seq[:-1]))
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.6),
                                           gridspec_kw={"width_ratios": [2, 1]})
            attention_heatmap(w, tokens, ax=ax1, annotate=False,
                              title=f"layer {layer.value}, head {head.value}: {digits}| -> "
                                    f"{answer} ({verdict})")
            ax2.bar(list(task.decode(range(task.vocab_size))), probs.numpy(),
                    color=plt.cm.viridis(0.35))
            ax2.set_ylim(0, 1)
            ax2.set_xlabel("token")
            ax2.set_ylabel("probability")
            label = "greedy: argmax" if temp.value == 0 else f"T = {temp.value:.1f}"
            ax2.set_title(f"first answer digit ({label})")
            fig.tight_layout()
            plt.show()

    for widget in (text, temp, layer, head):
        widget.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox([text, temp]), widgets.HBox([layer, head]), out])


def plot_step_costs(lengths: Sequence[int], without: Sequence[float],
                    with_cache: Sequence[float]):
    """Time of one generation step against the context length, without and with a KV cache."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.plot(lengths, [1000 * t for t in without], "o-", color=plt.cm.viridis(0.2),
            label="without cache: the whole sequence again")
    ax.plot(lengths, [1000 * t for t in with_cache], "s-", color=plt.cm.viridis(0.7),
            label="with cache: the new token only")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(list(lengths), [str(n) for n in lengths])
    ax.set_xlabel("context length (tokens so far)")
    ax.set_ylabel("milliseconds per step (log scale)")
    ax.set_title("The cost of generating one more token")
    ax.legend()
    fig.tight_layout()
    return fig
