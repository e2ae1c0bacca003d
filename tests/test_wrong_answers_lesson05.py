"""Lesson 05's checks against realistic wrong answers: each must fail with its own message.

Every wrong answer below is something a learner plausibly writes for `sinusoidal_encoding`,
`LearnedPositionalEmbedding`, `apply_rope` or `alibi_bias`; independent correct
implementations must pass every check id of the lesson.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn

import attnlab
from autograder.checks import REGISTRY

from .wrong_answers import fails, passes, row_test

SIN_IDS = ("sinusoidal.values", "sinusoidal.hidden", "sinusoidal.properties")
LEARNED_IDS = ("learned.layout", "learned.values", "learned.hidden", "learned.too_long")
ROPE_IDS = ("rope.values", "rope.hidden", "rope.positions", "rope.properties")
ALIBI_IDS = ("alibi.values", "alibi.hidden", "alibi.properties")
LESSON05_IDS = SIN_IDS + LEARNED_IDS + ROPE_IDS + ALIBI_IDS


def not_written(*args, **kwargs):
    raise NotImplementedError()


# --------------------------------------------------------------------------- sinusoidal


def sinusoidal(max_len, d_model):
    """The solution notebook's logic, written out independently."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]  # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float32)  # (d_model / 2,)
    angle = pos / 10000 ** (two_i / d_model)  # (max_len, d_model / 2)
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe


def sinusoidal_tutorial(max_len, d_model):
    """Another correct way: the exp-log form of the PyTorch tutorial."""
    position = torch.arange(max_len).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    pe = torch.zeros(max_len, d_model)
    pe[:, 0::2] = torch.sin(position * div_term)
    pe[:, 1::2] = torch.cos(position * div_term)
    return pe


def _sin_variant(max_len, d_model, base=10000.0, step=1.0, swap=False, concat=False, start=0):
    pos = torch.arange(start, start + max_len, dtype=torch.float32)[:, None]
    i = torch.arange(0, d_model, 2, dtype=torch.float32) * step
    angle = pos / base ** (i / d_model)
    s, c = (torch.cos(angle), torch.sin(angle)) if swap else (torch.sin(angle), torch.cos(angle))
    if concat:
        return torch.cat([s, c], dim=-1)
    return torch.stack([s, c], dim=-1).flatten(-2)


def sin_swapped(max_len, d_model):
    return _sin_variant(max_len, d_model, swap=True)


def sin_exponent_i(max_len, d_model):
    return _sin_variant(max_len, d_model, step=0.5)


def sin_base_1000(max_len, d_model):
    return _sin_variant(max_len, d_model, base=1000.0)


def sin_concatenated(max_len, d_model):
    return _sin_variant(max_len, d_model, concat=True)


def sin_from_one(max_len, d_model):
    return _sin_variant(max_len, d_model, start=1)


def sin_float64(max_len, d_model):
    return _sin_variant(max_len, d_model).double()


def sin_numpy(max_len, d_model):
    return _sin_variant(max_len, d_model).numpy()


def sin_own_index(max_len, d_model):
    """Each dim uses its own index: dims 2i and 2i+1 run at different frequencies."""
    pos = torch.arange(max_len, dtype=torch.float32)[:, None]
    angle = pos / 10000 ** (torch.arange(d_model) / d_model)
    even = torch.arange(d_model) % 2 == 0
    return torch.where(even, torch.sin(angle), torch.cos(angle))


def sin_calls_course(max_len, d_model):
    return attnlab.sinusoidal_encoding(max_len, d_model)


WRONG_SINUSOIDALS = [
    (sin_swapped, "sinusoidal.values", r"cos on the even dimensions"),
    (sin_exponent_i, "sinusoidal.values", r"exponent is 2i / d_model"),
    (sin_base_1000, "sinusoidal.values", r"base 1000 instead of 10000"),
    (sin_concatenated, "sinusoidal.values", r"concatenated layout"),
    (sin_from_one, "sinusoidal.values", r"positions 1, 2, \.\.\., max_len"),
    (sin_own_index, "sinusoidal.values", r"its own index"),
    (sin_numpy, "sinusoidal.values", r"should return a torch tensor"),
    (not_written, "sinusoidal.values", r"not written yet"),
    (sin_calls_course, "sinusoidal.values", r"calls the course's own sinusoidal_encoding"),
    (sin_swapped, "sinusoidal.hidden", r"cos on the even dimensions"),
]

# the hidden property checks explain structural mistakes without the reference
SIN_PROPERTY_MISTAKES = [
    (sin_swapped, r"sines and cosines are swapped"),
    (sin_concatenated, r"sines in the first half"),
    (sin_from_one, r"Do your positions start at 0"),
    (sin_own_index, r"SAME angle"),
    (sin_float64, r"dtype float64"),
]


# --------------------------------------------------------------------------- learned embedding


class GoodLearned(nn.Module):
    """A correct LearnedPositionalEmbedding, independent of the reference."""

    def __init__(self, max_len, d_model):
        super().__init__()
        self.max_len = max_len
        self.embedding = nn.Embedding(max_len, d_model)

    def positions(self, x):
        L = x.shape[1]
        if L > self.max_len:
            raise ValueError(f"{L} tokens, but max_len is {self.max_len}")
        return torch.arange(L, device=x.device)

    def forward(self, x):
        return x + self.embedding(self.positions(x))


class EmbeddingOnly(GoodLearned):
    def forward(self, x):
        return self.embedding(self.positions(x)).expand_as(x)


class EmbeddingOnlyUnbroadcast(GoodLearned):
    def forward(self, x):
        return self.embedding(self.positions(x))


class SamePosition(GoodLearned):
    def forward(self, x):
        self.positions(x)
        return x + self.embedding.weight[0]


class ByTokenValues(GoodLearned):
    def forward(self, x):
        self.positions(x)
        return x + self.embedding(x.long())


class UsesBatchAxis(GoodLearned):
    def forward(self, x):
        self.positions(x)
        return x + self.embedding(torch.arange(x.shape[0]))


class FloatPositions(GoodLearned):
    def forward(self, x):
        return x + self.embedding(self.positions(x).float())


class FromOne(GoodLearned):
    def forward(self, x):
        return x + self.embedding(self.positions(x) + 1)


class NoLengthCheck(GoodLearned):
    def forward(self, x):
        return x + self.embedding(torch.arange(x.shape[1]))


class SlicesTable(GoodLearned):
    def forward(self, x):
        return x + self.embedding.weight[: x.shape[1]]


class OffByOne(GoodLearned):
    def positions(self, x):
        if x.shape[1] >= self.max_len:
            raise ValueError("sequence too long for max_len")
        return torch.arange(x.shape[1])


class ParameterTable(nn.Module):
    def __init__(self, max_len, d_model):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(max_len, d_model))

    def forward(self, x):
        return x + self.embedding[: x.shape[1]]


class FrozenTable(GoodLearned):
    def __init__(self, max_len, d_model):
        super().__init__(max_len, d_model)
        self.embedding.weight.requires_grad_(False)


class Transposed(GoodLearned):
    def __init__(self, max_len, d_model):
        super().__init__(max_len, d_model)
        self.embedding = nn.Embedding(d_model, max_len)


class Detached(GoodLearned):
    def forward(self, x):
        return x + self.embedding(self.positions(x)).detach()


class CourseLearned(attnlab.LearnedPositionalEmbedding):
    pass


class LearnedNotWritten(nn.Module):
    def __init__(self, max_len, d_model):
        super().__init__()
        raise NotImplementedError()


WRONG_LEARNED = [
    (EmbeddingOnly, "learned.values", r"position embeddings alone"),
    (EmbeddingOnlyUnbroadcast, "learned.values", r"table of position embeddings alone"),
    (SamePosition, "learned.values", r"position 0 for every token"),
    (ByTokenValues, "learned.values", r"indexed with"),
    (FromOne, "learned.values", r"positions 1\.\.L"),
    (UsesBatchAxis, "learned.values", r"Use L = x\.size\(1\)"),
    (FloatPositions, "learned.values", r"integer index"),
    (ParameterTable, "learned.layout", r"`embedding` is a Parameter"),
    (FrozenTable, "learned.layout", r"does not require a gradient"),
    (Transposed, "learned.layout", r"nn.Embedding\(d_model, max_len\)"),
    (Detached, "learned.hidden", r"no \.detach\(\).*so the table can learn"),
    (CourseLearned, "learned.values", r"calls the course's own LearnedPositionalEmbedding"),
    (LearnedNotWritten, "learned.layout", r"not written yet"),
]

# a too-long sequence must raise a ValueError, and a sequence of max_len must work
LENGTH_MISTAKES = [
    (NoLengthCheck, r"raised IndexError.*comes from nn.Embedding itself"),
    (SlicesTable, r"raised RuntimeError|without an error"),
    (OffByOne, r"exactly 6 tokens"),
    (FromOne, r"exactly 6 tokens"),
]


# --------------------------------------------------------------------------- RoPE


def rope(x, positions=None, base=10000.0):
    """The solution notebook's logic, written out independently."""
    L, d = x.shape[-2:]
    if positions is None:
        positions = torch.arange(L)
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32) / d)  # (d / 2,)
    angle = positions.float()[:, None] * theta  # (L, d / 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = x[..., 0::2], x[..., 1::2]
    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)


def rope_complex(x, positions=None, base=10000.0):
    """Another correct way: pairs as complex numbers times e^(i pos theta)."""
    L, d = x.shape[-2:]
    pos = torch.arange(L) if positions is None else positions
    theta = base ** (-torch.arange(0, d, 2).double() / d)
    turn = torch.polar(torch.ones(L, d // 2, dtype=torch.float64), pos.double()[:, None] * theta)
    z = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    return torch.view_as_real(z * turn).flatten(-2).to(x.dtype)


def _rope_variant(x, positions=None, base=10000.0, half=False, sign=1.0, step=1.0,
                  start=0, cat=False, mix=False):
    L, d = x.shape[-2:]
    pos = (torch.arange(L) if positions is None else positions).float() + start
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32) * step / d)
    angle = sign * pos[:, None] * theta
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = (x[..., : d // 2], x[..., d // 2:]) if half else (x[..., 0::2], x[..., 1::2])
    first, second = a * cos - b * sin, (a * sin + b * cos) if not mix else (b * cos)
    if half or cat:
        return torch.cat((first, second), dim=-1)
    return torch.stack((first, second), dim=-1).flatten(-2)


def rope_half_split(x, positions=None, base=10000.0):
    return _rope_variant(x, positions, base, half=True)


def rope_wrong_sign(x, positions=None, base=10000.0):
    return _rope_variant(x, positions, base, sign=-1.0)


def rope_exponent_i(x, positions=None, base=10000.0):
    return _rope_variant(x, positions, base, step=0.5)


def rope_ignores_positions(x, positions=None, base=10000.0):
    return _rope_variant(x, None, base)


def rope_ignores_base(x, positions=None, base=10000.0):
    return _rope_variant(x, positions)


def rope_from_one(x, positions=None, base=10000.0):
    return _rope_variant(x, positions, base, start=1)


def rope_concatenated(x, positions=None, base=10000.0):
    return _rope_variant(x, positions, base, cat=True)


def rope_adds_angle(x, positions=None, base=10000.0):
    """Not a rotation: adds sinusoids, like an absolute encoding."""
    L, d = x.shape[-2:]
    return x + sinusoidal(L, d)


def rope_3d_only(x, positions=None, base=10000.0):
    """Reads L from axis 1, as if x were always (B, L, d_head)."""
    L = x.shape[1]
    return rope(x, torch.arange(L) if positions is None else positions, base)


def rope_calls_course(x, positions=None, base=10000.0):
    return attnlab.apply_rope(x, positions, base)


def rope_half_ignores_positions(x, positions=None, base=10000.0):
    return _rope_variant(x, None, 10000.0, half=True)


def rope_mixed_pair(x, positions=None, base=10000.0):
    """The second entry of each pair forgets a: not a rotation."""
    return _rope_variant(x, positions, base, mix=True)


def rope_float64(x, positions=None, base=10000.0):
    return rope(x.double(), positions, base)


def rope_squared_positions(x, positions=None, base=10000.0):
    """A rotation whose angle is not linear in the position."""
    L = x.shape[-2]
    pos = torch.arange(L) if positions is None else positions
    return rope(x, pos.float() ** 2 / 50, base)


WRONG_ROPES = [
    (rope_half_split, "rope.values", r"half-split layout"),
    (rope_half_split, "rope.hidden", r"half-split layout"),
    (rope_wrong_sign, "rope.values", r"wrong direction"),
    (rope_exponent_i, "rope.values", r"exponent is 2i / d_head"),
    (rope_from_one, "rope.values", r"positions 1\.\.L"),
    (rope_concatenated, "rope.values", r"concatenated"),
    (rope_ignores_positions, "rope.positions", r"ignores the `positions` argument"),
    (rope_half_ignores_positions, "rope.positions",
     r"ignores the `positions` argument.*also ignores `base`|does not match"),
    (rope_ignores_base, "rope.positions", r"ignores the `base` argument"),
    (rope_3d_only, "rope.values", r"any number of leading axes"),
    (rope_calls_course, "rope.values", r"calls the course's own apply_rope"),
    (not_written, "rope.values", r"not written yet"),
]

# the hidden property checks give class-level messages
ROPE_PROPERTY_MISTAKES = [
    (rope_adds_angle, r"keeps its length|norm"),
    (rope_from_one, r"At position 0 every angle is 0"),
    (rope_mixed_pair, r"keeps its length|norm"),
    (rope_float64, r"keep the input's dtype"),
    (rope_squared_positions, r"depend only on the offset"),
]


# --------------------------------------------------------------------------- ALiBi


def alibi(n_heads, L):
    """The solution notebook's logic, written out independently."""
    closest = 2 ** math.floor(math.log2(n_heads))                      # H'
    slopes = 2.0 ** (-8.0 * torch.arange(1, closest + 1) / closest)    # (H',)
    double = 2.0 ** (-4.0 * torch.arange(1, 2 * closest + 1) / closest)  # slopes for 2H'
    slopes = torch.cat([slopes, double[0::2][: n_heads - closest]])    # (H,)
    i = torch.arange(L)
    distance = (i[:, None] - i[None, :]).abs()  # (L, L)
    return -slopes[:, None, None] * distance  # (H, L, L)


def authors_get_slopes(n):
    """The ALiBi authors' get_slopes (ofirpress/attention_with_linear_biases), as a learner
    might copy it."""
    def get_slopes_power_of_2(n):
        start = 2 ** (-2 ** -(math.log2(n) - 3))
        return [start * start**i for i in range(n)]
    if math.log2(n).is_integer():
        return get_slopes_power_of_2(n)
    closest = 2 ** math.floor(math.log2(n))
    return get_slopes_power_of_2(closest) + authors_get_slopes(2 * closest)[0::2][: n - closest]


def alibi_loops(n_heads, L):
    """Another correct way: the authors' slopes, loops over heads, queries and keys."""
    slopes = authors_get_slopes(n_heads)
    out = torch.zeros(n_heads, L, L)
    for h in range(n_heads):
        for i in range(L):
            for j in range(L):
                out[h, i, j] = -slopes[h] * abs(i - j)
    return out


def alibi_bloom(n_heads, L):
    """A third correct way: the slopes of transformers' BLOOM (build_alibi_tensor)."""
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    slopes = build_alibi_tensor(torch.ones(1, 2, dtype=torch.long), n_heads, torch.float32)
    i = torch.arange(L)
    return -slopes[:, 0, 1][:, None, None] * (i[:, None] - i[None, :]).abs()


def alibi_power_of_two_formula(n_heads, L):
    """2^(-8 (h + 1) / H) for every H: right for 4 and 8 heads, wrong for 6."""
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
    i = torch.arange(L)
    return -slopes[:, None, None] * (i[:, None] - i[None, :]).abs()


def _alibi_from_slopes(slopes, L):
    i = torch.arange(L)
    return -torch.as_tensor(slopes)[:, None, None] * (i[:, None] - i[None, :]).abs()


def alibi_sorted(n_heads, L):
    return _alibi_from_slopes(sorted(authors_get_slopes(n_heads), reverse=True), L)


def alibi_first_extra(n_heads, L):
    """The extra heads take the first slopes for 2H', not the even-indexed ones."""
    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = authors_get_slopes(closest) + authors_get_slopes(2 * closest)[: n_heads - closest]
    return _alibi_from_slopes(slopes, L)


def _alibi_variant(n_heads, L, start=1, sign=-1.0, absolute=True, reverse=False):
    slopes = 2.0 ** (-8.0 * torch.arange(start, start + n_heads) / n_heads)
    if reverse:
        slopes = slopes.flip(0)
    i = torch.arange(L)
    d = i[:, None] - i[None, :]
    return sign * slopes[:, None, None] * (d.abs() if absolute else d)


def alibi_h_not_h1(n_heads, L):
    return _alibi_variant(n_heads, L, start=0)


def alibi_positive(n_heads, L):
    return _alibi_variant(n_heads, L, sign=1.0)


def alibi_no_abs(n_heads, L):
    return _alibi_variant(n_heads, L, absolute=False)


def alibi_reversed(n_heads, L):
    return _alibi_variant(n_heads, L, reverse=True)


def alibi_heads_last(n_heads, L):
    return alibi(n_heads, L).permute(1, 2, 0)


def alibi_calls_course(n_heads, L):
    return attnlab.alibi_bias(n_heads, L)


def alibi_batch_axis(n_heads, L):
    return alibi(n_heads, L)[None]


def alibi_diagonal(n_heads, L):
    return alibi(n_heads, L) - 0.1 * torch.eye(L)


def alibi_squared_distance(n_heads, L):
    slopes = 2.0 ** (-8.0 * torch.arange(1, n_heads + 1) / n_heads)
    i = torch.arange(L)
    return -slopes[:, None, None] * (i[:, None] - i[None, :]).float() ** 2


def alibi_harmonic_slopes(n_heads, L):
    i = torch.arange(L)
    return -(1.0 / torch.arange(1, n_heads + 1))[:, None, None] * (i[:, None] - i[None, :]).abs()


WRONG_ALIBIS = [
    (alibi_h_not_h1, "alibi.values", r"head 0 gets slope 1"),
    (alibi_positive, "alibi.values", r"\+slope \* \|i - j\|"),
    (alibi_no_abs, "alibi.values", r"without the absolute value"),
    (alibi_reversed, "alibi.values", r"slopes in reverse order"),
    (alibi_heads_last, "alibi.values", r"Heads come first"),
    (alibi_batch_axis, "alibi.values", r"Drop the leading axis"),
    (alibi_calls_course, "alibi.values", r"calls the course's own alibi_bias"),
    (not_written, "alibi.values", r"not written yet"),
    (alibi_power_of_two_formula, "alibi.values",
     r"H = 6: that formula holds for a power of two only.*H' = 4.*1/4, 1/16, 1/64, 1/256"
     r".*even-indexed slopes \(0, 2, 4, \.\.\.\) for 2H' = 8 \(1/2, 1/8\)"),
    (alibi_power_of_two_formula, "alibi.hidden", r"H = 3: that formula holds for a power"),
    (alibi_sorted, "alibi.values", r"right slopes, sorted from steep to gentle"),
    (alibi_first_extra, "alibi.values", r"extra heads take the first slopes for 2H' = 8"),
]

# the hidden property checks give class-level messages
ALIBI_PROPERTY_MISTAKES = [
    (alibi_h_not_h1, r"Head 0's slope is 1"),
    (alibi_positive, r"positive entries"),
    (alibi_no_abs, r"not symmetric"),
    (alibi_reversed, r"Head 0's slope"),
    (alibi_power_of_two_formula, r"Head 0's slope is .* 2\^\(-8/4\) = 0\.25 \(for H = 6, not a "
                                 r"power of two"),
    (alibi_first_extra, r"heads 4\.\.5 should take the even-indexed slopes"),
    (alibi_diagonal, r"on the diagonal"),
    (alibi_squared_distance, r"proportional to the distance"),
    (alibi_harmonic_slopes, r"slope"),
]


# ------------------------------------------------------------------------ one mistake, once

# A learner's notebook: apply_rope reuses their own sinusoidal_encoding (its sines and cosines
# are RoPE's for the default base), which has sin and cos swapped. The RoPE checks run it with
# the grader's stand-in in its place, so the swap costs the sinusoidal points only.
NOTEBOOK: dict = {"torch": torch}
exec("def sinusoidal_encoding(max_len, d_model):\n"
     "    pos = torch.arange(max_len, dtype=torch.float32)[:, None]\n"
     "    angle = pos / 10000 ** (torch.arange(0, d_model, 2).float() / d_model)\n"
     "    return torch.stack([angle.cos(), angle.sin()], dim=-1).flatten(-2)  # swapped\n"
     "def apply_rope(x, positions=None, base=10000.0):\n"
     "    L, d = x.shape[-2:]\n"
     "    if positions is None:\n"
     "        positions = torch.arange(L)\n"
     "    if base == 10000.0:  # the sinusoidal table holds sin and cos of pos * theta_i\n"
     "        pe = sinusoidal_encoding(int(positions.max()) + 1, d)[positions]\n"
     "        sin, cos = pe[:, 0::2], pe[:, 1::2]\n"
     "    else:\n"
     "        theta = base ** (-torch.arange(0, d, 2).float() / d)\n"
     "        angle = positions.float()[:, None] * theta\n"
     "        sin, cos = angle.sin(), angle.cos()\n"
     "    a, b = x[..., 0::2], x[..., 1::2]\n"
     "    return torch.stack((a * cos - b * sin, a * sin + b * cos), dim=-1).flatten(-2)\n"
     "def sinusoidal_stealing(max_len, d_model):\n"
     "    from autograder.checks.lesson05.cases import stand_in_sinusoidal_encoding\n"
     "    return stand_in_sinusoidal_encoding(max_len, d_model)\n", NOTEBOOK)

ISOLATION = [
    fails(NOTEBOOK["sinusoidal_encoding"], "sinusoidal.values", "cos on the even dimensions",
          name="own-sinusoidal-swapped"),
    # apply_rope is judged on its own: the swapped table it reads costs the sinusoidal points
    *passes(NOTEBOOK["apply_rope"], *ROPE_IDS, name="rope-over-own-wrong-sinusoidal"),
    *[fails(NOTEBOOK["sinusoidal_stealing"], check_id, "the grader's stand-in sinusoidal",
            name="sinusoidal-is-the-stand-in") for check_id in SIN_IDS],
]


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(sinusoidal, *SIN_IDS),
    *passes(sinusoidal_tutorial, *SIN_IDS),
    *passes(GoodLearned, *LEARNED_IDS),
    *passes(rope, *ROPE_IDS),
    *passes(rope_complex, *ROPE_IDS),
    *passes(alibi, *ALIBI_IDS),
    *passes(alibi_loops, *ALIBI_IDS),
    *passes(alibi_bloom, *ALIBI_IDS),
    # i/d frequencies are a valid encoding, only not the paper's
    *passes(sin_exponent_i, "sinusoidal.properties"),
    # a rotation mistake that handles positions and base right keeps the positions point
    *[row for fn in (rope_half_split, rope_wrong_sign, rope_exponent_i, rope_concatenated)
      for row in passes(fn, "rope.positions")],
    *[fails(fn, cid, message) for fn, cid, message in WRONG_SINUSOIDALS],
    *[fails(fn, "sinusoidal.properties", message) for fn, message in SIN_PROPERTY_MISTAKES],
    *[fails(cls, cid, message) for cls, cid, message in WRONG_LEARNED],
    *[fails(cls, "learned.too_long", message) for cls, message in LENGTH_MISTAKES],
    *[fails(fn, cid, message) for fn, cid, message in WRONG_ROPES],
    *[fails(fn, "rope.properties", message) for fn, message in ROPE_PROPERTY_MISTAKES],
    *[fails(fn, cid, message) for fn, cid, message in WRONG_ALIBIS],
    *[fails(fn, "alibi.properties", message) for fn, message in ALIBI_PROPERTY_MISTAKES],
    *ISOLATION,
]

test_row = row_test(ROWS)


def test_lesson05_registers_its_check_ids():
    """Are all fourteen of lesson 05's check ids registered, and no others of its exercises?"""
    assert {i for i in REGISTRY
            if i.split(".")[0] in ("sinusoidal", "learned", "rope", "alibi")} == \
        set(LESSON05_IDS)


def test_reference_is_what_the_checks_expect():
    """Do the reference kernels pass their own value checks (with the guard lifted)?"""
    pe = attnlab.sinusoidal_encoding(6, 8).numpy()
    np.testing.assert_allclose(pe, sinusoidal(6, 8).numpy(), atol=1e-6)
