"""The kernel half of the checks toolkit: record what the learner's code does, as plain data.

A check has two halves (docs/ARCHITECTURE.md, "The trust boundary"), in two files per lesson:

* ``lessonNN/cases.py`` runs inside the learner's kernel: fixed-seed cases and ``RECORDS``,
  the ``record(obj)`` functions that call the learner's function or class on them and keep
  what came back as plain data (numpy arrays, Python scalars, strings): values, exceptions,
  inputs changed in place, forbidden calls made. It uses this module only.
* ``lessonNN/verdicts.py`` runs in the trusted process only: ``VERDICTS``, the title and
  ``compare(record)`` of each check, which rebuilds the same cases from the same seeds, runs
  the reference kernels, and raises :class:`CheckFailed` with a message written for the
  learner (helpers in ``_verdict``).

Under ``grade`` the sandbox image holds this module and the ``cases`` files, copied as they
are; ``run(check, obj)`` does both halves in one process (what ``check`` and Validate use).
"""

from __future__ import annotations

import contextlib
import io
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

    ``families`` names entries of FORBIDDEN_C_NAMES / FORBIDDEN_PY; ``course`` names the
    course's own kernels (``autograder.reference``) that count as forbidden; ``kernels`` are
    extra ``(label, callable)`` pairs.

    Three watchers, because each sees what the others miss: a profiler hook (Python
    functions by code object, C functions by name, whatever alias called them), and, for
    the C names, a torch-function mode and a torch-dispatch mode, which also see a built-in
    reached without a Python-level call of its own (``functools.partial``, ``map``,
    ``torch.ops.aten...``, a module's fused fast path).
    """

    def __init__(self, families: Iterable[str] = (), kernels: Iterable[tuple[str, Any]] = (),
                 course: Iterable[str] = ()):
        self.c_names: dict[str, str] = {}
        self.codes: dict[Any, str] = {}
        for fam in families:
            for name in FORBIDDEN_C_NAMES.get(fam, ()):
                self.c_names[name] = HUMAN_NAMES[fam]
            for spec in FORBIDDEN_PY.get(fam, ()):
                code = _code_of(_resolve(spec))
                if code is not None:
                    self.codes[code] = HUMAN_NAMES[fam]
        # The course's own kernels, by name: a record module never imports a kernel of its own
        # lesson (under ``grade`` it is a stub that raises, whose code object is caught alike).
        kernels = [*kernels, *((f"the course's own {name} (attnlab / autograder.reference)",
                                _resolve(f"autograder.reference:{name}")) for name in course)]
        for label, fn in kernels:
            # a class stands for every function it defines (its forward, its helpers)
            functions = [m for m in vars(fn).values() if _code_of(m) is not None] \
                if isinstance(fn, type) else [fn]
            for function in functions:
                code = _code_of(function)
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


# ----------------------------------------------------------------------------- isolation


def _namespace_of(obj: Any) -> dict | None:
    """The globals the learner's function or class looks its other names up in (for a
    class, those of the first function it or a base class of it defines)."""
    fn = getattr(obj, "__func__", obj)
    if isinstance(fn, type):
        for klass in fn.__mro__:
            for member in vars(klass).values():
                member = getattr(member, "__func__", member)
                if hasattr(member, "__globals__"):
                    return member.__globals__
        return None
    return getattr(fn, "__globals__", None)


@contextlib.contextmanager
def stand_ins(obj: Any, replacements: dict[str, Callable]):
    """One mistake costs once: while the block runs, the learner's earlier exercises that
    ``obj`` calls by name (``softmax`` inside ``attend``) are known-good stand-ins, so a check
    of ``obj`` judges ``obj`` alone; the earlier exercise's own checks judge it.

    Only names the learner's namespace defines are replaced, and each is put back after. A
    stand-in that answers an exercise must be listed as forbidden in that exercise's Guard
    (``kernels=``), so no learner can call it in their own version.
    """
    namespace = _namespace_of(obj)
    if namespace is not None and str(namespace.get("__name__", "")).startswith(
            ("autograder.", "attnlab.")):
        namespace = None  # the course's own code (a learner handing in attnlab's class)
    names = [n for n in replacements if namespace is not None and n in namespace]
    saved = {n: namespace[n] for n in names}
    try:
        for n in names:
            namespace[n] = replacements[n]
        yield
    finally:
        for n, value in saved.items():
            namespace[n] = value


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


# ----------------------------------------------------------------------------- registry


@dataclass
class Check:
    """One isolated, separately scored check on one exercise."""

    id: str  # e.g. "softmax.values"
    title: str  # shown on success: "softmax: values match the reference"
    record: Callable[[Any], Any]  # runs learner code (learner's kernel)
    compare: Callable[[Any], None] | None  # raises CheckFailed (trusted side; None in a sandbox)


REGISTRY: dict[str, Check] = {}


def register(id: str, title: str, record: Callable[[Any], Any],
             compare: Callable[[Any], None] | None) -> Check:
    if id in REGISTRY:
        raise ValueError(f"check {id!r} registered twice")
    REGISTRY[id] = Check(id, title, record, compare)
    return REGISTRY[id]


def register_lesson(lesson: str, records: dict[str, Callable],
                    verdicts: dict[str, tuple[str, Callable]] | None) -> None:
    """Pair a lesson's ``RECORDS`` (cases.py) with its ``VERDICTS`` (verdicts.py) by check id;
    ``verdicts=None`` registers the record halves alone (the sandbox)."""
    if verdicts is not None and set(records) != set(verdicts):
        missing = sorted(set(records) ^ set(verdicts))
        raise ValueError(f"{lesson}: check ids in only one of cases.RECORDS and "
                         f"verdicts.VERDICTS: {', '.join(missing)}")
    for check_id, record in records.items():
        title, compare = verdicts[check_id] if verdicts is not None else ("", None)
        register(check_id, title, record, compare)


def run(check_id: str, obj: Any, quiet: bool = False) -> None:
    """Record the learner's outputs, compare them with the reference, report."""
    check = REGISTRY[check_id]
    check.compare(check.record(obj))
    if not quiet:
        print(f"\u2713 {check.title}")
