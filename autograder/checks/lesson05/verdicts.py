"""Lesson 05's verdicts: reference oracles, known mistakes and messages (trusted side only).

Value checks compare with the reference and name known mistakes (computed here, from the
formulas, for the same case); property checks test what any correct encoding must satisfy
(a sine and a cosine of one angle per pair, rotations that keep norms and depend on offsets
only, a symmetric distance penalty...) and give class-level messages for mistakes nobody
catalogued.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from autograder.reference import LearnedPositionalEmbedding as RefLearned
from autograder.reference import alibi_bias as ref_alibi
from autograder.reference import apply_rope as ref_rope
from autograder.reference import sinusoidal_encoding as ref_sinusoidal

from .._core import Outcome, TensorRecord
from .._module_verdicts import compare_cases, reference_module, reference_output
from .._verdict import (
    Mistake,
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    fmt,
)
from .cases import (
    ALIBI_PROP,
    LPE_GRAD,
    LPE_HIDDEN,
    LPE_LAYOUT,
    LPE_VALUES,
    PROP_SIN,
    ROPE_HIDDEN,
    ROPE_POSITIONS,
    ROPE_VALUES,
    TOO_LONG,
    AlibiCase,
    LpeCase,
    RopeCase,
    SinCase,
    alibi_cases,
    lpe_grad_out,
    lpe_inputs,
    lpe_table,
    rope_prop_inputs,
    rope_x,
    sin_cases,
)


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _few(values: np.ndarray, digits: int = 3) -> list[float]:
    """A few numbers, rounded, for a message."""
    return [round(float(v), digits) for v in np.ravel(values)]


def _tensor(out: Outcome, what: str, case: str) -> np.ndarray:
    """The learner's single returned tensor, as a numpy array (checks a tensor came back)."""
    value = check_outcome(out, what, case)
    got = as_array(value, what, case)
    if not isinstance(value, TensorRecord):
        fail(f"{what} should return a torch tensor, but returned a {type(value).__name__} "
             f"({case}). Stay in torch (torch.sin, torch.cos, torch.arange...), as the later "
             "lessons do.")
    if got.dtype.kind not in "fc":
        fail(f"{what} returned a tensor of dtype {value.torch_dtype} ({case}); positional "
             "information is made of real numbers. Did you build it from an integer "
             "torch.arange and never turn it into floats?")
    return got


# --------------------------------------------------------------------------- sinusoidal


SIN = "Your sinusoidal_encoding"


def _pe(max_len: int, d: int, *, base: float = 10000.0, exponent: str = "2i",
        layout: str = "interleaved", swap: bool = False, start: int = 0,
        multiply: bool = False) -> np.ndarray:
    """The sinusoidal table in float64, with one deliberate deviation from the paper."""
    pos = np.arange(start, start + max_len, dtype=float)[:, None]  # (max_len, 1)
    if exponent == "dim":  # every dimension with its own index: dims 2i and 2i+1 disagree
        e = np.arange(d) / d
        angle = pos / base ** e if not multiply else pos * base ** e  # (max_len, d)
        even = (np.arange(d) % 2 == 0)
        first, second = (np.cos, np.sin) if swap else (np.sin, np.cos)
        return np.where(even, first(angle), second(angle))
    two_i = np.arange(0, d, 2, dtype=float)  # (d / 2,)
    e = {"2i": two_i / d, "i": two_i / 2 / d, "4i": 2 * two_i / d}[exponent]
    angle = pos * base ** e if multiply else pos / base ** e  # (max_len, d / 2)
    s, c = np.sin(angle), np.cos(angle)
    if swap:
        s, c = c, s
    if layout == "concat":
        return np.concatenate([s, c], axis=-1)
    return np.stack([s, c], axis=-1).reshape(max_len, -1)[:, :d]


M_SIN_SWAP = ("It matches cos on the even dimensions and sin on the odd ones: it is the other "
              "way round, PE[pos, 2i] = sin and PE[pos, 2i+1] = cos (so PE[0] = [0, 1, 0, 1, "
              "...]).")
M_SIN_I = ("It matches frequencies 1 / 10000^(i / d_model) with i = 0, 1, 2, ... counting the "
           "pairs. The exponent is 2i / d_model: the index of the even dimension, "
           "torch.arange(0, d_model, 2), divided by d_model.")
M_SIN_4I = ("It matches the exponent 4i / d_model: torch.arange(0, d_model, 2) already counts "
            "2i, so do not multiply it by 2 again.")
M_SIN_DIM = ("It matches every dimension using its own index in the exponent, so the cosine in "
             "dim 2i+1 runs at a different frequency from the sine in dim 2i. Both dims of a "
             "pair share one angle: pos / 10000^(2i / d_model).")
M_SIN_BASE = "It matches base 1000 instead of 10000: the frequencies are 1 / 10000^(2i/d_model)."
M_SIN_CONCAT = ("It matches the concatenated layout: all the sines in the first half, all the "
                "cosines in the second. That holds the same numbers in another order, but the "
                "paper (and this course's contract) interleaves them: sin in even dims "
                "pe[:, 0::2], cos in odd dims pe[:, 1::2].")
M_SIN_START = ("It matches positions 1, 2, ..., max_len: the first position is 0 "
               "(torch.arange(max_len)), so PE[0] = [0, 1, 0, 1, ...].")
M_SIN_MULT = ("It matches pos * 10000^(2i/d_model): divide by 10000^(2i/d_model) (the "
              "frequency is 1 / 10000^(2i/d_model)), so the wavelengths grow with i.")


def _sin_mistakes(max_len: int, d: int) -> list[Mistake]:
    return [
        (M_SIN_SWAP, _pe(max_len, d, swap=True)),
        (M_SIN_I, _pe(max_len, d, exponent="i")),
        (M_SIN_4I, _pe(max_len, d, exponent="4i")),
        (M_SIN_DIM, _pe(max_len, d, exponent="dim")),
        (M_SIN_BASE, _pe(max_len, d, base=1000.0)),
        (M_SIN_CONCAT, _pe(max_len, d, layout="concat")),
        (M_SIN_CONCAT + " (Also, sin and cos are swapped.)",
         _pe(max_len, d, layout="concat", swap=True)),
        (M_SIN_START, _pe(max_len, d, start=1)),
        (M_SIN_MULT, _pe(max_len, d, multiply=True)),
    ]


def _sin_shape_hint(got: tuple, max_len: int, d: int) -> str:
    if got == (d, max_len):
        return "Rows are positions and columns are dimensions: (max_len, d_model)."
    if got == (max_len, d // 2):
        return ("That is one column per pair: put the sines in the even columns and the "
                "cosines in the odd ones, pe[:, 0::2] and pe[:, 1::2].")
    if len(got) == 3 and got[-2:] == (max_len, d):
        return "Return the table itself, (max_len, d_model), without a batch axis."
    return "One row per position, one column per dimension: (max_len, d_model)."


def _expect_values(out: Outcome, what: str, output: str, desc: str, want: np.ndarray,
                   hint, mistakes: list[Mistake], atol: float, rtol: float) -> None:
    """The learner's tensor: its shape (``hint(shape)`` says what a wrong one means), finite,
    then its values, naming the first known mistake that matches."""
    got = _tensor(out, what, desc)
    expect_shape(got, want.shape, output, desc, hint=hint(tuple(got.shape)))
    expect_finite(got, output, desc)
    expect_close(got, want, what, desc, mistakes, atol=atol, rtol=rtol)


def _compare_sin(out: Outcome, case: SinCase) -> None:
    n, d = case.max_len, case.d_model
    _expect_values(out, SIN, "The table from your sinusoidal_encoding", case.desc,
                   _np(ref_sinusoidal(n, d)), lambda shape: _sin_shape_hint(shape, n, d),
                   _sin_mistakes(n, d), atol=1e-4, rtol=1e-4)


def _compare_sin_properties(rec: dict) -> None:
    n, d, desc = PROP_SIN.max_len, PROP_SIN.d_model, PROP_SIN.desc
    got = _tensor(rec["table"], SIN, desc)
    expect_shape(got, (n, d), "The table from your sinusoidal_encoding", desc,
                 hint=_sin_shape_hint(tuple(got.shape), n, d))
    dtype = rec["table"].value.torch_dtype
    if dtype != "float32":
        fail(f"Your encoding has dtype {dtype}; return float32 (PyTorch's default), so that "
             "x + pe keeps float32 token vectors float32 (a float64 sum would then clash "
             "with float32 nn.Linear weights). Build it from torch.arange(...) with float32 "
             "maths, or call .float() at the end.")
    expect_finite(got, "The table from your sinusoidal_encoding", desc)
    if np.abs(got).max() > 1 + 1e-5:
        fail(f"Your encoding has values up to {fmt(float(np.abs(got).max()))}; sines and "
             "cosines stay within [-1, 1]. Is every entry a sin or a cos?")
    first = got[0]
    zeros_ones = np.tile([0.0, 1.0], d // 2)
    if not np.allclose(first, zeros_ones, atol=1e-5):
        if np.allclose(first, np.tile([1.0, 0.0], d // 2), atol=1e-5):
            fail("Your PE[0] is [1, 0, 1, 0, ...]: the sines and cosines are swapped. Even "
                 "dims hold sin (sin 0 = 0), odd dims hold cos (cos 0 = 1).")
        if np.allclose(first, np.repeat([0.0, 1.0], d // 2), atol=1e-5):
            fail("Your PE[0] is [0, ..., 0, 1, ..., 1]: sines in the first half, cosines in "
                 "the second. Interleave them instead: sin in the even dims pe[:, 0::2], cos "
                 "in the odd dims pe[:, 1::2].")
        fail(f"Your PE[0] starts {_few(first[:6])}, but at position 0 every "
             "angle is 0, so PE[0] = [0, 1, 0, 1, ...] (sin 0, cos 0, ...). Do your positions "
             "start at 0?")
    pair_norm = got[:, 0::2] ** 2 + got[:, 1::2] ** 2  # (max_len, d / 2)
    if not np.allclose(pair_norm, 1.0, atol=1e-4):
        pos, i = np.unravel_index(int(np.argmax(np.abs(pair_norm - 1))), pair_norm.shape)
        fail(f"PE[{pos}, {2 * i}]^2 + PE[{pos}, {2 * i + 1}]^2 = "
             f"{fmt(float(pair_norm[pos, i]))}, not 1. Dims 2i and 2i+1 must be the sine and "
             "the cosine of the SAME angle pos / 10000^(2i/d_model): check that the two "
             "share one frequency and that they sit side by side (interleaved).")
    if not np.allclose(got[1, :2], [math.sin(1.0), math.cos(1.0)], atol=1e-5):
        fail(f"PE[1, 0:2] = {_few(got[1, :2], 4)}, but pair 0 has frequency "
             "1 / 10000^0 = 1, so it should be [sin 1, cos 1] = [0.8415, 0.5403]: the first "
             "pair turns by one radian per position.")
    gram = got.astype(np.float64) @ got.astype(np.float64).T  # (max_len, max_len)
    for k in range(-n + 1, n):
        diag = np.diagonal(gram, offset=k)
        if np.ptp(diag) > 1e-3:
            fail(f"PE[m] · PE[n] should depend only on the offset m - n (it is "
                 f"sum_i cos((m - n) * w_i)), but yours varies from {fmt(float(diag.min()))} "
                 f"to {fmt(float(diag.max()))} along offset {k}. Do dims 2i and 2i+1 use one "
                 "frequency per pair?")


# --------------------------------------------------------------------------- learned embedding


LPE = "Your LearnedPositionalEmbedding"


def _check_lpe_built(info: dict, max_len: int, d: int) -> None:
    built = f"LearnedPositionalEmbedding({max_len}, {d})"
    out = info["construct"]
    if out.error and "before Module.__init__" in out.error:
        fail(f"Building {built} raised {out.error}. Call super().__init__() first in your "
             "__init__.")
    check_outcome(out, built)
    if not info["module"]:
        fail("LearnedPositionalEmbedding should be an nn.Module: class "
             "LearnedPositionalEmbedding(nn.Module), with super().__init__() first.")
    attr = info["attr"]
    if attr is None:
        fail(f"{LPE} has no attribute `embedding`. Create it in __init__: "
             "self.embedding = nn.Embedding(max_len, d_model), one learned row per position.")
    if not attr["embedding"]:
        fail(f"`embedding` is a {attr['kind']}; make it an nn.Embedding(max_len, d_model), so "
             "its table is a trainable parameter the checks (and later lessons) can find.")
    if attr["weight_shape"] != (max_len, d):
        swapped = attr["weight_shape"] == (d, max_len)
        fail(f"`embedding.weight` has shape {attr['weight_shape']} in {built}, but there is "
             f"one row per position: {(max_len, d)}."
             + (" Did you write nn.Embedding(d_model, max_len)?" if swapped else ""))
    if not attr["trainable"]:
        fail("`embedding.weight` does not require a gradient, so the table would never be "
             "learned. Leave nn.Embedding's weight as the trainable parameter it is.")
    if attr.get("load_error"):
        fail(f"Could not load a test table into `embedding.weight` ({attr['load_error']}).")


def _lpe_mistakes(x: Tensor, W: Tensor) -> list[Mistake]:
    B, L, d = x.shape
    out = [
        ("It matches the position embeddings alone: add them to the token vectors, "
         "x + self.embedding(positions).", _np(W[:L].expand(B, L, d))),
        ("It matches x plus the embedding of position 0 for every token: each token needs "
         "the row of its own position, self.embedding(torch.arange(L)).", _np(x + W[0])),
        (f"It matches x plus the embedding of position {L - 1} for every token: look up all "
         "positions at once, self.embedding(torch.arange(L)) has shape (L, d_model).",
         _np(x + W[L - 1])),
        ("It matches x multiplied by the position embeddings: they are added, "
         "x + self.embedding(positions).", _np(x * W[:L])),
        ("It matches x minus the position embeddings: add them.", _np(x - W[:L])),
    ]
    if L + 1 <= W.shape[0]:
        out.append(("It matches positions 1..L: the first position is 0, torch.arange(L).",
                    _np(x + W[1:L + 1])))
    if L <= W.shape[0]:
        out.append(("It matches the last L rows of the table: position p uses row p, counting "
                    "from row 0.", _np(x + W[W.shape[0] - L:])))
    return out


def _lpe_shape_hint(got: tuple, B: int, L: int, d: int) -> str:
    if got == (L, d):
        return ("(L, d_model) is the table of position embeddings alone: add it to x, which "
                "broadcasts it over the batch.")
    if got == (B, L, 2 * d):
        return "It looks like a concatenation: add the embeddings to x instead."
    if len(got) == 4 and got[-1] == d:
        return ("It looks like the embedding was indexed with the values of x. The rows to "
                "look up are the positions 0..L-1: self.embedding(torch.arange(L)).")
    return "The output has the shape of x: (B, L, d_model)."


INDEX_HINT = ("It looks like the embedding was indexed with something other than the positions "
              "0..L-1 (the values of x, or the wrong axis). Use L = x.size(1) (x is batch "
              "first, (B, L, d_model)) and self.embedding(torch.arange(L, device=x.device)).")


def _lpe_forward(info: dict, desc: str) -> np.ndarray:
    out = info["forward"]
    if out.error and not out.forbidden and out.error_type != "NotImplementedError":
        text = out.error.lower()
        if "scalar type" in text or "long, int" in text:
            fail(f"{LPE} raised {out.error} ({desc}). nn.Embedding looks rows up by integer "
                 "index: pass it torch.arange(L) as it is (int64), not converted to floats.")
        if "index out of range" in text or "expected tensor for argument" in text \
                or "indices" in text or out.error_type == "IndexError":
            fail(f"{LPE} raised {out.error} ({desc}). {INDEX_HINT}")
        if "size of tensor" in text or "broadcast" in text or "must match" in text:
            fail(f"{LPE} raised {out.error} ({desc}). {INDEX_HINT}")
        if out.error_type == "ValueError" and "max_len" in text:
            fail(f"{LPE} refused a sequence that fits ({desc}): raise only when "
                 "L = x.size(1) is larger than max_len.")
    return _tensor(out, LPE, desc)


def _compare_lpe(cases: list[LpeCase], grad: bool = False):
    def compare(rec: dict) -> None:
        for case in cases:
            desc, B, L, d = case.desc, case.B, case.L, case.d_model
            info = rec[desc]
            _check_lpe_built(info, case.max_len, d)
            got = _lpe_forward(info, desc)
            x, W = lpe_inputs(case), lpe_table(case)
            want = reference_output(reference_module(
                RefLearned, (case.max_len, d), params={"embedding.weight": W}), x)
            expect_shape(got, want.shape, "The output of your LearnedPositionalEmbedding", desc,
                         hint=_lpe_shape_hint(tuple(got.shape), B, L, d))
            expect_finite(got, "The output of your LearnedPositionalEmbedding", desc)
            if L > 1 and not close(got, want):
                added = got - _np(x)
                if np.allclose(added, added[:, :1], atol=1e-6):
                    expect_close(got, want, LPE, desc, _lpe_mistakes(x, W),
                                 hint="Every token got the same vector added, whatever its "
                                      "position: look up one row per position, "
                                      "self.embedding(torch.arange(L)).")
            expect_close(got, want, LPE, desc, _lpe_mistakes(x, W))
        if grad:
            case = LPE_GRAD
            desc, max_len, d, L = case.desc, case.max_len, case.d_model, case.L
            info = rec["grad"]
            _check_lpe_built(info, max_len, d)
            what = "Backpropagating through your LearnedPositionalEmbedding"
            got = info["grad"]
            if got.error and "grad" in got.error and not got.forbidden:
                fail(f"{what} raised {got.error}. Keep every step in torch (no .detach(), no "
                     "torch.no_grad()) so the table can learn.")
            value = check_outcome(got, what, desc)
            if value is None:
                fail(f"No gradient reached embedding.weight ({desc}). Add the rows from "
                     "self.embedding(...) to x without detaching them.")
            want = np.zeros((max_len, d), dtype=np.float32)
            want[:L] = _np(lpe_grad_out(case).sum(0))
            expect_close(np.asarray(value), want, "The gradient of embedding.weight", desc,
                         hint="Row p of the table should receive the gradient of position p, "
                              "summed over the batch; rows past L get none.")
    return compare


def _compare_lpe_layout(rec: dict) -> None:
    _check_lpe_built(rec, LPE_LAYOUT.max_len, LPE_LAYOUT.d_model)


def _compare_too_long(rec: dict) -> None:
    max_len, d = TOO_LONG.max_len, TOO_LONG.d_model
    _check_lpe_built(rec, max_len, d)
    built = f"LearnedPositionalEmbedding({max_len}, {d})"
    fits = rec["fits"]
    if fits.error_type == "ValueError" and not fits.forbidden:
        fail(f"{built} raised {fits.error} for a sequence of exactly {max_len} tokens. It "
             f"fits: positions 0..{max_len - 1} all have a row. Raise only when L > max_len.")
    if fits.error_type == "IndexError" and not fits.forbidden:
        fail(f"{built} raised {fits.error} for a sequence of exactly {max_len} tokens. The "
             f"positions are 0..{max_len - 1} (torch.arange(L)), which all have a row.")
    check_outcome(fits, LPE, f"x of shape (2, {max_len}, {d})")
    for key, L in (("long", max_len + 1), ("longer", 3 * max_len)):
        out = rec[key]
        case = f"x of shape ({2 if key == 'long' else 1}, {L}, {d})"
        if out.forbidden or out.error_type == "NotImplementedError":
            check_outcome(out, LPE, case)
        if out.error is None:
            fail(f"{built} accepted a sequence of {L} tokens ({case}) without an error, but "
                 f"the table has rows for positions 0..{max_len - 1} only: there is nothing to "
                 "add at the later positions. Check L = x.size(1) against self.max_len and "
                 "raise a ValueError.")
        if out.error_type != "ValueError":
            inside = (" (That IndexError comes from nn.Embedding itself, and does not tell the "
                      "user what went wrong.)" if "index out of range" in out.error else "")
            fail(f"{built} raised {out.error} for {L} tokens ({case}), but the exercise asks "
                 f"for a ValueError that names max_len.{inside} Check the length first: if "
                 "L > self.max_len, raise ValueError(f\"sequence length {L} exceeds "
                 "max_len={self.max_len}\").")


# --------------------------------------------------------------------------- RoPE


ROPE = "Your apply_rope"


def _rope(x: Tensor, positions: Tensor | None = None, base: float = 10000.0, *,
          pairing: str = "interleaved", sign: float = 1.0, exponent: str = "2i",
          start: int = 0, swap: bool = False, concat_out: bool = False) -> np.ndarray:
    """RoPE in float64 with one deliberate deviation, for targeted messages."""
    x = x.double()
    L, d = x.shape[-2:]
    pos = (torch.arange(L) if positions is None else positions).double() + start  # (L,)
    idx = torch.arange(0, d, 2, dtype=torch.float64)  # 2i
    e = {"2i": idx / d, "i": idx / 2 / d, "4i": 2 * idx / d}[exponent]
    angle = pos[:, None] * base ** (-e) * sign  # (L, d / 2)
    cos, sin = angle.cos(), angle.sin()
    if swap:
        cos, sin = sin, cos
    if pairing == "half":
        a, b = x[..., : d // 2], x[..., d // 2:]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if pairing == "half" or concat_out:
        return _np(torch.cat([ra, rb], dim=-1))
    return _np(torch.stack([ra, rb], dim=-1).flatten(-2))


M_ROPE_HALF = ("It matches the half-split layout, which pairs dim i with dim i + d_head/2 (as in "
               "GPT-NeoX and LLaMA code). That layout is equivalent up to a permutation of the "
               "dims, but this exercise follows RoFormer: rotate the interleaved pairs "
               "(2i, 2i+1), x[..., 0::2] with x[..., 1::2].")
M_ROPE_SIGN = ("It matches a rotation in the wrong direction (by -pos * theta_i). Rotating the "
               "pair (a, b) by the angle t gives (a cos t - b sin t, a sin t + b cos t).")
M_ROPE_I = ("It matches theta_i = base^(-i / d_head) with i = 0, 1, 2, ... counting pairs. The "
            "exponent is 2i / d_head: torch.arange(0, d_head, 2) / d_head.")
M_ROPE_4I = ("It matches the exponent 4i / d_head: torch.arange(0, d_head, 2) already counts "
             "2i, so do not multiply it by 2 again.")
M_ROPE_START = ("It matches positions 1..L: the default positions are 0..L-1 "
                "(torch.arange(L)), so the first token is not rotated at all.")
M_ROPE_SWAP = ("It matches cos and sin swapped: the pair (a, b) becomes (a cos t - b sin t, "
               "a sin t + b cos t), with cos t multiplying the pair's own entries.")
M_ROPE_CAT = ("The pairs are rotated correctly, but the results are concatenated (all first "
              "entries, then all second entries) instead of put back in dims 2i and 2i+1. "
              "Interleave them: torch.stack((first, second), dim=-1).flatten(-2).")
M_ROPE_IGNORE = ("It matches the default positions 0..L-1: your function ignores the "
                 "`positions` argument. Use it when it is given (torch.arange(L) only when it "
                 "is None).")
M_ROPE_BASE = ("It matches base 10000: your function ignores the `base` argument. Use it in "
               "theta_i = base^(-2i / d_head).")


def _rope_mistakes(x: Tensor, positions: Tensor | None, base: float) -> list[Mistake]:
    m: list[Mistake] = []
    if positions is not None:
        m += [(M_ROPE_IGNORE, _rope(x, None, base)),
              (M_ROPE_IGNORE + " (It also ignores `base`.)", _rope(x, None))]
    if base != 10000.0:
        m.append((M_ROPE_BASE, _rope(x, positions)))
    return m + [
        (M_ROPE_HALF, _rope(x, positions, base, pairing="half")),
        (M_ROPE_SIGN, _rope(x, positions, base, sign=-1.0)),
        (M_ROPE_I, _rope(x, positions, base, exponent="i")),
        (M_ROPE_4I, _rope(x, positions, base, exponent="4i")),
        (M_ROPE_SWAP, _rope(x, positions, base, swap=True)),
        (M_ROPE_CAT, _rope(x, positions, base, concat_out=True)),
        (M_ROPE_START, _rope(x, positions, base, start=1)),
        (M_ROPE_HALF + " (Also, it rotates the wrong way.)",
         _rope(x, positions, base, pairing="half", sign=-1.0)),
    ]


def _rope_shape_hint(got: tuple, shape: tuple) -> str:
    if len(got) == len(shape) and got[-1] == shape[-1] // 2:
        return ("That is one column per pair: put the two rotated halves back into dims 2i "
                "and 2i+1 (torch.stack(..., dim=-1).flatten(-2)).")
    return "RoPE only rotates: the output has the shape of x, (..., L, d_head)."


def _rotation_slips(x: Tensor, positions: Tensor | None, base: float) -> list[np.ndarray]:
    """Rotations with a core mistake but the right positions and base (rope.values' business)."""
    return [_rope(x, positions, base, pairing="half"), _rope(x, positions, base, sign=-1.0),
            _rope(x, positions, base, exponent="i"), _rope(x, positions, base, exponent="4i"),
            _rope(x, positions, base, swap=True), _rope(x, positions, base, concat_out=True),
            _rope(x, positions, base, pairing="half", sign=-1.0)]


def _compare_rope(arguments_only: bool = False):
    """``arguments_only``: a rotation mistake that uses positions and base right still passes
    (it costs the points of rope.values, not these)."""
    def compare(out: Outcome, case: RopeCase) -> None:
        desc, shape, positions = case.desc, case.shape, case.positions
        if out.error and "positional argument" in out.error and not out.forbidden:
            fail(f"{ROPE} raised {out.error} ({desc}). Keep the signature "
                 "apply_rope(x, positions=None, base=10000.0).")
        if (out.error and not out.forbidden and out.error_type != "NotImplementedError"
                and any(w in out.error.lower() for w in ("size", "shape", "dimension"))):
            fail(f"{ROPE} raised {out.error} ({desc}). x may have any number of leading "
                 "axes: read the last two from the end, L, d_head = x.shape[-2:], take "
                 "the pairs with x[..., 0::2] and x[..., 1::2], and shape the angles "
                 "(L, d_head // 2) so they broadcast against them.")
        got = _tensor(out, ROPE, desc)
        x, b = rope_x(case), case.base_value
        want = _np(ref_rope(x, positions, b))
        expect_shape(got, want.shape, "The output of your apply_rope", desc,
                     hint=_rope_shape_hint(tuple(got.shape), shape))
        expect_finite(got, "The output of your apply_rope", desc)
        if arguments_only and got.shape == want.shape and not close(
                got, want, atol=1e-4, rtol=1e-4) and any(
                close(got, slip, atol=1e-4, rtol=1e-4)
                for slip in _rotation_slips(x, positions, b)):
            return
        expect_close(got, want, ROPE, desc, _rope_mistakes(x, positions, b),
                     atol=1e-4, rtol=1e-4)
    return compare


def _compare_rope_properties(rec: dict) -> None:
    c = rope_prop_inputs()
    x = _np(c["x"])
    got = _tensor(rec["norms"], ROPE, "x of shape (2, 3, 8, 16)")
    expect_shape(got, x.shape, "The output of your apply_rope", "x of shape (2, 3, 8, 16)",
                 hint=_rope_shape_hint(tuple(got.shape), x.shape))
    if rec["norms"].value.torch_dtype != "float32":
        fail(f"For a float32 x your apply_rope returns {rec['norms'].value.torch_dtype}: keep "
             "the input's dtype (compute the angles in float32, or cast cos and sin to "
             "x.dtype), so queries and keys stay float32.")
    expect_finite(got, "The output of your apply_rope", "x of shape (2, 3, 8, 16)")
    norm_in, norm_out = np.linalg.norm(x, axis=-1), np.linalg.norm(got, axis=-1)
    if not np.allclose(norm_in, norm_out, rtol=1e-4, atol=1e-4):
        i = np.unravel_index(int(np.argmax(np.abs(norm_in - norm_out))), norm_in.shape)
        fail(f"RoPE only rotates, so every vector keeps its length, but one of yours goes from "
             f"norm {fmt(float(norm_in[i]))} to {fmt(float(norm_out[i]))}. Rotating the pair "
             "(a, b) by t gives (a cos t - b sin t, a sin t + b cos t): both outputs use both "
             "entries, with cos and sin of one angle.")
    q = _np(c["q"])
    first = _tensor(rec["first"], ROPE, "default positions")
    expect_shape(first, q.shape, "The output of your apply_rope", "default positions")
    if not close(first[0], q[0], atol=1e-6):
        fail("At position 0 every angle is 0, so apply_rope must leave the first token "
             "(default positions 0..L-1) unchanged; yours does not. Do the default positions "
             "start at 0, is the rotation (a cos t - b sin t, a sin t + b cos t), and do the "
             "results go back into dims 2i and 2i+1?")
    rot = {k: _tensor(rec[k], ROPE, "custom positions") for k in ("q", "k", "q_shift", "k_shift")}
    for t in rot.values():
        expect_shape(t, q.shape, "The output of your apply_rope", "custom positions")
    scores = rot["q"].astype(np.float64) @ rot["k"].astype(np.float64).T  # (L, L)
    shifted = rot["q_shift"].astype(np.float64) @ rot["k_shift"].astype(np.float64).T
    if not np.allclose(scores, shifted, atol=2e-3, rtol=1e-3):
        fail(f"Rotating queries and keys should make q_m · k_n depend only on the offset "
             f"m - n, but moving every position {c['shift']} steps along changes your scores "
             f"(largest change {fmt(float(np.abs(scores - shifted).max()))}). Each pair "
             "(2i, 2i+1) must turn by pos * theta_i, with theta_i the same for queries and "
             "keys and the same for both dims of a pair.")


# --------------------------------------------------------------------------- ALiBi


ALIBI = "Your alibi_bias"


def _pow2_below(H: int) -> int:
    """H' = 2^floor(log2 H), the largest power of two not above H."""
    return 2 ** (H.bit_length() - 1)


def _geometric(n: int, H: int, *, start: int = 1, eight: float = 8.0) -> np.ndarray:
    """2^(-eight (h + start) / H) for h = 0..n-1: the power-of-two formula."""
    return 2.0 ** (-eight * np.arange(start, start + n, dtype=float) / H)


def _slopes(H: int, rule: str = "authors") -> np.ndarray:
    """The slopes by the authors' rule, or by one deliberate misreading of it."""
    if rule == "pow2":  # 2^(-8 (h + 1) / H) whatever H
        return _geometric(H, H)
    closest = _pow2_below(H)
    double = _geometric(2 * closest, 2 * closest)  # the slopes for 2H'
    extra = {"authors": double[0::2], "first": double, "odd": double[1::2]}
    slopes = np.concatenate([_geometric(closest, closest),
                             extra["authors" if rule == "sorted" else rule][:H - closest]])
    return np.sort(slopes)[::-1] if rule == "sorted" else slopes


def _alibi(H: int, L: int, *, start: int = 1, sign: float = -1.0, distance: str = "abs",
           reverse: bool = False, eight: float = 8.0, rule: str | None = None) -> np.ndarray:
    """ALiBi in float64 with one deliberate deviation, for targeted messages.

    Without ``rule``, the slopes follow the power-of-two formula with the given start and
    factor (the right slopes when H is a power of two and start, eight keep their defaults).
    """
    slopes = _geometric(H, H, start=start, eight=eight) if rule is None else _slopes(H, rule)
    if reverse:
        slopes = slopes[::-1]
    i, j = np.arange(L)[:, None], np.arange(L)[None, :]
    dist = {"abs": np.abs(i - j), "i-j": i - j, "j-i": j - i}[distance].astype(float)
    return sign * slopes[:, None, None] * dist  # (H, L, L)


def _fractions(slopes: np.ndarray) -> str:
    return ", ".join(f"1/{round(1 / s):g}" if abs(1 / s - round(1 / s)) < 1e-9 else f"{s:.3g}"
                     for s in slopes)


M_ALIBI_H = ("It matches slopes 2^(-8h/H) with h = 0, 1, ..., so head 0 gets slope 1. The "
             "formula numbers the heads from 1: slope_h = 2^(-8 (h + 1) / H) for h = 0..H-1 "
             "(for 8 heads: 1/2, 1/4, ..., 1/256).")
M_ALIBI_POS = ("It matches +slope * |i - j|: the bias is a penalty that grows with distance, "
               "bias[h, i, j] = -slope_h * |i - j| (never positive).")
M_ALIBI_NOABS = ("It matches -slope * (i - j), without the absolute value: keys after the "
                 "query would get a bonus. Use the distance |i - j|.")
M_ALIBI_NOABS2 = ("It matches -slope * (j - i), without the absolute value: keys before the "
                  "query would get a bonus. Use the distance |i - j|.")
M_ALIBI_REV = ("It matches the slopes in reverse order: head 0 has the steepest slope "
               "2^(-8/H) and the last head the gentlest, 2^(-8) = 1/256.")
M_ALIBI_EIGHT = ("It matches slopes 2^(-(h + 1)/H), without the factor 8: slope_h = "
                 "2^(-8 (h + 1) / H).")


def _m_pow2(H: int) -> str:
    closest = _pow2_below(H)
    return (f"It matches slope_h = 2^(-8 (h + 1) / H) with H = {H}: that formula holds for a "
            f"power of two only. For other head counts the ALiBi authors' code (and BLOOM and "
            f"Hugging Face) take the {closest} slopes of H' = {closest}, the largest power of "
            f"two below H ({_fractions(_geometric(closest, closest))}), then the first "
            f"H - H' = {H - closest} of the even-indexed slopes (0, 2, 4, ...) for 2H' = "
            f"{2 * closest} ({_fractions(_slopes(H)[closest:])}): on a log scale the extra heads "
            "fall halfway between neighbouring slopes, the first between 1 and the steepest.")


def _m_order(H: int) -> str:
    return (f"It has the right slopes, sorted from steep to gentle. The authors' code (and "
            f"BLOOM, whose weights were trained with it) keeps them in this order: the "
            f"{_pow2_below(H)} slopes of H' first, then the extra ones: "
            f"{_fractions(_slopes(H))}. Head h of a trained model expects slope h.")


def _m_extra(H: int, which: str) -> str:
    closest = _pow2_below(H)
    return (f"Its first {closest} slopes are right, but the extra heads take the {which} "
            f"slopes for 2H' = {2 * closest}. Take the even-indexed ones (0, 2, 4, ...: "
            f"{_fractions(_slopes(H)[closest:])}): on a log scale they fall halfway between "
            "neighbouring slopes, the first between 1 and the steepest.")


def _alibi_mistakes(H: int, L: int) -> list[Mistake]:
    sign = " (Also, the sign: the bias must be -slope * |i - j|.)"
    mistakes = [
        (M_ALIBI_H, _alibi(H, L, start=0)),
        (M_ALIBI_POS, _alibi(H, L, sign=1.0)),
        (M_ALIBI_NOABS, _alibi(H, L, distance="i-j")),
        (M_ALIBI_NOABS2, _alibi(H, L, distance="j-i")),
        (M_ALIBI_REV, _alibi(H, L, reverse=True)),
        (M_ALIBI_EIGHT, _alibi(H, L, eight=1.0)),
        (M_ALIBI_H + sign, _alibi(H, L, start=0, sign=1.0)),
        (M_ALIBI_REV + sign, _alibi(H, L, reverse=True, sign=1.0)),
    ]
    if H != _pow2_below(H):  # these misreadings differ from the right answer only here
        mistakes += [
            (_m_pow2(H), _alibi(H, L, rule="pow2")),
            (_m_pow2(H) + sign, _alibi(H, L, rule="pow2", sign=1.0)),
            (_m_order(H), _alibi(H, L, rule="sorted")),
            (_m_extra(H, "first"), _alibi(H, L, rule="first")),
            (_m_extra(H, "odd-indexed"), _alibi(H, L, rule="odd")),
        ]
    return mistakes


def _alibi_shape_hint(got: tuple, H: int, L: int) -> str:
    if got == (L, L, H) and L != H:
        return "Heads come first: (n_heads, L, L). Put the slopes on axis 0: slopes[:, None, None]."
    if got == (L, L):
        return "There is one (L, L) matrix per head: (n_heads, L, L)."
    if got == (1, H, L, L):
        return ("Drop the leading axis of size 1: return (n_heads, L, L); it broadcasts over "
                "the batch when added to scores (B, H, L, L).")
    return "One (L, L) matrix of biases per head: (n_heads, L, L)."


def _compare_alibi(out: Outcome, case: AlibiCase) -> None:
    H, L = case.n_heads, case.L
    _expect_values(out, ALIBI, "The bias from your alibi_bias", case.desc, _np(ref_alibi(H, L)),
                   lambda shape: _alibi_shape_hint(shape, H, L), _alibi_mistakes(H, L),
                   atol=1e-6, rtol=1e-5)


def _compare_alibi_properties(rec: dict) -> None:
    for case in ALIBI_PROP:
        H, L, desc = case.n_heads, case.L, case.desc
        got = _tensor(rec[desc], ALIBI, desc).astype(np.float64)
        expect_shape(got, (H, L, L), "The bias from your alibi_bias", desc,
                     hint=_alibi_shape_hint(tuple(got.shape), H, L))
        expect_finite(got, "The bias from your alibi_bias", desc)
        diag = np.abs(np.diagonal(got, axis1=-2, axis2=-1)).max()
        if diag > 1e-6:
            fail(f"A query's bias towards its own position should be 0 (distance 0), but "
                 f"yours has {fmt(float(diag))} on the diagonal ({desc}).")
        if not np.allclose(got, got.transpose(0, 2, 1), atol=1e-6):
            fail(f"Your bias is not symmetric ({desc}): bias[h, i, j] != bias[h, j, i]. It "
                 "depends on the distance |i - j| only, not on which of the two comes first.")
        if (got > 1e-7).any():
            fail(f"Your bias has positive entries ({desc}). ALiBi only penalises: "
                 "bias[h, i, j] = -slope_h * |i - j| <= 0, so far keys lose weight.")
        dist = np.abs(np.arange(L)[:, None] - np.arange(L)[None, :]).astype(float)
        off = dist > 0
        ratios = -got[:, off] / dist[off]  # (H, number of off-diagonal entries)
        if not np.allclose(ratios, ratios[:, :1], rtol=1e-4, atol=1e-7):
            fail(f"Within one head, the bias should be proportional to the distance: "
                 f"bias[h, i, j] = -slope_h * |i - j| with one slope per head. Yours is not "
                 f"({desc}).")
        _expect_alibi_slopes(ratios[:, 0], H, desc)


def _expect_alibi_slopes(slopes: np.ndarray, H: int, desc: str) -> None:
    """Slopes of H' = 2^floor(log2 H) heads from 2^(-8/H') down by 2^(-8/H') each; the
    H - H' extra heads start at 2^(-4/H'), halfway, with the same ratio."""
    closest = _pow2_below(H)
    ratio = 2.0 ** (-8.0 / closest)
    rule = ("slope_h = 2^(-8 (h + 1) / H), heads counted from h = 0" if H == closest else
            f"for H = {H}, not a power of two, the first H' = {closest} heads (the largest "
            f"power of two below H) get the slopes for {closest} heads")
    if not math.isclose(slopes[0], ratio, rel_tol=1e-4):
        fail(f"Head 0's slope is {fmt(float(slopes[0]))}, but it should be 2^(-8/{closest}) = "
             f"{fmt(ratio)} ({rule}; {desc}).")
    head = slopes[:closest]
    if closest > 1 and not np.allclose(head[1:] / head[:-1], ratio, rtol=1e-4):
        fail(f"The slopes of heads 0..{closest - 1} should form a geometric sequence, each "
             f"head's slope 2^(-8/{closest}) = {fmt(ratio)} times the previous one ({rule}); "
             f"yours are {_few(slopes, 4)} ({desc}).")
    extra = slopes[closest:]
    want = 2.0 ** (-4.0 / closest) * ratio ** np.arange(H - closest)
    if not np.allclose(extra, want, rtol=1e-4):
        fail(f"For H = {H} heads (not a power of two), heads {closest}..{H - 1} should take "
             f"the even-indexed slopes (0, 2, 4, ...) of {2 * closest} heads, "
             f"{_few(want, 4)} (on a log scale halfway between neighbouring slopes, the "
             f"first between 1 and the steepest); yours are "
             f"{_few(extra, 4)} ({desc}). This is the rule of the ALiBi authors' code, "
             "BLOOM and Hugging Face.")


VERDICTS = {
    "sinusoidal.values": ("sinusoidal_encoding: shape and values match the paper's formula",
                          compare_cases(sin_cases(False), _compare_sin)),
    "sinusoidal.hidden": ("sinusoidal_encoding: more lengths and widths, up to d_model=128",
                          compare_cases(sin_cases(True), _compare_sin)),
    "sinusoidal.properties": ("sinusoidal_encoding: float32, PE[0] = [0, 1, 0, 1, ...], "
                              "sin^2 + cos^2 = 1 per pair, similarity depends on offset only",
                              _compare_sin_properties),
    "learned.layout": ("LearnedPositionalEmbedding: `embedding` is a trainable "
                       "nn.Embedding(max_len, d_model)", _compare_lpe_layout),
    "learned.values": ("LearnedPositionalEmbedding: adds row p of the table to the token at "
                       "position p", _compare_lpe(LPE_VALUES)),
    "learned.hidden": ("LearnedPositionalEmbedding: more sizes; gradients reach the table",
                       _compare_lpe(LPE_HIDDEN, grad=True)),
    "learned.too_long": ("LearnedPositionalEmbedding: L = max_len works, longer sequences "
                         "raise a ValueError", _compare_too_long),
    "rope.values": ("apply_rope: rotates interleaved pairs by pos * theta_i, 3-D and 4-D",
                    compare_cases(ROPE_VALUES, _compare_rope())),
    "rope.hidden": ("apply_rope: more shapes, one token, d_head up to 64",
                    compare_cases(ROPE_HIDDEN, _compare_rope())),
    "rope.positions": ("apply_rope: uses the `positions` and `base` arguments",
                       compare_cases(ROPE_POSITIONS, _compare_rope(arguments_only=True))),
    "rope.properties": ("apply_rope: keeps norms and dtype, position 0 is the identity, "
                        "scores depend on the offset m - n only", _compare_rope_properties),
    "alibi.values": ("alibi_bias: shape (H, L, L) and values -slope_h * |i - j|, 4, 8 and 6 "
                     "heads", compare_cases(alibi_cases(False), _compare_alibi)),
    "alibi.hidden": ("alibi_bias: one head, one token, up to 16 heads",
                     compare_cases(alibi_cases(True), _compare_alibi)),
    "alibi.properties": ("alibi_bias: zero diagonal, symmetric, never positive, geometric "
                         "slopes starting at 2^(-8/H'), extra heads in between (log scale)",
                         _compare_alibi_properties),
}
