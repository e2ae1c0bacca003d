"""Trusted-side toolkit shared by the attention lessons' verdicts (02, 04, 08, ...).

Messages for mistakes that more than one lesson names (the missing 1/sqrt(d_k), a softmax over
the query axis, a mask applied after the softmax), the transpose and mask hints, and the small
helpers that read an attention function's record: ``(output, weights)`` as tensors, a single
tensor, a bool mask. Nothing here runs in a graded learner's kernel.
"""

from __future__ import annotations

import numpy as np

from ._core import Outcome, TensorRecord
from ._verdict import check_outcome, fail, unpack_pair

__all__ = ["M_AFTER", "M_BY_DK", "M_NO_SCALE", "M_QUERY_AXIS", "MASK_HINT", "SHAPE_WORDS",
           "TRANSPOSE_HINT", "as_numpy", "expect_bool", "looks_like_shape_error",
           "outcome_with_hint", "tensor_pair", "tensor_value"]

TRANSPOSE_HINT = (
    "To transpose the keys, swap only the last two axes: k.transpose(-2, -1) (or k.mT). On a "
    "3-D tensor k.T reverses ALL the axes, (B, Lk, d_k) -> (d_k, Lk, B), and a fixed pair such "
    "as transpose(1, 2) breaks when the number of batch axes changes.")

MASK_HINT = (
    "Boolean indexing (scores[~mask] = ...) needs a mask of exactly the scores' shape, but masks "
    "here only broadcast to it. Use scores.masked_fill(~mask, float('-inf')) or torch.where(mask, "
    "scores, float('-inf')), which broadcast the mask for you.")

M_NO_SCALE = ("It matches attention without the 1/sqrt(d_k) scaling: divide the scores "
              "q @ k^T by math.sqrt(d_k), where d_k = q.size(-1).")
M_BY_DK = ("It matches scores divided by d_k instead of sqrt(d_k). A dot product's variance "
           "grows like d_k, so its spread grows like sqrt(d_k): divide by math.sqrt(d_k).")
M_QUERY_AXIS = ("Its weights are a softmax over the query axis (dim=-2), so each column sums "
                "to 1 instead of each row. Take the softmax over the key axis, dim=-1: each "
                "query's weights must sum to 1.")
M_AFTER = ("It looks like the mask was applied after the softmax (weights zeroed after "
           "normalising), so the remaining weights no longer sum to 1. Set the masked scores "
           "to -inf BEFORE the softmax; the softmax then shares all the weight among the keys "
           "that are allowed.")

# Words of an exception that say two shapes did not line up.
SHAPE_WORDS = ("size", "shape", "dimension", "dims", "multipl", "match")


def as_numpy(t) -> np.ndarray:
    """A torch tensor (the reference's, on the trusted side) as a numpy array."""
    return t.detach().cpu().numpy()


def looks_like_shape_error(error: str, words: tuple[str, ...] = SHAPE_WORDS) -> bool:
    text = error.lower()
    return any(w in text for w in words)


def outcome_with_hint(out: Outcome, what: str, case: str, hint: str) -> object:
    """check_outcome, with a hint for shape errors (the usual cause: the wrong transpose)."""
    if (out.error and not out.forbidden and out.error_type != "NotImplementedError"
            and looks_like_shape_error(out.error)):
        fail(f"{what} raised {out.error} ({case}). "
             f"{MASK_HINT if 'mask' in out.error.lower() else hint}")
    return check_outcome(out, what, case)


def tensor_pair(value, what: str, case: str) -> tuple[np.ndarray, np.ndarray]:
    """An attention function's ``(output, weights)``, both torch tensors."""
    out, w = unpack_pair(value, what, case=case)
    if not all(isinstance(x, TensorRecord) for x in value):
        fail(f"{what} should return torch tensors (output, weights), not numpy arrays or "
             f"lists ({case}). Stay in torch so gradients can flow.")
    return out, w


def tensor_value(value, what: str, case: str) -> TensorRecord:
    """The learner's result as a recorded tensor, or a message saying what came back instead."""
    if not isinstance(value, TensorRecord):
        if value is None:
            fail(f"{what} returned None ({case}). Did you forget `return`?")
        kind = "a numpy array" if isinstance(value, np.ndarray) else \
            getattr(value, "type_name", type(value).__name__)
        fail(f"{what} should return a torch tensor, but returned {kind} ({case}).")
    return value


def expect_bool(got: TensorRecord, what: str, case: str) -> None:
    """A mask must be torch.bool (True = may attend), not an additive or numeric mask."""
    if got.torch_dtype == "bool":
        return
    values = np.asarray(got, dtype=np.float64)
    if np.isinf(values).any():
        fail(f"{what} has dtype torch.{got.torch_dtype} and holds -inf ({case}): that is an "
             "additive float mask (0 where allowed, -inf where blocked), another convention. "
             "Masks in this course are torch.bool with True = may attend; attention turns them "
             "into -inf itself.")
    fail(f"{what} has dtype torch.{got.torch_dtype} ({case}); it should be torch.bool (True = "
         "may attend). torch.ones(...) makes float32 numbers: pass dtype=torch.bool, or end "
         "with .bool(). A comparison such as `a < b` is already bool.")
