"""Lesson 07: a toy algorithmic task (sorting digit strings) and a small training loop for it.

Everything random comes from explicit ``torch.Generator`` objects: the data, the held-out set
and the initial weights. Training never touches the global random stream, so the same seeds
give the same model on every run of the notebook.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from autograder.reference.pretrained import one_thread  # one copy: MiniLM runs on it too

SEP = 10  # token id of "|", between the digits and their sorted copy
ALPHABET = "0123456789|"  # token id -> character
IGNORE = -100  # target value that cross_entropy skips (the prompt's positions)
GPT_SIZE = dict(d_model=64, n_heads=4, n_layers=2)  # the lesson's TinyGPT (~100k parameters)
FULL_STEPS = 400  # training steps of the full run: about 10 s on a laptop CPU
GRADING_STEPS = 40  # the short, stated budget while a grader runs the notebook
PASS_ACCURACY = 0.99  # the full run must sort this fraction of held-out strings exactly


def grading_run() -> bool:
    """True only when a grader runs the notebook: ``ATTNLAB_GRADING`` is set to a non-empty value.

    The graders set it explicitly: ``python -m autograder check`` and the self-check cell,
    ``python -m autograder grade`` (its sandboxed kernels), and every kernel nbgrader's
    Execute starts under the course's configuration (autograde, Validate), through
    ``Execute.extra_arguments`` in nbgrader_config.py. Anywhere else (JupyterLab, VS Code,
    a plain Jupyter server, nbconvert, nbclient) the notebook trains fully.
    """
    return bool(os.environ.get("ATTNLAB_GRADING"))


@dataclass(frozen=True)
class SortTask:
    """Sort n digits: "31415926|" should continue with "11234569".

    A full sequence is the n digits, the separator and the n digits sorted: 2n + 1 tokens.
    The model is trained on every position at once (inputs = the sequence without its last
    token, targets = the sequence shifted by one); only the n sorted digits are scored.
    """

    n_digits: int = 8  # digits per string: 10**8 different strings

    @property
    def vocab_size(self) -> int:
        return len(ALPHABET)

    @property
    def seq_len(self) -> int:
        """Tokens in a full sequence, and the max_len a model needs to generate the answer."""
        return 2 * self.n_digits + 1

    @property
    def prompt_len(self) -> int:
        return self.n_digits + 1

    def sequences(self, digits: Tensor) -> Tensor:
        """(N, n) digits -> (N, 2n + 1) full sequences: digits, separator, sorted digits."""
        sep = torch.full((digits.size(0), 1), SEP, dtype=digits.dtype)
        return torch.cat([digits, sep, digits.sort(dim=1).values], dim=1)

    def random_digits(self, size: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, 10, (size, self.n_digits), generator=generator)  # (N, n)

    def held_out(self, size: int = 1000, seed: int = 2024) -> Tensor:
        """(size, 2n + 1) test sequences, drawn once; training never sees them."""
        return self.sequences(self.random_digits(size, torch.Generator().manual_seed(seed)))

    def codes(self, digits: Tensor) -> Tensor:
        """One integer per digit string, to tell whether two strings are the same."""
        powers = 10 ** torch.arange(self.n_digits, dtype=torch.int64)
        return (digits.to(torch.int64) * powers).sum(dim=1)  # (N,)

    def batch(self, size: int, generator: torch.Generator,
              exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Inputs (N, 2n) and targets (N, 2n); strings whose code is in ``exclude`` redrawn."""
        digits = self.random_digits(size, generator)
        if exclude is not None:
            clash = torch.isin(self.codes(digits), exclude)
            while clash.any():  # about one string in 10**5 at the default sizes
                digits[clash] = self.random_digits(int(clash.sum()), generator)
                clash = torch.isin(self.codes(digits), exclude)
        return self.inputs_targets(self.sequences(digits))

    def inputs_targets(self, seqs: Tensor) -> tuple[Tensor, Tensor]:
        """Next-token pairs: input t is token t, target t is token t + 1 (prompt ignored)."""
        x, y = seqs[:, :-1], seqs[:, 1:].clone()  # (N, 2n) each
        y[:, : self.n_digits] = IGNORE  # targets up to the separator cannot be predicted
        return x, y

    def encode(self, text: str) -> Tensor:
        """"31415926|" -> tensor([3, 1, 4, 1, 5, 9, 2, 6, 10])."""
        return torch.tensor([ALPHABET.index(c) for c in text])

    def decode(self, tokens) -> str:
        return "".join(ALPHABET[int(t)] for t in tokens)


RESIDUAL_PROJECTIONS = ("out_proj.weight", "linear2.weight")  # write into the residual stream


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator, std: float = 0.02) -> nn.Module:
    """GPT-2's initialisation from a generator (Radford et al., 2019, sec. 2.3).

    Every matrix ~ N(0, std^2) (GPT-1's rule), biases 0, norm gains 1; then GPT-2's addition:
    the matrices that write into the residual stream (attention's ``out_proj`` and the
    feed-forward's ``linear2``) are scaled by 1/sqrt(N), N = how many of them the model has
    (2 per GPT block), so the stream's variance at the top does not grow with the depth.
    The same rule as Hugging Face's GPT2PreTrainedModel._init_weights (its ``c_proj``).

    Parameters are visited in sorted name order, so the result depends only on the names
    (tok_emb.weight, blocks.0.attn.q_proj.weight, ...), not on the order they were created in.
    A 1-d ``weight`` is a LayerNorm's gain (set to 1); a 1-d ``bias`` is set to 0.
    """
    residual = [name for name, p in model.named_parameters()
                if p.dim() >= 2 and name.endswith(RESIDUAL_PROJECTIONS)]
    for name, p in sorted(model.named_parameters()):
        if p.dim() >= 2:
            scale = len(residual) ** -0.5 if name in residual else 1.0
            p.copy_(std * scale * torch.randn(p.shape, generator=generator))
        else:
            p.fill_(1.0 if name.endswith("weight") else 0.0)
    return model


@torch.no_grad()
def exact_accuracy(model: nn.Module, task: SortTask, seqs: Tensor) -> float:
    """Fraction of sequences whose n answer digits are all the model's top prediction.

    With the true tokens fed in (teacher forcing), "every answer digit is the argmax" is the
    same event as "greedy generation from the prompt writes exactly the answer": one forward
    pass instead of n generation steps.
    """
    was_training = model.training
    model.eval()
    try:
        x, y = task.inputs_targets(seqs)
        logits, _ = model(x)  # (N, 2n, vocab)
        right = (logits.argmax(-1) == y) | (y == IGNORE)  # (N, 2n)
        return right.all(dim=1).float().mean().item()
    finally:
        model.train(was_training)


@dataclass
class History:
    """What a training run produced: the loss of every step, the held-out accuracy now and then."""

    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    eval_steps: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        return self.accuracies[-1] if self.accuracies else float("nan")


def train(model: nn.Module, task: SortTask, steps: int, generator: torch.Generator, *,
          batch_size: int = 64, lr: float = 3e-3, held_out: Tensor | None = None,
          eval_every: int = 25, progress: bool = True) -> History:
    """Train ``model`` (forward(idx) -> (logits, cache)) on fresh random batches.

    AdamW with a one-cycle learning rate (warm up for 10% of the steps, then anneal), on one
    thread, the held-out sequences (default: ``task.held_out()``) excluded from the training
    data and scored every ``eval_every`` steps. The model is trained in place and left in
    eval mode.
    """
    held_out = task.held_out() if held_out is None else held_out
    exclude = task.codes(held_out[:, : task.n_digits])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                   pct_start=0.1)
    history = History()
    bar = _progress(steps, progress)
    start = time.perf_counter()
    try:
        with one_thread():
            model.train()
            for step in range(1, steps + 1):
                x, y = task.batch(batch_size, generator, exclude)  # (B, 2n) each
                logits, _ = model(x)  # (B, 2n, vocab)
                loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                history.steps.append(step)
                history.losses.append(loss.item())
                if step % eval_every == 0 or step == steps:
                    history.eval_steps.append(step)
                    history.accuracies.append(exact_accuracy(model, task, held_out))
                    if bar is not None:
                        bar.set_postfix(loss=f"{loss.item():.3f}",
                                        held_out=f"{history.accuracies[-1]:.1%}")
                if bar is not None:
                    bar.update(1)
    finally:
        history.seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        model.eval()
    return history


def _progress(steps: int, show: bool):
    """A text progress bar on standard output: the same in JupyterLab, other front ends and a
    terminal, and it leaves the lesson's one ipywidgets explorer the only widget."""
    if not show:
        return None
    from tqdm import tqdm

    bar = tqdm(total=steps, desc="training", unit="step", file=sys.stdout, ncols=100,
               mininterval=0.25)
    bar.set_postfix(loss="-", held_out="-")  # room for the numbers from the start
    return bar
