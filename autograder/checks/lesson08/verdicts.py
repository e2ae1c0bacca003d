"""Lesson 08's verdicts: reference oracles, known mistakes and messages (trusted side only)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from autograder.reference import elu_plus_one
from autograder.reference import linear_attention as ref_linear
from autograder.reference import scaled_dot_product_attention as ref_sdpa
from autograder.reference import sliding_window_mask as ref_window
from autograder.reference import tiled_attention as ref_tiled

from .._attention_verdicts import (
    M_BY_DK,
    M_NO_SCALE,
    expect_bool,
    looks_like_shape_error,
    tensor_value,
)
from .._attention_verdicts import as_numpy as _np
from .._core import Outcome
from .._verdict import (
    Mistake,
    check_outcome,
    close,
    expect_close,
    expect_shape,
    fail,
)
from .cases import (
    LinearCase,
    TiledCase,
    linear_cases,
    tiled_causal_cases,
    tiled_large_cases,
    tiled_memory_cases,
    tiled_value_cases,
    window_cases,
)

# Words of an exception that say two shapes did not line up (lesson 08's list).
SHAPE_WORDS = ("size", "shape", "dimension", "multipl", "match")


def _looks_like_shape_error(error: str) -> bool:
    return looks_like_shape_error(error, SHAPE_WORDS)


def _full_matrices(shapes, lead: int, Lq: int, Lk: int) -> list[tuple[tuple[int, ...], str]]:
    """The recorded tensors as large as a full (Lq, Lk) matrix (either orientation)."""
    found = []
    for shape, dtype in shapes:
        shape = tuple(shape)
        covers = len(shape) >= 2 and ((shape[-2] >= Lq and shape[-1] >= Lk)
                                      or (shape[-2] >= Lk and shape[-1] >= Lq))
        if covers or (dtype != "bool" and math.prod(shape) >= lead * Lq * Lk):
            found.append((shape, dtype))
    return found


# --------------------------------------------------------------------------- tiled_attention

TILED = "Your tiled_attention"

M_NO_RESCALE = (
    "It matches the online softmax WITHOUT the rescaling step. When a new key block raises a "
    "query's running max from m to m_new, the sum l and the output accumulated so far were "
    "computed with exp(s - m): multiply both by r = torch.exp(m - m_new) before adding the new "
    "block (l = l * r + p.sum(-1, keepdim=True); acc = acc * r + p @ v_block).")
M_RESCALE_L_ONLY = (
    "It rescales the running sum l when the max changes, but not the running output. Both were "
    "accumulated against the old max: multiply the output too, acc = acc * r + p @ v_block, "
    "with r = torch.exp(m - m_new).")
M_RESCALE_ACC_ONLY = (
    "It rescales the running output when the max changes, but not the running sum l. Both were "
    "accumulated against the old max: l = l * r + p.sum(-1, keepdim=True), with "
    "r = torch.exp(m - m_new).")
M_TILE_MAX = (
    "It subtracts each tile's own max and adds the tiles' sums as they are, so terms from tiles "
    "with different maxima are on different scales. Keep ONE running max per query, m_new = "
    "torch.maximum(m, tile max), and rescale what you have accumulated by torch.exp(m - m_new).")
M_PER_BLOCK_SUM = (
    "It matches the SUM of a separate softmax average per key block: each block was normalised "
    "on its own. Keep the unnormalised output (acc) and sum (l) running over all key blocks, "
    "and divide once, at the end: output = acc / l.")
M_PER_BLOCK_MEAN = (
    "It matches the MEAN of separate per-block softmax averages. Key blocks do not deserve equal "
    "shares: a block with larger scores should get more of the weight. Keep acc and l running "
    "over all key blocks and divide once, at the end: output = acc / l.")
M_LOCAL_CAUSAL = (
    "Its causal mask compares positions INSIDE each tile (column j - j0 against row i - i0), "
    "not the true positions. Build the mask from global positions: i = torch.arange(i0, i0 + "
    "rows)[:, None], j = torch.arange(j0, j0 + cols), and block the scores where j > i.")
M_BLOCK_CAUSAL = (
    "It skips the key blocks that lie entirely in the future, but inside the tile on the "
    "diagonal a query still sees later keys. Mask the scores where j > i inside that tile too "
    "(i and j as global positions).")
M_BOTTOM_RIGHT = (
    "Its causal mask is aligned bottom-right (key j visible when j <= i + Lk - Lq), as some "
    "libraries do when Lq != Lk. This course, like torch's scaled_dot_product_attention("
    "is_causal=True), aligns it top-left: query i sees the keys j <= i, whatever Lq and Lk.")
M_IGNORES_CAUSAL = (
    "It matches attention WITHOUT the causal mask: causal=True was ignored. With causal=True, "
    "query i may only use keys j <= i: set the scores where j > i to -inf in each tile.")
M_ALWAYS_CAUSAL = (
    "It matches CAUSAL attention although causal=False: apply the mask only when causal is "
    "True.")
M_DROP_KEYS = (
    "It ignores the last keys when block_size does not divide Lk. Loop over "
    "range(0, Lk, block_size) and slice k[..., j0:j0 + block_size, :]: slicing past the end "
    "is fine in Python, so the last block is simply shorter.")
M_DROP_QUERIES = (
    "Its last rows are wrong when block_size does not divide Lq. Loop over "
    "range(0, Lq, block_size) and slice q[..., i0:i0 + block_size, :]: the last query block is "
    "simply shorter.")


def _tiled_variant(q: Tensor, k: Tensor, v: Tensor, bs: int, causal: bool, *,
                   scale: float | None = None, rescale: str = "both", max_mode: str = "running",
                   per_block: str | None = None, mask_mode: str = "global",
                   drop_keys: bool = False, drop_queries: bool = False) -> np.ndarray:
    """Tiled attention with one deliberate mistake (NaN where the mistake gives no answer)."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    Lq, Lk = q.size(-2), k.size(-2)
    out = q.new_zeros(*q.shape[:-1], v.size(-1))  # (..., Lq, d_v)
    q_end = (Lq // bs) * bs if drop_queries else Lq
    k_end = (Lk // bs) * bs if drop_keys else Lk
    for i0 in range(0, q_end, bs):
        qi = q[..., i0:i0 + bs, :] * scale  # (..., rows, d)
        rows = qi.size(-2)
        m = qi.new_full((*qi.shape[:-1], 1), float("-inf"))
        l_sum = qi.new_zeros((*qi.shape[:-1], 1))
        acc = qi.new_zeros((*qi.shape[:-1], v.size(-1)))
        parts = []
        for j0 in range(0, k_end, bs):
            s = qi @ k[..., j0:j0 + bs, :].transpose(-2, -1)  # (..., rows, cols)
            vj = v[..., j0:j0 + bs, :]
            if causal:
                i = torch.arange(i0, i0 + rows)[:, None]
                j = torch.arange(j0, j0 + s.size(-1))[None, :]
                blocked = {"global": j > i, "local": (j - j0) > (i - i0),
                           "blocks": torch.full_like(j > i, j0 > i0),  # whole tiles only
                           "bottom_right": j > i + (Lk - Lq)}[mask_mode]
                s = s.masked_fill(blocked, float("-inf"))
            if per_block:
                if not (causal and j0 > i0 + rows - 1):  # a tile wholly in the future: skipped
                    parts.append(torch.softmax(s, dim=-1) @ vj)
                continue
            if max_mode == "none":
                m_new = torch.zeros_like(m)
            elif max_mode == "tile":
                m_new = s.amax(-1, keepdim=True)
            else:
                m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            r = torch.exp(m - m_new) if max_mode == "running" else torch.ones_like(m)
            l_sum = (l_sum * r if rescale in ("both", "l") else l_sum) + p.sum(-1, keepdim=True)
            acc = (acc * r if rescale in ("both", "acc") else acc) + p @ vj
            m = m_new
        if per_block:
            total = sum(parts) if parts else torch.full_like(acc, float("nan"))
            out[..., i0:i0 + rows, :] = total / (len(parts) if per_block == "mean" else 1)
        else:
            out[..., i0:i0 + rows, :] = acc / l_sum
    return _np(out)


def tiled_mistakes(q: Tensor, k: Tensor, v: Tensor, bs: int, causal: bool) -> list[Mistake]:
    """The catalogued mistakes on one case, with their wrong outputs (first match wins)."""
    d = q.size(-1)
    found = [
        (M_NO_RESCALE, dict(rescale="none")),
        (M_RESCALE_L_ONLY, dict(rescale="l")),
        (M_RESCALE_ACC_ONLY, dict(rescale="acc")),
        (M_TILE_MAX, dict(max_mode="tile", rescale="none")),
        (M_PER_BLOCK_SUM, dict(per_block="sum")),
        (M_PER_BLOCK_MEAN, dict(per_block="mean")),
        (M_NO_SCALE, dict(scale=1.0)),
        (M_BY_DK, dict(scale=1.0 / d)),
        (M_DROP_KEYS, dict(drop_keys=True)),
        (M_DROP_QUERIES, dict(drop_queries=True)),
    ]
    if causal:
        found += [(M_LOCAL_CAUSAL, dict(mask_mode="local")),
                  (M_BLOCK_CAUSAL, dict(mask_mode="blocks")),
                  (M_BOTTOM_RIGHT, dict(mask_mode="bottom_right"))]
    with torch.no_grad():
        wrong = [(msg, _tiled_variant(q, k, v, bs, causal, **kw)) for msg, kw in found]
        if causal:
            wrong.append((M_IGNORES_CAUSAL, _np(ref_tiled(q, k, v, max(bs, 1), causal=False))))
        else:
            wrong.append((M_ALWAYS_CAUSAL, _np(ref_tiled(q, k, v, max(bs, 1), causal=True))))
    return wrong


def _tiled_value(outcome: Outcome, case: TiledCase) -> np.ndarray:
    """The learner's output as an array, or a message about what came back instead."""
    if (outcome.error and not outcome.forbidden and outcome.error_type != "NotImplementedError"
            and outcome.error_type == "TypeError" and "causal" in outcome.error):
        fail(f"{TILED} raised {outcome.error} ({case.desc}). Keep the signature "
             "tiled_attention(q, k, v, block_size, causal=False).")
    if (outcome.error and not outcome.forbidden and outcome.error_type != "NotImplementedError"
            and _looks_like_shape_error(outcome.error)):
        fail(f"{TILED} raised {outcome.error} ({case.desc}). Tiles are slices of the last-but-"
             "one axis, q[..., i0:i0 + block_size, :], and a tile's scores are q_tile @ "
             "k_tile.transpose(-2, -1): swap only the last two axes, so any number of batch "
             "axes works.")
    value = check_outcome(outcome, TILED, case.desc)
    if isinstance(value, (tuple, list)):
        fail(f"{TILED} returned a {type(value).__name__} of {len(value)} items ({case.desc}). "
             "It returns the output only: it never forms the attention weights, so there are "
             "none to return.")
    return np.asarray(tensor_value(value, TILED, case.desc))


def _nonfinite(got: np.ndarray, case: TiledCase) -> None:
    if np.isfinite(got).all():
        return
    bad = "NaN" if np.isnan(got).any() else "inf"
    rows = sorted({int(i) for i in np.argwhere(~np.isfinite(got))[:, -2]})
    shown = ", ".join(map(str, rows[:6])) + (" ..." if len(rows) > 6 else "")
    if case.large:
        fail(f"Your output contains {bad} when the scores are large ({case.desc}). In float32 "
             "torch.exp overflows to inf above about 88, and inf / inf is NaN. Subtract the "
             "running max before exponentiating, p = torch.exp(s - m_new), and rescale what "
             "you have accumulated by torch.exp(m - m_new).")
    if case.causal:
        fail(f"Your output is {bad} for queries {shown} ({case.desc}). A query gets NaN when "
             "every score it has seen so far is -inf: exp(-inf - (-inf)) is NaN. Query i always "
             "sees key 0 and itself (block j > i, not j >= i), and its first key block must be "
             "the one that holds key 0.")
    fail(f"Your output contains {bad} for queries {shown} ({case.desc}). Did a 0 / 0 happen "
         "(a sum l that stayed 0), or exp of -inf minus -inf?")


def _compare_tiled_case(outcome: Outcome, case: TiledCase) -> None:
    got = _tiled_value(outcome, case)
    want = _np(ref_tiled(case.q, case.k, case.v, case.block_size, causal=case.causal))
    Lq, bs = case.q.size(-2), case.block_size
    hint = "One row per query and the values' width: (..., Lq, d_v)."
    if got.shape[:-2] == want.shape[:-2] and got.shape[-2] == (Lq // bs) * bs != Lq:
        hint = (f"It is missing the last {Lq % bs} query rows: when block_size does not "
                "divide Lq, the last query block is shorter. Loop over range(0, Lq, block_size) "
                "and slice q[..., i0:i0 + block_size, :].")
    elif got.shape[-1:] == tuple(case.k.shape[-1:]) != tuple(case.v.shape[-1:]):
        hint += " Yours has the keys' width: accumulate p @ v_block, not p @ k_block."
    expect_shape(got, want.shape, "Your output", case.desc, hint=hint)
    _nonfinite(got, case)
    tol = dict(atol=1e-4, rtol=1e-3) if case.large else dict(atol=1e-5, rtol=1e-4)
    if not close(got, want, **tol):  # the catalogue is slow to build: only when needed
        expect_close(got, want, "Your output", case.desc,
                     tiled_mistakes(case.q, case.k, case.v, bs, case.causal), **tol)


def _compare_tiled(cases: Callable[[], list[TiledCase]]):
    def compare(rec: dict) -> None:
        for run, case in zip(rec["cases"], cases(), strict=True):
            _compare_tiled_case(run["out"], case)
    return compare


def _compare_never_full(cases: Callable[[], list[TiledCase]]):
    def compare(rec: dict) -> None:
        for run, case in zip(rec["cases"], cases(), strict=True):
            _tiled_value(run["out"], case)
            lead = math.prod(case.q.shape[:-2])
            Lq, Lk = case.q.size(-2), case.k.size(-2)
            for shape, dtype in _full_matrices(run["shapes"], lead, Lq, Lk):
                if dtype == "bool":
                    fail(f"{TILED} builds a full mask of shape {shape} ({case.desc}): with it "
                         "the memory still grows like Lq x Lk. Build each tile's mask from "
                         "positions: i = torch.arange(i0, i0 + rows)[:, None], j = "
                         "torch.arange(j0, j0 + cols), blocked where j > i.")
                fail(f"{TILED} creates a tensor of shape {shape} ({case.desc}), as large as "
                     f"the full score matrix (Lq, Lk) = ({Lq}, {Lk}) that tiling exists to "
                     "avoid. That happens with q @ k.transpose(-2, -1) on the whole of q and k, "
                     "or torch.softmax over the full scores. Compute one (block_size, "
                     "block_size) tile of scores at a time, q[..., i0:i0 + b, :] @ "
                     "k[..., j0:j0 + b, :].transpose(-2, -1), and keep only running statistics "
                     "between tiles.")
            _compare_tiled_case(run["out"], case)
    return compare


# ----------------------------------------------------------------------- sliding_window_mask

WINDOW = "Your sliding_window_mask"


def _window_mistakes(L: int, window: int) -> list[Mistake]:
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    dist = i - j  # (L, L): how far key j is behind query i
    right = (dist >= 0) & (dist < window)
    return [
        ("It is True where the mask should be False and the other way round: the opposite "
         "polarity. True means the query MAY attend: True where i - window < j <= i.",
         _np(~right)),
        ("It lets each query see one key too many, window + 1 in all (i - j <= window). With "
         "window keys counting the query itself, key j is visible when 0 <= i - j < window.",
         _np((dist >= 0) & (dist <= window))),
        ("It lets each query see one key too few, window - 1 in all. The window counts the "
         "query itself plus the window - 1 keys before it: 0 <= i - j < window.",
         _np((dist >= 0) & (dist < window - 1))),
        ("Its diagonal is False: each query sees the keys before it but not itself. A query "
         "always sees its own token; the window counts it: 0 <= i - j < window.",
         _np((dist > 0) & (dist <= window))),
        ("Its diagonal is False, and each query sees only window - 1 keys before it. The "
         "window includes the query itself: 0 <= i - j < window.",
         _np((dist > 0) & (dist < window))),
        ("It is symmetric: query i also sees the keys AFTER it (|i - j| < window). The "
         "sliding window here is causal: only the query itself and the keys before it, "
         "0 <= i - j < window.", _np(dist.abs() < window)),
        ("It looks ahead: query i sees itself and the window - 1 keys AFTER it. Rows are "
         "queries and columns keys; keep the keys at or before the query, 0 <= i - j < window.",
         _np((dist <= 0) & (dist > -window))),
        ("It is the plain causal mask: the window is ignored, so each query sees every earlier "
         "key. Also block the keys that are window or more positions behind.", _np(dist >= 0)),
    ]


def _compare_window(kind: str):
    def compare(rec: dict) -> None:
        for (L, window), outcome in zip(window_cases(kind), rec["cases"], strict=True):
            case = f"L={L}, window={window}"
            got = tensor_value(check_outcome(outcome, WINDOW, case), WINDOW, case)
            expect_shape(got, (L, L), "Your mask", case,
                         hint="One row per query and one column per key: (L, L).")
            expect_bool(got, "Your mask", case)
            expect_close(np.asarray(got), _np(ref_window(L, window)), "Your mask", case,
                         _window_mistakes(L, window), atol=0, rtol=0)
    return compare


# --------------------------------------------------------------------------- linear_attention

LINEAR = "Your linear_attention"

M_PHI_V = ("It applies the feature map to the values too. Only queries and keys go through "
           "phi (they are compared); the values are averaged as they are: phi(k)^T v.")
M_NO_NORM = ("It matches the numerator phi(q) (phi(k)^T v) without the normaliser. Divide by "
             "phi(q) . sum_j phi(k_j), one number per query (shape (..., Lq, 1)), so each "
             "query's implicit weights sum to 1.")
M_NORM_QUERIES = ("Its normaliser is summed over the QUERY axis (-2) at the end. Each query "
                  "needs its own normaliser, phi(q_i) . sum_j phi(k_j): sum phi(k) over the "
                  "keys (axis -2 of phi(k)), then take the dot product with each phi(q_i) "
                  "along the feature axis (-1).")
M_NO_KEEPDIM = ("Its normaliser has shape (..., Lq) and was broadcast along the wrong axis, "
                "dividing output COLUMN c by query c's normaliser. Keep one number per query "
                "as (..., Lq, 1): keepdim=True, or phi(q) @ z with z = phi(k).sum(-2)[..., "
                "None] of shape (..., d, 1).")
M_SOFTMAX = ("It matches ordinary softmax attention, softmax(q k^T / sqrt(d)) v: the O(L^2) "
             "computation linear attention replaces. Use the feature map in place of the "
             "exponential: phi(q) (phi(k)^T v) / (phi(q) . sum_j phi(k_j)).")
M_SOFTMAX_SIMS = ("It matches a softmax over the feature-map similarities phi(q) phi(k)^T. "
                  "Linear attention has no softmax: the similarities are already positive, and "
                  "dividing by their sum, phi(q) . sum_j phi(k_j), normalises them.")
M_SCALED = ("It matches phi(q / sqrt(d)) and phi(k / sqrt(d)). Linear attention (Katharopoulos "
            "et al., 2020) has no 1/sqrt(d) scale: apply the feature map to q and k as they "
            "are.")
M_NO_PHI = ("It matches linear attention with NO feature map: raw q and k, whose dot "
            "products can be negative (and the normaliser 0). Apply feature_map to q and k.")
M_PHI_Q_ONLY = "It applies the feature map to q but not to k: phi goes on both."
M_PHI_K_ONLY = "It applies the feature map to k but not to q: phi goes on both."
M_IGNORES_MAP = ("It matches linear attention with elu(x) + 1, but this case passed another "
                 "feature_map. Use the function you are given, feature_map(q) and "
                 "feature_map(k), rather than calling elu_plus_one directly.")


def _quadratic(q: Tensor, k: Tensor, v: Tensor, phi: Callable[[Tensor], Tensor]) -> Tensor:
    """The O(L^2) form: out_i = sum_j sim(i, j) v_j / sum_j sim(i, j), sim = phi(q_i).phi(k_j)."""
    sims = phi(q) @ phi(k).transpose(-2, -1)  # (..., Lq, Lk)
    return (sims @ v) / sims.sum(-1, keepdim=True)  # (..., Lq, d_v)


def _linear_form(phi_q: Tensor, phi_k: Tensor, v: Tensor, norm: str = "right") -> Tensor | None:
    num = phi_q @ (phi_k.transpose(-2, -1) @ v)  # (..., Lq, d_v)
    z = phi_k.sum(-2, keepdim=True)  # (..., 1, d)
    if norm == "none":
        return num
    if norm == "queries":  # (..., 1, d): summed over the queries
        den = (phi_q * z).sum(-2, keepdim=True)
        return num / den if den.size(-1) == num.size(-1) else None
    if norm == "no_keepdim":  # (..., Lq) broadcast against the last axis
        den = (phi_q * z).sum(-1)
        return num / den[..., None, :] if den.size(-1) == num.size(-1) else None
    return num / (phi_q * z).sum(-1, keepdim=True)


def _linear_mistakes(q: Tensor, k: Tensor, v: Tensor, phi) -> list[Mistake]:
    d = q.size(-1)
    pq, pk = phi(q), phi(k)
    variants = [
        (M_PHI_V, _linear_form(pq, pk, phi(v))),
        (M_NO_NORM, _linear_form(pq, pk, v, "none")),
        (M_NORM_QUERIES, _linear_form(pq, pk, v, "queries")),
        (M_NO_KEEPDIM, _linear_form(pq, pk, v, "no_keepdim")),
        (M_SOFTMAX, ref_sdpa(q, k, v)[0]),
        (M_SOFTMAX_SIMS, torch.softmax(pq @ pk.transpose(-2, -1), dim=-1) @ v),
        (M_SCALED, _linear_form(phi(q / math.sqrt(d)), phi(k / math.sqrt(d)), v)),
        (M_NO_PHI, _linear_form(q, k, v)),
        (M_PHI_Q_ONLY, _linear_form(pq, k, v)),
        (M_PHI_K_ONLY, _linear_form(q, pk, v)),
    ]
    if phi is not elu_plus_one:
        variants.insert(0, (M_IGNORES_MAP, _linear_form(elu_plus_one(q), elu_plus_one(k), v)))
    return [(m, None if t is None else _np(t)) for m, t in variants]


def _compare_linear_case(outcome: Outcome, case: LinearCase, quadratic: bool) -> None:
    if (outcome.error and not outcome.forbidden and outcome.error_type != "NotImplementedError"
            and _looks_like_shape_error(outcome.error)):
        fail(f"{LINEAR} raised {outcome.error} ({case.desc}). The shapes: phi(k)^T v is "
             "(..., d, d_v) (transpose only the last two axes of phi(k)); phi(q) @ that is "
             "(..., Lq, d_v); the normaliser is one number per query, (..., Lq, 1).")
    value = check_outcome(outcome, LINEAR, case.desc)
    if isinstance(value, (tuple, list)):
        fail(f"{LINEAR} returned a {type(value).__name__} of {len(value)} items ({case.desc}). "
             "It returns the output only: it never forms the (Lq, Lk) weights.")
    got = np.asarray(tensor_value(value, LINEAR, case.desc))
    q, k, v, phi = case.q, case.k, case.v, case.phi
    want = _quadratic(q.double(), k.double(), v.double(), phi).float() if quadratic else \
        ref_linear(q, k, v, phi)
    expect_shape(got, tuple(want.shape), "Your output", case.desc,
                 hint="One row per query and the values' width: (..., Lq, d_v).")
    if not np.isfinite(got).all():
        fail(f"Your output contains NaN or inf ({case.desc}). Is the normaliser 0 somewhere? "
             "With a positive feature map it cannot be: apply feature_map to q and k.")
    if not close(got, _np(want)):
        expect_close(got, _np(want), "Your output", case.desc, _linear_mistakes(q, k, v, phi))


def _compare_linear(kind: str, quadratic: bool = False):
    def compare(rec: dict) -> None:
        for run, case in zip(rec["cases"], linear_cases(kind), strict=True):
            _compare_linear_case(run["out"], case, quadratic)
    return compare


def _compare_linear_memory(rec: dict) -> None:
    for run, case in zip(rec["cases"], linear_cases("linear"), strict=True):
        _compare_linear_case(run["out"], case, quadratic=False)
        lead = math.prod(case.q.shape[:-2])
        Lq, Lk = case.q.size(-2), case.k.size(-2)
        found = _full_matrices(run["shapes"], lead, Lq, Lk)
        if found:
            fail(f"{LINEAR} gives the right numbers but creates a tensor of shape "
                 f"{found[0][0]} ({case.desc}): the (Lq, Lk) similarity matrix phi(q) "
                 "phi(k)^T, whose cost grows like L^2. That is the product linear attention "
                 "reorders away: compute phi(k)^T v first (shape (..., d, d_v)), then multiply "
                 "phi(q) by it; likewise the normaliser, phi(q) . sum_j phi(k_j).")


VERDICTS = {
    "tiled_attention.values": ("tiled_attention: equals attention for blocks that do and do not "
                               "divide L, and block >= L",
                               _compare_tiled(lambda: tiled_value_cases(False))),
    "tiled_attention.hidden": ("tiled_attention: more shapes, Lq != Lk, block size 1",
                               _compare_tiled(lambda: tiled_value_cases(True))),
    "tiled_attention.causal": ("tiled_attention: causal=True, aligned top-left",
                               _compare_tiled(lambda: tiled_causal_cases(False))),
    "tiled_attention.causal_hidden": ("tiled_attention: causal with Lq != Lk and odd blocks",
                                      _compare_tiled(lambda: tiled_causal_cases(True))),
    "tiled_attention.never_full": ("tiled_attention: never forms the full (Lq, Lk) matrix",
                                   _compare_never_full(lambda: tiled_memory_cases(False))),
    "tiled_attention.never_full_hidden": ("tiled_attention: never forms (Lq, Lk), causal and "
                                          "batched",
                                          _compare_never_full(lambda: tiled_memory_cases(True))),
    "tiled_attention.large_scores": ("tiled_attention: stays finite and exact when scores are "
                                     "in the hundreds", _compare_tiled(tiled_large_cases)),
    "sliding_window.values": ("sliding_window_mask: (L, L) bool, True where i - window < j <= "
                              "i", _compare_window("values")),
    "sliding_window.hidden": ("sliding_window_mask: more lengths and windows",
                              _compare_window("hidden")),
    "sliding_window.edges": ("sliding_window_mask: window 1 (the diagonal), window >= L (the "
                             "causal mask), L = 1", _compare_window("edges")),
    "linear_attention.values": ("linear_attention: matches the reference (elu + 1 features)",
                                _compare_linear("values")),
    "linear_attention.hidden": ("linear_attention: more shapes, Lq != Lk, no batch axes",
                                _compare_linear("hidden")),
    "linear_attention.feature_map": ("linear_attention: any feature map; equals the O(L^2) sum "
                                     "of feature-map similarities",
                                     _compare_linear("feature_map", quadratic=True)),
    "linear_attention.linear": ("linear_attention: never forms the (Lq, Lk) similarities",
                                _compare_linear_memory),
}
