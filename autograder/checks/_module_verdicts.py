"""The trusted half of the toolkit for checks of learner modules (never in a learner's kernel):
turning what ``_modules`` recorded into one plain message, shared by every lesson that checks
a module (LayerNorm, EncoderLayer, DecoderLayer, TinyGPT, RMSNorm, LlamaBlock...).

What it offers:

* ``to_numpy``, ``few``: tensors as arrays; the first few numbers of an array for a message.
* ``compare_cases(cases, one)``: the compare half over cases, ``one(rec[case.desc], case)``.
* ``check_built(info, built, what, calls=..., forbidden=...)``: construction first, then a
  forbidden call in any recorded forward (with the exercise's own sentence), before loading.
* ``explain_load(seen, what, built, fixes, shapes)``: say which named part could not take the
  test's parameters and how to build it (``fix_for`` finds the fix by path prefix);
  ``explain_layer_load`` the same for a Transformer layer (``d_ff_hint`` for a layer whose
  feed-forward has the wrong width).
* ``module_output(info, case, what, explain, shape_hint)``: a module's output after its
  construction, forbidden calls, load problems and errors, of the input's shape, finite.
* ``reference_module(cls, args, kwargs, params)`` and ``reference_output(module, *inputs)``:
  the reference (or a PyTorch oracle) built without touching the global random stream,
  loaded with the same fixed parameters, in eval mode; ``torch_attention_state`` maps the
  course's q/k/v/out projections onto ``nn.MultiheadAttention``'s packed ``in_proj``.
* ``expect_known(got, want, what, case, mistakes)``: shapes, then values; the first known
  mistake (a ``Mistake`` list, in the order tried) that matches names what went wrong.
* ``expect_layer(got, want, what, case, mistakes, against=..., wiring=...)``: the same for a
  whole layer or model, with the oracle named and the right wiring spelled out.
* ``single_output(out, what, case)``: a forward that must return one tensor (not a tuple
  unless ``return_weights=True``); ``blocked_weight(w, mask)`` for masks that must hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ._core import Outcome
from ._verdict import (
    Mistake,
    as_array,
    check_outcome,
    close,
    expect_close,
    expect_finite,
    expect_shape,
    fail,
    first_close,
    fmt,
)

OURS = "the course's own {} (attnlab / autograder.reference)"


def to_numpy(t: Any) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)


def few(values: np.ndarray, n: int = 3) -> str:
    """The first few numbers of an array, rounded, as a learner would write them."""
    return "[" + ", ".join(f"{float(v):.3g}" for v in np.ravel(values)[:n]) + ", ...]"


def compare_cases(cases: Iterable[Any], one: Callable[[Any, Any], Any]) -> Callable[[dict],
                                                                                   None]:
    """``compare(rec)``: ``one(rec[case.desc], case)`` for every case, in order."""
    cases = list(cases)

    def compare(rec: dict) -> None:
        for case in cases:
            one(rec[case.desc], case)
    return compare


# ----------------------------------------------------------------------------- building


def check_built(info: dict, built: str, what: str, calls: Iterable[str] = ("forward",),
                forbidden: str | None = None) -> None:
    """The module was built, and no recorded call used a forbidden implementation.
    ``calls``: the keys of ``info`` holding an Outcome (or a dict of them); ``forbidden``: the
    sentence after "calls X." (default: ``check_outcome``'s)."""
    check_outcome(info["construct"], built)
    for name in calls:
        outs = info.get(name)
        for out in outs.values() if isinstance(outs, dict) else [outs]:
            if isinstance(out, Outcome) and out.forbidden:
                if forbidden:
                    fail(f"{what} calls {out.forbidden[0]}. {forbidden}")
                check_outcome(out, what, built)


def fix_for(path: str, fixes: dict[str, str]) -> str:
    """The fix whose key is a prefix of ``path`` (``self_attn.q_proj.weight`` -> self_attn)."""
    return next((f for prefix, f in fixes.items() if path.startswith(prefix)), "")


def d_ff_hint(path: str, got: str, d: int, d_ff: int, ff: str = "ff") -> str:
    """A layer whose feed-forward was built with d_model (or 4 d_model) instead of d_ff."""
    if path == f"{ff}.linear1.weight" and got in (str((d, d)), str((4 * d, d))):
        return f" Did you pass d_ff = {d_ff} on to FeedForward?"
    return ""


def explain_load(seen: dict[str, str], what: str, built: str, fixes: dict[str, str],
                 shapes: dict[str, tuple]) -> None:
    """Say which named part could not take the test's parameters, and how to build it.
    ``what`` is "Your X"; ``seen`` is ``load_params``'s report."""
    for path, status in seen.items():
        if status == "ok":
            continue
        fix = fix_for(path, fixes)
        if status == "missing":
            fail(f"{what} has no `{path}` ({built}). The checks load weights through the "
                 f"exercise's names: {fix}")
        if status.startswith("shape"):
            fail(f"`{path}` of {what[5:]} has {status} in {built}, but should have shape "
                 f"{shapes[path]}. {fix}")
        fail(f"Could not load test values into `{path}` of {what[5:]}: it is {status}. {fix}")


def explain_layer_load(seen: dict[str, str], what: str, built: str, fixes: dict[str, str],
                       shapes: dict[str, tuple], d_model: int, d_ff: int,
                       missing: Callable[[str, str], str]) -> None:
    """The same for a Transformer layer (EncoderLayer, DecoderLayer...): ``missing(path,
    top)`` words a part that is not there; a wrong shape gets the d_ff hint; anything else
    says how to build the part (``fixes[top]``)."""
    for path, status in seen.items():
        if status == "ok":
            continue
        top = path.split(".")[0]
        if status == "missing":
            fail(missing(path, top))
        if status.startswith("shape"):
            got = status[len("shape "):]
            fail(f"`{path}` of your {what[5:]} has shape {got} in {built}, but should have "
                 f"shape {tuple(shapes[path])}.{d_ff_hint(path, got, d_model, d_ff)}")
        fail(f"Could not load test values into `{path}` of your {what[5:]}: it is {status}. "
             f"{fixes[top]}.")


def module_output(info: dict, case: Any, what: str, explain: Callable[[], None],
                  shape_hint: str, finite_hint: str = "") -> np.ndarray:
    """A module's output on one case, after everything that comes before the values:
    construction, forbidden calls, ``explain()`` (the load problems), an error, a tensor of
    the input's shape (``case.shape``), finite. ``what`` is "Your X"."""
    check_built(info, case.built, what)
    explain()
    got = as_array(check_outcome(info["forward"], what, case.desc), what, case.desc)
    output = f"The output of your {what[5:]}"
    expect_shape(got, case.shape, output, case.desc, hint=shape_hint)
    expect_finite(got, output, case.desc, hint=finite_hint)
    return got


def reference_module(cls: Any, args: tuple = (), kwargs: dict | None = None,
                     params: dict | None = None) -> Any:
    """``cls(*args, **kwargs)`` (the reference or a PyTorch oracle), built without moving the
    global random stream, loaded with ``params`` (a state dict), in eval mode."""
    with torch.random.fork_rng():
        module = cls(*args, **(kwargs or {}))
    if params is not None:
        module.load_state_dict(params)
    return module.eval()


def reference_output(module: Any, *inputs: Any, **kwargs: Any) -> Any:
    """``module(*inputs)`` without gradients, tensors (also inside tuples) as numpy arrays."""
    with torch.no_grad():
        out = module(*inputs, **kwargs)
    if isinstance(out, (tuple, list)):
        return type(out)(to_numpy(o) if hasattr(o, "detach") else o for o in out)
    return to_numpy(out)


def torch_attention_state(params: dict, ours: str, theirs: str) -> dict:
    """The course's ``{ours}.q_proj ... out_proj`` as ``nn.MultiheadAttention``'s packed
    ``{theirs}.in_proj_weight``, ``in_proj_bias`` and ``out_proj``."""
    qkv = ("q_proj", "k_proj", "v_proj")
    return {f"{theirs}.in_proj_weight": torch.cat([params[f"{ours}.{n}.weight"] for n in qkv]),
            f"{theirs}.in_proj_bias": torch.cat([params[f"{ours}.{n}.bias"] for n in qkv]),
            f"{theirs}.out_proj.weight": params[f"{ours}.out_proj.weight"],
            f"{theirs}.out_proj.bias": params[f"{ours}.out_proj.bias"]}


def renamed_state(params: dict, pairs: Iterable[tuple[str, str]],
                  suffixes: Iterable[str] = ("weight", "bias")) -> dict:
    """``{theirs.weight: params[ours.weight], ...}`` for each ``(ours, theirs)``."""
    suffixes = tuple(suffixes)
    return {f"{theirs}.{s}": params[f"{ours}.{s}"] for ours, theirs in pairs for s in suffixes}


# ----------------------------------------------------------------------------- values


def expect_known(got: np.ndarray, want: np.ndarray, what: str, case: str,
                 mistakes: Iterable[Mistake] = (), atol: float = 2e-5,
                 rtol: float = 1e-4) -> None:
    """Shapes, then values; the first known mistake that matches names what went wrong
    (several mistakes may share one message), else the largest error."""
    expect_shape(got, want.shape, what, case)
    if close(got, want, atol, rtol):
        return
    message = first_close(got, mistakes, atol, rtol)
    if message:
        fail(f"{what} does not match the reference ({case}). {message}")
    expect_close(got, want, what, case, atol=atol, rtol=rtol)


def expect_layer(got: np.ndarray, want: np.ndarray, what: str, case: str,
                 mistakes: Iterable[Mistake] | Callable[[], Iterable[Mistake]] = (), *,
                 against: str = "the reference", wiring: str = "", atol: float = 2e-5,
                 rtol: float = 1e-4) -> bool:
    """A whole layer or model against ``against`` with the same weights: True when close;
    else the first known mistake's message, else the largest error and ``wiring`` (the right
    formula). ``mistakes`` may be a function, so the variants are only computed on failure."""
    if close(got, want, atol, rtol):
        return True
    message = first_close(got, mistakes() if callable(mistakes) else mistakes, atol, rtol)
    if message:
        fail(f"{what} does not match {against} ({case}). {message}")
    fail(f"{what} does not match {against} with the same weights ({case}): largest "
         f"error {fmt(float(np.abs(got - want).max()))}. {wiring}".rstrip())
    return False


def single_output(out: Outcome, what: str, case: str) -> np.ndarray:
    """A forward that must return only the output tensor (no weights unless asked for)."""
    value = check_outcome(out, what, case)
    if isinstance(value, (tuple, list)):
        fail(f"{what} returned a {type(value).__name__} of {len(value)} items ({case}); "
             "without return_weights=True, forward should return only the output tensor: "
             "`return (x, weights) if return_weights else x`.")
    return as_array(value, what, case)


def blocked_weight(w: np.ndarray, mask: Any) -> float:
    """The largest weight on a position ``mask`` blocks (True = may attend)."""
    blocked = ~np.broadcast_to(to_numpy(mask), w.shape)
    return float(np.abs(np.nan_to_num(w[blocked])).max()) if blocked.any() else 0.0
