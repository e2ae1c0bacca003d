"""The trusted half of the checks toolkit: verdicts on a record, with messages for the learner.

Nothing here runs in a graded learner's kernel (the sandbox image holds only ``_core`` and
each lesson's ``cases`` module). A lesson's ``verdicts`` module rebuilds its cases, runs the
reference, and calls these helpers, which raise :class:`CheckFailed` with one plain message.

Mistakes: a known wrong answer is a :data:`Mistake`, ``(message, the output it gives)``;
``expect_close`` and ``first_close`` take a sequence of them, in the order they are tried.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from ._core import CheckFailed, Opaque, Outcome, fail

__all__ = ["CheckFailed", "Mistake", "as_array", "check_outcome", "close", "describe_shape",
           "expect_close", "expect_finite", "expect_shape", "fail", "first_close", "fmt",
           "max_error", "unpack_pair"]

Mistake = tuple[str, "np.ndarray | None"]  # (message for the learner, the output it gives)


def describe_shape(x: Any) -> str:
    return str(tuple(np.shape(x)))


def check_outcome(out: Outcome, what: str, case: str = "") -> Any:
    """Fail on an exception, a forbidden call or an in-place edit; else return the value."""
    where = f" ({case})" if case else ""
    if out.forbidden:
        fail(f"{what} calls {out.forbidden[0]}. This exercise asks you to write it yourself "
             f"from basic operations.")
    if out.error_type == "NotImplementedError":
        fail(f"{what} is not written yet: it still raises NotImplementedError. Replace "
             f"`raise NotImplementedError()` with your code.")
    if out.error:
        hint = ""
        if "broadcast" in out.error:
            hint = (" The shapes did not line up: did you reduce (max, sum) without "
                    "keepdims=True, or transpose the wrong axes?")
        fail(f"{what} raised {out.error}{where}.{hint}")
    if out.mutated:
        fail(f"{what} changed its input ({', '.join(out.mutated)}) in place{where}. Work on "
             f"new arrays (e.g. `x - m`, not `x -= m`) so the caller's data stays intact.")
    return out.value


def as_array(value: Any, what: str, case: str = "") -> np.ndarray:
    where = f" ({case})" if case else ""
    if isinstance(value, Opaque) or value is None or isinstance(value, (str, dict)):
        got = "None" if value is None else getattr(value, "type_name", type(value).__name__)
        fail(f"{what} should return an array, but returned {got}{where}. Did you forget "
             f"`return`?")
    if isinstance(value, (tuple, list)):
        fail(f"{what} returned a {type(value).__name__} of {len(value)} items{where}; "
             f"expected a single array here.")
    return np.asarray(value)


def unpack_pair(value: Any, what: str, names: tuple[str, str] = ("output", "weights"),
                case: str = "") -> tuple[np.ndarray, np.ndarray]:
    """A function that returns ``(output, weights)``: check it did, and return both."""
    where = f" ({case})" if case else ""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        kind = "None" if value is None else getattr(value, "type_name", type(value).__name__)
        if isinstance(value, np.ndarray):
            kind = f"a single array of shape {describe_shape(value)}"
        fail(f"{what} should return a pair `({names[0]}, {names[1]})`, but returned "
             f"{kind}{where}.")
    return (as_array(value[0], f"{what}'s {names[0]}", case),
            as_array(value[1], f"{what}'s {names[1]}", case))


def expect_shape(got: np.ndarray, want_shape: tuple, what: str, case: str = "",
                 hint: str = "") -> None:
    if tuple(got.shape) != tuple(want_shape):
        where = f" ({case})" if case else ""
        fail(f"{what} has shape {describe_shape(got)} but should have shape "
             f"{tuple(want_shape)}{where}.{(' ' + hint) if hint else ''}")


def expect_finite(got: np.ndarray, what: str, case: str = "", hint: str = "") -> None:
    if got.dtype.kind in "fc" and not np.isfinite(got).all():
        where = f" ({case})" if case else ""
        bad = "NaN" if np.isnan(got).any() else "inf"
        fail(f"{what} contains {bad}{where}.{(' ' + hint) if hint else ''}")


def max_error(got: np.ndarray, want: np.ndarray) -> tuple[float, tuple]:
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return (float(diff[idx]) if diff.size else 0.0), tuple(int(i) for i in idx)


def close(got: np.ndarray, want: np.ndarray, atol: float = 1e-5, rtol: float = 1e-4) -> bool:
    return got.shape == want.shape and bool(
        np.allclose(got.astype(np.float64), want.astype(np.float64), atol=atol, rtol=rtol)
    )


def first_close(got: np.ndarray, mistakes: Iterable[Mistake],
                atol: float, rtol: float = 1e-4) -> str | None:
    """The message of the first known mistake whose output ``got`` matches, if any."""
    for message, wrong in _pairs(mistakes):
        if wrong is not None and close(got, np.asarray(wrong), atol, rtol):
            return message
    return None


def expect_close(got: np.ndarray, want: np.ndarray, what: str, case: str = "",
                 mistakes: Iterable[Mistake] = (), atol: float = 1e-5,
                 rtol: float = 1e-4, hint: str = "") -> None:
    """Shapes first, then values; a known mistake that matches gets its own message."""
    expect_shape(got, want.shape, what, case)
    if close(got, want, atol, rtol):
        return
    for message, wrong in _pairs(mistakes):
        if wrong is not None and close(got, np.asarray(wrong), atol, rtol):
            fail(f"{what} does not match the reference{f' ({case})' if case else ''}. "
                 f"{message}")
    err, idx = max_error(got, want)
    where = f" ({case})" if case else ""
    detail = f" at index {idx}: yours {got[idx]:.6g}, expected {want[idx]:.6g}" if idx else ""
    fail(f"{what} does not match the reference{where}: largest error {err:.3g}{detail}."
         f"{(' ' + hint) if hint else ''}")


def _pairs(mistakes: Iterable[Mistake]) -> Iterable[Mistake]:
    if isinstance(mistakes, dict):
        raise TypeError("mistakes are a list of (message, output) pairs, not a dict")
    return mistakes or ()


def fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)
