"""The machinery every check uses: record the learner's outputs, then compare them.

A check has two halves (docs/ARCHITECTURE.md, "The trust boundary"):

* ``record(obj)`` runs inside the learner's kernel. It calls the learner's function or
  class on fixed-seed cases and keeps what came back as plain data (numpy arrays, Python
  scalars, strings): values, exceptions, inputs changed in place, forbidden calls made.
* ``compare(record)`` needs nothing from the learner's process. It rebuilds the same
  cases from the same seeds, runs the reference kernels, and raises :class:`CheckFailed`
  with a message written for the learner.

``run(check, obj)`` does both in one process (what ``check`` and Validate use).
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# ----------------------------------------------------------------------------- verdicts


class CheckFailed(AssertionError):
    """A check's verdict: one plain-language message, shown without a traceback."""

    def _render_traceback_(self) -> list[str]:
        # IPython shows this instead of a traceback into the autograder's internals.
        return [f"\x1b[0;31mNot yet: {self}\x1b[0m"]


def fail(message: str) -> None:
    raise CheckFailed(message)


# ----------------------------------------------------------------------------- recording


@dataclass
class Outcome:
    """What one call of learner code produced, as plain data."""

    value: Any = None  # numpy arrays / scalars / strings / tuples / lists / dicts of them
    error: str | None = None  # "ValueError: ..." when the call raised
    error_type: str | None = None
    forbidden: list[str] = field(default_factory=list)  # existing implementations it called
    mutated: list[str] = field(default_factory=list)  # argument names changed in place


def to_plain(x: Any) -> Any:
    """Tensors and arrays to numpy (keeping dtype), containers recursively."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):  # a torch tensor, without importing torch
        t = x.detach().cpu()
        try:
            array = t.numpy().copy()
        except TypeError:  # bfloat16 and friends have no numpy dtype
            array = t.float().numpy()
        return TensorRecord(array, str(t.dtype).replace("torch.", ""))
    if isinstance(x, np.ndarray):
        return x.copy()
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, tuple):
        return tuple(to_plain(v) for v in x)
    if isinstance(x, list):
        return [to_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: to_plain(v) for k, v in x.items()}
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    return Opaque(type(x).__name__, repr(x)[:200])


class TensorRecord(np.ndarray):
    """A recorded torch tensor: a numpy array that remembers it was a tensor and its dtype."""

    def __new__(cls, array: np.ndarray, torch_dtype: str):
        obj = np.asarray(array).view(cls)
        obj.torch_dtype = torch_dtype
        return obj

    def __array_finalize__(self, obj):
        self.torch_dtype = getattr(obj, "torch_dtype", None)

    def __reduce__(self):
        return (TensorRecord, (np.asarray(self), self.torch_dtype))


@dataclass
class Opaque:
    """Something that is neither an array nor a plain value (kept by type name and repr)."""

    type_name: str
    text: str


def _snapshot(x: Any) -> Any:
    if hasattr(x, "detach") and hasattr(x, "clone"):
        return x.detach().clone()
    if isinstance(x, np.ndarray):
        return x.copy()
    return None


def _changed(before: Any, after: Any) -> bool:
    if before is None:
        return False
    if isinstance(before, np.ndarray):
        return before.shape != after.shape or not np.array_equal(before, after, equal_nan=True)
    after = after.detach()
    if before.shape != after.shape or before.dtype != after.dtype:
        return True
    if before.is_floating_point() or before.is_complex():
        return not bool(((before == after) | (before.isnan() & after.isnan())).all())
    return not bool((before == after).all())


# -------------------------------------------------------------- forbidden implementations

# What each exercise may not call, by family. A C function is matched by its name (so an
# alias such as ``from torch import softmax as f`` is still caught); a Python function by
# its code object (so the reference reached through any import path is caught).
FORBIDDEN_C_NAMES: dict[str, tuple[str, ...]] = {
    "softmax": ("softmax", "_softmax", "log_softmax", "_log_softmax", "special_softmax"),
    "attention": (
        "scaled_dot_product_attention",
        "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_fused_sdp_choice",
        "_native_multi_head_attention",
        "multi_head_attention_forward",
    ),
    "layer_norm": ("layer_norm", "native_layer_norm"),
}

FORBIDDEN_PY: dict[str, tuple[str, ...]] = {
    "softmax": ("scipy.special:softmax", "torch.nn.functional:softmax",
                "torch.nn.functional:log_softmax", "torch.nn:Softmax.forward"),
    "attention": ("torch.nn.functional:scaled_dot_product_attention",
                  "torch.nn.functional:multi_head_attention_forward",
                  "torch.nn:MultiheadAttention.forward"),
    "layer_norm": ("torch.nn.functional:layer_norm", "torch.nn:LayerNorm.forward"),
}

HUMAN_NAMES = {
    "softmax": "an existing softmax (torch.softmax, F.softmax, scipy.special.softmax...)",
    "attention": "PyTorch's built-in attention (F.scaled_dot_product_attention or "
                 "nn.MultiheadAttention)",
    "layer_norm": "PyTorch's layer norm (nn.LayerNorm or F.layer_norm)",
}


def _resolve(spec: str) -> Any:
    module_name, _, attr_path = spec.partition(":")
    try:
        obj = __import__(module_name, fromlist=["_"])
        for part in attr_path.split("."):
            obj = getattr(obj, part)
    except Exception:  # an optional library (scipy) that is not installed
        return None
    return obj


def _code_of(obj: Any):
    import inspect

    obj = getattr(obj, "__func__", obj)
    try:  # a decorated kernel (e.g. @torch.no_grad()) shares its wrapper's code: unwrap it
        obj = inspect.unwrap(obj)
    except ValueError:
        pass
    return getattr(obj, "__code__", None)


class Guard:
    """Notice calls to implementations the learner was asked to write themselves.

    ``families`` names entries of FORBIDDEN_C_NAMES / FORBIDDEN_PY; ``kernels`` are extra
    Python callables (the course's own reference for this exercise) that count as forbidden.

    Three watchers, because each sees what the others miss: a profiler hook (Python
    functions by code object, C functions by name, whatever alias called them), and, for
    the C names, a torch-function mode and a torch-dispatch mode, which also see a built-in
    reached without a Python-level call of its own (``functools.partial``, ``map``,
    ``torch.ops.aten...``, a module's fused fast path).
    """

    def __init__(self, families: Iterable[str] = (), kernels: Iterable[tuple[str, Any]] = ()):
        self.c_names: dict[str, str] = {}
        self.codes: dict[Any, str] = {}
        for fam in families:
            for name in FORBIDDEN_C_NAMES.get(fam, ()):
                self.c_names[name] = HUMAN_NAMES[fam]
            for spec in FORBIDDEN_PY.get(fam, ()):
                code = _code_of(_resolve(spec))
                if code is not None:
                    self.codes[code] = HUMAN_NAMES[fam]
        for label, fn in kernels:
            code = _code_of(fn)
            if code is not None:
                self.codes[code] = label
        self.hits: list[str] = []
        self._modes: list[Any] = []

    def _note(self, label: str | None) -> None:
        if label and label not in self.hits:
            self.hits.append(label)

    def _profile(self, frame, event, arg):
        if event == "c_call":
            self._note(self.c_names.get(getattr(arg, "__name__", "")))
        elif event == "call":
            self._note(self.codes.get(frame.f_code))

    def _note_torch(self, func) -> None:
        packet = getattr(func, "overloadpacket", None)  # aten ops: aten.softmax.int -> softmax
        for name in (getattr(func, "__name__", ""), getattr(packet, "__name__", "")):
            self._note(self.c_names.get(str(name).split(".")[0]))

    def _torch_modes(self) -> list[Any]:
        from torch.overrides import TorchFunctionMode
        from torch.utils._python_dispatch import TorchDispatchMode

        guard = self

        class WatchFunctions(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                guard._note_torch(func)
                return func(*args, **(kwargs or {}))

        class WatchOperators(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                guard._note_torch(func)
                return func(*args, **(kwargs or {}))

        return [WatchFunctions(), WatchOperators()]

    def __enter__(self) -> Guard:
        self._previous = sys.getprofile()
        if self.c_names or self.codes:
            sys.setprofile(self._profile)
        self._modes = []
        if self.c_names:
            for mode in self._torch_modes():
                mode.__enter__()
                self._modes.append(mode)
        return self

    def __exit__(self, *exc) -> None:
        for mode in reversed(self._modes):
            mode.__exit__(None, None, None)
        self._modes = []
        previous = self._previous
        if previous is not None and not callable(previous) and hasattr(previous, "enable"):
            previous.enable()  # a cProfile.Profile (e.g. %prun) was running: resume it
        else:
            sys.setprofile(previous)


def call(fn: Callable, *args: Any, guard: Guard | None = None, **kwargs: Any) -> Outcome:
    """Call learner code once; never raises; records value, error, in-place edits, calls."""
    named = [(f"argument {i + 1}", a) for i, a in enumerate(args)] + list(kwargs.items())
    before = [(name, _snapshot(a)) for name, a in named]
    guard = guard or Guard()
    out = Outcome()
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        # warnings printed by correct code never cost points
        warnings.simplefilter("ignore")
        try:
            with guard:
                value = fn(*args, **kwargs)
            out.value = to_plain(value)
        except Exception as exc:  # the learner's code failed: that is a result, not a crash
            out.error_type = type(exc).__name__
            out.error = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    out.forbidden = list(guard.hits)
    out.mutated = [
        name for (name, snap), (_, now) in zip(before, named, strict=True) if _changed(snap, now)
    ]
    return out


# ----------------------------------------------------------------------------- learner modules


def get_path(obj: Any, path: str) -> Any:
    """``module.blocks.0.attn.q_proj.weight``: attributes, and indices into a ModuleList."""
    for part in path.split("."):
        obj = obj[int(part)] if part.isdigit() and hasattr(obj, "__getitem__") else \
            getattr(obj, part)
    return obj


def load_params(module: Any, params: dict[str, Any]) -> dict[str, str]:
    """Copy fixed-seed tensors into the learner's module by name; what happened, per name."""
    import torch

    seen: dict[str, str] = {}
    for path, value in params.items():
        try:
            target = get_path(module, path)
        except Exception:  # AttributeError, IndexError, or a property that raises
            seen[path] = "missing"
            continue
        if not isinstance(target, torch.Tensor):
            seen[path] = f"not a tensor ({type(target).__name__})"
            continue
        if tuple(target.shape) != tuple(value.shape):
            seen[path] = f"shape {tuple(target.shape)}"
            continue
        try:
            with torch.no_grad():
                target.copy_(value)
            seen[path] = "ok"
        except Exception as exc:  # e.g. a tensor that is not a leaf
            seen[path] = f"error ({type(exc).__name__}: {exc})"
    return seen


def build_module(cls: Any, *args: Any, **kwargs: Any) -> tuple[Any, Outcome]:
    """The learner's module (eval mode), built without disturbing the global random stream."""
    import torch

    holder: dict = {}

    def construct() -> None:
        with torch.random.fork_rng():  # their init draws from the global stream: restore it
            holder["m"] = cls(*args, **kwargs)

    outcome = call(construct)
    module = holder.get("m")
    if module is not None:
        try:
            module.eval()
        except Exception:  # a learner's odd eval() never crashes the check
            pass
    return module, outcome


def built_text(name: str, args: tuple, kwargs: dict) -> str:
    """How the check built it, as the learner would write it: ``Name(8, 2, eps=0.5)``."""
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{name}({', '.join(parts)})"


# ----------------------------------------------------------------------------- comparing


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


def first_close(got: np.ndarray, mistakes: list[tuple[str, np.ndarray | None]],
                atol: float, rtol: float = 1e-4) -> str | None:
    """The message of the first known mistake whose output ``got`` matches, if any."""
    for message, wrong in mistakes:
        if wrong is not None and close(got, np.asarray(wrong), atol, rtol):
            return message
    return None


def expect_close(got: np.ndarray, want: np.ndarray, what: str, case: str = "",
                 mistakes: dict[str, np.ndarray] | None = None, atol: float = 1e-5,
                 rtol: float = 1e-4, hint: str = "") -> None:
    """Shapes first, then values; a known mistake that matches gets its own message."""
    expect_shape(got, want.shape, what, case)
    if close(got, want, atol, rtol):
        return
    for message, wrong in (mistakes or {}).items():
        if wrong is not None and close(got, np.asarray(wrong), atol, rtol):
            fail(f"{what} does not match the reference{f' ({case})' if case else ''}. "
                 f"{message}")
    err, idx = max_error(got, want)
    where = f" ({case})" if case else ""
    detail = f" at index {idx}: yours {got[idx]:.6g}, expected {want[idx]:.6g}" if idx else ""
    fail(f"{what} does not match the reference{where}: largest error {err:.3g}{detail}."
         f"{(' ' + hint) if hint else ''}")


def fmt(x: float) -> str:
    return f"{x:.3g}" if math.isfinite(x) else str(x)


# ----------------------------------------------------------------------------- registry


@dataclass
class Check:
    """One isolated, separately scored check on one exercise."""

    id: str  # e.g. "softmax.values"
    title: str  # shown on success: "softmax: values match the reference"
    record: Callable[[Any], dict]  # runs learner code (learner's kernel)
    compare: Callable[[dict], None]  # raises CheckFailed (trusted side)


REGISTRY: dict[str, Check] = {}


def register(id: str, title: str, record: Callable[[Any], dict],
             compare: Callable[[dict], None]) -> Check:
    if id in REGISTRY:
        raise ValueError(f"check {id!r} registered twice")
    REGISTRY[id] = Check(id, title, record, compare)
    return REGISTRY[id]


def run(check_id: str, obj: Any, quiet: bool = False) -> None:
    """Record the learner's outputs, compare them with the reference, report."""
    check = REGISTRY[check_id]
    check.compare(check.record(obj))
    if not quiet:
        print(f"\u2713 {check.title}")
