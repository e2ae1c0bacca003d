"""Lesson 08's checks against realistic wrong answers: each must fail with its own message."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from autograder.checks import REGISTRY
from autograder.checks.lesson08.cases import tiled_causal_cases
from autograder.checks.lesson08.verdicts import M_BOTTOM_RIGHT, tiled_mistakes
from autograder.reference import elu_plus_one
from autograder.reference import linear_attention as ref_linear
from autograder.reference import sliding_window_mask as ref_window
from autograder.reference import tiled_attention as ref_tiled

from .wrong_answers import fails, passes, row_test

TILED_IDS = ("tiled_attention.values", "tiled_attention.hidden", "tiled_attention.causal",
             "tiled_attention.causal_hidden", "tiled_attention.never_full",
             "tiled_attention.never_full_hidden", "tiled_attention.large_scores")
WINDOW_IDS = ("sliding_window.values", "sliding_window.hidden", "sliding_window.edges")
LINEAR_IDS = ("linear_attention.values", "linear_attention.hidden",
              "linear_attention.feature_map", "linear_attention.linear")


def test_every_lesson08_check_is_exercised():
    """Does this file cover every check id lesson 08 registers?"""
    ours = {i for i in REGISTRY if i.split(".")[0] in
            ("tiled_attention", "sliding_window", "linear_attention")}
    assert ours == set(TILED_IDS + WINDOW_IDS + LINEAR_IDS)


# ------------------------------------------------------------------------- tiled_attention


def tiled(q, k, v, block_size, causal=False, rescale="both", max_mode="running",
          per_block=None, mask="global", scale=None, stop=None, skip_future=True):
    """The solution notebook's logic, written out independently; keywords inject mistakes."""
    scale = 1 / math.sqrt(q.size(-1)) if scale is None else scale
    Lq, Lk = q.size(-2), k.size(-2)
    rows_out = []
    for i0 in range(0, Lq, block_size):
        qi = q[..., i0:i0 + block_size, :] * scale  # (..., rows, d)
        rows = qi.size(-2)
        m = qi.new_full((*qi.shape[:-1], 1), float("-inf"))  # (..., rows, 1)
        l = qi.new_zeros((*qi.shape[:-1], 1))  # (..., rows, 1)
        acc = qi.new_zeros((*qi.shape[:-1], v.size(-1)))  # (..., rows, d_v)
        parts = []
        for j0 in range(0, Lk if stop is None else stop(Lk, block_size), block_size):
            if causal and skip_future and j0 > i0 + rows - 1:
                break
            s = qi @ k[..., j0:j0 + block_size, :].transpose(-2, -1)  # (..., rows, cols)
            if causal:
                i = torch.arange(i0, i0 + rows)[:, None]
                j = torch.arange(j0, j0 + s.size(-1))
                blocked = {"global": j > i, "strict": j >= i, "local": j - j0 > i - i0,
                           "none": torch.zeros_like(j > i)}[mask]
                s = s.masked_fill(blocked, float("-inf"))
            vj = v[..., j0:j0 + block_size, :]
            if per_block:
                parts.append(torch.softmax(s, dim=-1) @ vj)
                continue
            m_new = torch.maximum(m, s.amax(-1, keepdim=True)) if max_mode == "running" \
                else torch.zeros_like(m)
            p = torch.exp(s - m_new)
            r = torch.exp(m - m_new) if max_mode == "running" else 1.0
            l = (l * r if rescale in ("both", "l") else l) + p.sum(-1, keepdim=True)
            acc = (acc * r if rescale in ("both", "acc") else acc) + p @ vj
            m = m_new
        rows_out.append(sum(parts) if per_block else acc / l)
    return torch.cat(rows_out, dim=-2)  # (..., Lq, d_v)


def tiled_normalised_running(q, k, v, block_size, causal=False):
    """Also correct: keep the output normalised after every block (FlashAttention-1's form)."""
    outs = []
    for i0 in range(0, q.size(-2), block_size):
        qi = q[..., i0:i0 + block_size, :] / math.sqrt(q.size(-1))
        m = torch.full((*qi.shape[:-1], 1), -math.inf)
        l = torch.zeros_like(m)
        o = torch.zeros(*qi.shape[:-1], v.size(-1))
        for j0 in range(0, k.size(-2), block_size):
            s = qi @ k[..., j0:j0 + block_size, :].mT
            if causal:
                i = torch.arange(i0, i0 + s.size(-2))[:, None]
                s = torch.where(torch.arange(j0, j0 + s.size(-1)) > i, -math.inf, s)
            m_new = torch.maximum(m, s.max(-1, keepdim=True).values)
            p = torch.exp(s - m_new)
            l_new = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)
            o = (o * l * torch.exp(m - m_new) + p @ v[..., j0:j0 + block_size, :]) / l_new
            m, l = m_new, l_new
        outs.append(o)
    return torch.cat(outs, -2)


def tiled_full_softmax(q, k, v, block_size, causal=False):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (..., Lq, Lk): the whole thing
    if causal:
        i = torch.arange(q.size(-2))[:, None]
        scores = scores.masked_fill(torch.arange(k.size(-2)) > i, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def tiled_full_mask(q, k, v, block_size, causal=False):
    allowed = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril()  # (Lq, Lk)
    outs = []
    for i0 in range(0, q.size(-2), block_size):
        qi = q[..., i0:i0 + block_size, :] / math.sqrt(q.size(-1))
        m = torch.full((*qi.shape[:-1], 1), -math.inf)
        l = torch.zeros_like(m)
        acc = torch.zeros(*qi.shape[:-1], v.size(-1))
        for j0 in range(0, k.size(-2), block_size):
            s = qi @ k[..., j0:j0 + block_size, :].mT
            if causal:
                s = s.masked_fill(~allowed[i0:i0 + block_size, j0:j0 + block_size],
                                  float("-inf"))
            m_new = torch.maximum(m, s.amax(-1, keepdim=True))
            p = torch.exp(s - m_new)
            l = l * torch.exp(m - m_new) + p.sum(-1, keepdim=True)
            acc = acc * torch.exp(m - m_new) + p @ v[..., j0:j0 + block_size, :]
            m = m_new
        outs.append(acc / l)
    return torch.cat(outs, -2)


def tiled_pair(q, k, v, block_size, causal=False):
    out = tiled(q, k, v, block_size, causal)
    return out, None


def tiled_builtin(q, k, v, block_size, causal=False):
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal)


def tiled_untouched(q, k, v, block_size, causal=False):
    raise NotImplementedError()


MISTAKES = {
    "no_rescale": lambda *a, causal=False: tiled(*a, causal=causal, rescale="none"),
    "rescale_l_only": lambda *a, causal=False: tiled(*a, causal=causal, rescale="l"),
    "no_max": lambda *a, causal=False: tiled(*a, causal=causal, max_mode="none"),
    "per_block": lambda *a, causal=False: tiled(*a, causal=causal, per_block=True),
    "no_scale": lambda *a, causal=False: tiled(*a, causal=causal, scale=1.0),
    "drop_keys": lambda *a, causal=False: tiled(*a, causal=causal, stop=lambda L, b: L - b + 1),
    "local_mask": lambda *a, causal=False: tiled(*a, causal=causal, mask="local",
                                                 skip_future=False),
    "strict_mask": lambda *a, causal=False: tiled(*a, causal=causal, mask="strict"),
    "blocks_only": lambda *a, causal=False: tiled(*a, causal=causal, mask="none"),
    "ignores_causal": lambda *a, causal=False: tiled(*a, causal=False),
}


WRONG_TILED = [
    ("tiled_attention.values", "no_rescale", r"WITHOUT the rescaling step"),
    ("tiled_attention.values", "rescale_l_only", r"rescales the running sum l .* but not the "
                                                 r"running output"),
    ("tiled_attention.values", "per_block", r"SUM of a separate softmax average per key block"),
    ("tiled_attention.values", "no_scale", r"without the 1/sqrt\(d_k\) scaling"),
    ("tiled_attention.values", "drop_keys", r"ignores the last keys when block_size does not"),
    ("tiled_attention.large_scores", "no_max", r"contains (NaN|inf) when the scores are large"),
    ("tiled_attention.causal", "local_mask", r"compares positions INSIDE each tile"),
    ("tiled_attention.causal", "strict_mask", r"NaN for queries 0.*not j >= i"),
    ("tiled_attention.causal", "blocks_only", r"inside the tile on the\s+diagonal"),
    ("tiled_attention.causal", "ignores_causal", r"causal=True was ignored"),
]


def test_bottom_right_alignment_is_named():
    """Is a causal mask aligned bottom-right (Lq != Lk) told about top-left alignment?"""
    def bottom_right(q, k, v, block_size, causal=False):
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril(
                k.size(-2) - q.size(-2)) if causal else None)

    case = tiled_causal_cases(False)[2]  # Lq = 6, Lk = 9
    assert case.q.size(-2) != case.k.size(-2)
    wrong = dict(tiled_mistakes(case.q, case.k, case.v, case.block_size, True))[M_BOTTOM_RIGHT]
    want = bottom_right(case.q, case.k, case.v, case.block_size, True)
    assert torch.allclose(torch.from_numpy(wrong), want, atol=1e-5)


WRONG_KIND_TILED = [
    (tiled_pair, r"returns the output only"),
    (tiled_builtin, r"calls PyTorch's built-in attention"),
    (ref_tiled, r"calls the course's own tiled_attention"),
    (tiled_untouched, r"not written yet"),
]


# ---------------------------------------------------------------------- sliding_window_mask


def window_mask(L, window):
    """The solution notebook's logic, written out independently."""
    i = torch.arange(L)[:, None]
    j = torch.arange(L)[None, :]
    return (j <= i) & (j > i - window)


def window_tril(L, window):
    """Another correct way: the difference of two triangles."""
    ones = torch.ones(L, L, dtype=torch.bool)
    return ones.tril() & ~ones.tril(-window)


def window_plus_one(L, window):
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    return (d >= 0) & (d <= window)


def window_symmetric(L, window):
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    return d.abs() < window


def window_inverted(L, window):
    return ~window_mask(L, window)


def window_excludes_self(L, window):
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    return (d > 0) & (d <= window)


def window_float(L, window):
    return window_mask(L, window).float()


def window_causal_only(L, window):
    return torch.ones(L, L, dtype=torch.bool).tril()


def window_looks_ahead(L, window):
    return window_mask(L, window).T


def window_short(L, window):
    """One key short (i - j < window - 1): told so on the hidden lengths."""
    d = torch.arange(L)[:, None] - torch.arange(L)[None, :]
    return (d >= 0) & (d < window - 1)


WRONG_WINDOW = [
    (window_plus_one, r"one key too many"),
    (window_symmetric, r"It is symmetric"),
    (window_inverted, r"opposite\s+polarity"),
    (window_excludes_self, r"diagonal is False: each query sees the keys before it but not"),
    (window_float, r"dtype torch\.float32"),
    (window_causal_only, r"plain causal mask: the window is ignored"),
    (window_looks_ahead, r"looks ahead"),
    (ref_window, r"calls the course's own sliding_window_mask"),
]


# ------------------------------------------------------------------------- linear_attention


def linear(q, k, v, feature_map=elu_plus_one):
    """The solution notebook's logic, written out independently."""
    phi_q, phi_k = feature_map(q), feature_map(k)  # (..., Lq, d), (..., Lk, d)
    kv = phi_k.transpose(-2, -1) @ v  # (..., d, d_v)
    z = phi_k.sum(dim=-2)  # (..., d)
    return (phi_q @ kv) / (phi_q * z[..., None, :]).sum(-1, keepdim=True)


def linear_einsum(q, k, v, feature_map=elu_plus_one):
    """Another correct way, with einsum."""
    phi_q, phi_k = feature_map(q), feature_map(k)
    kv = torch.einsum("...jd,...je->...de", phi_k, v)
    norm = torch.einsum("...id,...d->...i", phi_q, phi_k.sum(-2))
    return torch.einsum("...id,...de->...ie", phi_q, kv) / norm[..., None]


def linear_phi_v(q, k, v, feature_map=elu_plus_one):
    return linear(q, k, feature_map(v), feature_map)


def linear_no_norm(q, k, v, feature_map=elu_plus_one):
    return feature_map(q) @ (feature_map(k).transpose(-2, -1) @ v)


def linear_no_keepdim(q, k, v, feature_map=elu_plus_one):
    phi_q, phi_k = feature_map(q), feature_map(k)
    num = phi_q @ (phi_k.transpose(-2, -1) @ v)
    return num / (phi_q * phi_k.sum(-2, keepdim=True)).sum(-1)[..., None, :]


def linear_norm_over_queries(q, k, v, feature_map=elu_plus_one):
    phi_q, phi_k = feature_map(q), feature_map(k)
    num = phi_q @ (phi_k.transpose(-2, -1) @ v)
    return num / (phi_q * phi_k.sum(-2, keepdim=True)).sum(-2, keepdim=True)


def linear_softmax(q, k, v, feature_map=elu_plus_one):
    return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.size(-1)), dim=-1) @ v


def linear_hardcoded(q, k, v, feature_map=elu_plus_one):
    return linear(q, k, v)  # always elu + 1, whatever was passed


def linear_quadratic(q, k, v, feature_map=elu_plus_one):
    sims = feature_map(q) @ feature_map(k).transpose(-2, -1)  # (..., Lq, Lk)
    return (sims @ v) / sims.sum(-1, keepdim=True)


def linear_scaled(q, k, v, feature_map=elu_plus_one):
    d = q.size(-1)
    return linear(q / math.sqrt(d), k / math.sqrt(d), v, feature_map)


WRONG_LINEAR = [
    ("linear_attention.values", linear_phi_v, r"feature map to the values"),
    ("linear_attention.values", linear_no_norm, r"without the normaliser"),
    ("linear_attention.values", linear_no_keepdim, r"broadcast along the wrong axis"),
    ("linear_attention.hidden", linear_norm_over_queries, r"summed over the QUERY axis"),
    ("linear_attention.values", linear_softmax, r"ordinary softmax attention"),
    ("linear_attention.values", linear_scaled, r"no 1/sqrt\(d\) scale"),
    ("linear_attention.feature_map", linear_hardcoded, r"passed another\s+feature_map"),
    ("linear_attention.values", ref_linear, r"calls the course's own linear_attention"),
]


# ------------------------------------------------------------------------ one mistake, once

# None of lesson 08's checks runs one of the learner's exercises through another (the
# default feature map of linear_attention, elu_plus_one, is the course's, handed out in the
# first cell), so no stand-in is needed here.


# ------------------------------------------------------------------------ the rows

ROWS = [
    *passes(tiled, *TILED_IDS),
    *passes(tiled_normalised_running, *TILED_IDS),  # either bookkeeping
    *[fails(MISTAKES[name], check_id, match, name=name) for check_id, name, match in WRONG_TILED],
    fails(MISTAKES["no_rescale"], "tiled_attention.hidden", r"WITHOUT the rescaling step",
          name="no_rescale"),
    fails(MISTAKES["ignores_causal"], "tiled_attention.causal_hidden",
          r"causal=True was ignored", name="ignores_causal"),
    # the full (Lq, Lk) scores or mask: right numbers, but not the never-full points
    *passes(tiled_full_softmax, "tiled_attention.values"),
    fails(tiled_full_softmax, "tiled_attention.never_full",
          r"as large as the full score matrix.*torch\.softmax"),
    *passes(tiled_full_mask, "tiled_attention.causal"),
    fails(tiled_full_mask, "tiled_attention.never_full_hidden", r"builds a full mask of shape"),
    *[fails(fn, "tiled_attention.values", match,
            name="course-tiled_attention" if fn is ref_tiled else "")
      for fn, match in WRONG_KIND_TILED],
    *passes(window_mask, *WINDOW_IDS),
    *passes(window_tril, *WINDOW_IDS),
    *[fails(fn, "sliding_window.values", match,
            name="course-sliding_window_mask" if fn is ref_window else "")
      for fn, match in WRONG_WINDOW],
    fails(window_short, "sliding_window.hidden", r"one key too few"),
    fails(window_causal_only, "sliding_window.edges", r"plain causal mask: the window is ignored"),
    *passes(linear, *LINEAR_IDS),
    *passes(linear_einsum, *LINEAR_IDS),
    *[fails(fn, check_id, match, name="course-linear_attention" if fn is ref_linear else "")
      for check_id, fn, match in WRONG_LINEAR],
    # the (Lq, Lk) similarities: right numbers, but not the linear point
    *passes(linear_quadratic, "linear_attention.feature_map"),
    fails(linear_quadratic, "linear_attention.linear",
          r"right numbers but creates a tensor of shape"),
]

test_row = row_test(ROWS)
