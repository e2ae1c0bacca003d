"""The checks machinery (autograder/checks/_core.py): recording learner calls, catching forbidden
implementations, converting outputs to plain data, and turning comparisons into messages.
"""

from __future__ import annotations

import cProfile
import functools
import pickle
import sys
import warnings

import numpy as np
import pytest
import scipy.special
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.functional import scaled_dot_product_attention as f

from autograder import reference
from autograder.checks import _core as core
from autograder.checks._core import (
    CheckFailed,
    Guard,
    Opaque,
    Outcome,
    TensorRecord,
    call,
    to_plain,
)
from autograder.checks._verdict import (
    check_outcome,
    expect_close,
    expect_finite,
    expect_shape,
    unpack_pair,
)

ALL_FAMILIES = ("softmax", "attention", "layer_norm")


def _x():
    return torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))


# ----------------------------------------------------------------------------- call: recording


def test_call_records_the_value_as_plain_data():
    """Does call keep what the learner returned, converted to numpy?"""
    out = call(lambda a, b: (a + b, torch.ones(2)), np.ones(3), b=np.ones(3))
    assert out.error is None and out.forbidden == [] and out.mutated == []
    value, tensor = out.value
    np.testing.assert_array_equal(value, np.full(3, 2.0))
    assert isinstance(tensor, TensorRecord) and tensor.torch_dtype == "float32"


def test_call_records_an_exception_instead_of_raising():
    """Does an exception in learner code become an error string, never a crash?"""
    out = call(lambda: 1 / 0)
    assert out.value is None
    assert out.error_type == "ZeroDivisionError"
    assert out.error == "ZeroDivisionError: division by zero"


def test_call_records_an_exception_without_a_message():
    """Does `raise NotImplementedError()` read as just the exception's name?"""
    def stub(x):
        raise NotImplementedError()

    out = call(stub, np.ones(2))
    assert (out.error_type, out.error) == ("NotImplementedError", "NotImplementedError")


def test_call_records_in_place_changes_to_numpy_arguments():
    """Is `x -= m` on a numpy argument recorded, by argument position or keyword name?"""
    def shift(x, y=None):
        x -= 1
        if y is not None:
            y[0] = 42
        return x

    out = call(shift, np.zeros(3), y=np.zeros(2))
    assert out.mutated == ["argument 1", "y"]
    untouched = call(lambda x, axis=-1: x - 1, np.zeros(3), axis=0)
    assert untouched.mutated == []


def test_call_records_in_place_changes_to_tensors():
    """Are add_, masked_fill_ and item assignment on a tensor argument recorded?"""
    def add_(x, mask):
        x.add_(1)

    def masked_fill_(x, mask):
        x.masked_fill_(mask, float("-inf"))

    def assign(x, mask):
        x[0, 0, 0] = 5.0

    mask = torch.zeros(2, 3, 4, dtype=torch.bool)
    mask[..., -1] = True
    for fn in (add_, masked_fill_, assign):
        assert call(fn, _x(), mask).mutated == ["argument 1"], fn.__name__
    assert call(lambda x, mask: x.masked_fill(mask, 0.0), _x(), mask).mutated == []


def test_call_records_in_place_changes_to_bool_and_int_tensors():
    """Is an in-place edit of a mask (bool) or index (int) tensor recorded?"""
    def flip(m):
        m[0] = True

    assert call(flip, torch.zeros(3, dtype=torch.bool)).mutated == ["argument 1"]
    assert call(lambda t: t.add_(1), torch.zeros(3, dtype=torch.int64)).mutated == ["argument 1"]


def test_call_records_in_place_changes_even_when_the_code_then_raises():
    """Is an input edited in place still reported when the learner's code fails afterwards?"""
    def broken(x):
        x *= 2
        raise ValueError("shapes")

    out = call(broken, np.ones(2))
    assert out.error == "ValueError: shapes" and out.mutated == ["argument 1"]


def test_call_keeps_the_returned_array_as_it_was_when_returned():
    """Is the recorded value a copy, unaffected if the caller's array changes later?"""
    x = np.ones(3)
    out = call(lambda a: a, x)
    x[0] = 99.0
    np.testing.assert_array_equal(out.value, np.ones(3))


def test_numpy_nan_changed_to_zero_is_recorded():
    """Is replacing a NaN in a numpy argument in place recorded?"""
    def clean(x):
        x[np.isnan(x)] = 0.0

    assert call(clean, np.array([np.nan, 1.0])).mutated == ["argument 1"]


def test_tensor_nan_changed_to_zero_is_recorded():
    """Is replacing a NaN in a tensor argument in place recorded, as it is for numpy?"""
    def clean(x):
        x[torch.isnan(x)] = 0.0

    assert call(clean, torch.tensor([float("nan"), 1.0])).mutated == ["argument 1"]


# ----------------------------------------------------------------------------- call: quiet


def _noisy(x):
    warnings.warn("a learner's warning", UserWarning, stacklevel=1)
    np.exp(np.array([1000.0]))  # numpy's overflow RuntimeWarning
    torch.tensor(torch.ones(2))  # PyTorch's "To copy construct from a tensor" UserWarning
    print("debugging to stderr", file=sys.stderr)
    sys.stderr.write("more stderr\n")
    return x


def test_warnings_from_learner_code_do_not_escape():
    """Do warnings raised inside learner code stay inside call (nothing to record outside)?"""
    filters_before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = call(_noisy, np.ones(2))
    assert out.error is None
    assert [str(w.message) for w in caught] == []
    assert warnings.filters == filters_before


def test_warnings_after_call_still_work():
    """Does call leave the warnings machinery working for the code that runs after it?"""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call(_noisy, np.ones(2))
        warnings.warn("after", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["after"]


def test_stderr_from_learner_code_does_not_leak(capsys):
    """Do prints to sys.stderr inside learner code stay hidden, and is sys.stderr restored?"""
    stderr = sys.stderr
    call(_noisy, np.ones(2))
    call(lambda: (sys.stderr.write("then fails\n"), 1 / 0))
    assert sys.stderr is stderr
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- Guard


def _mha():
    layer = nn.MultiheadAttention(4, 2, batch_first=True)
    x = _x()
    return layer(x, x, x)


FORBIDDEN_CALLS = {
    "torch.softmax": (lambda: torch.softmax(_x(), -1), "softmax"),
    "x.softmax(-1)": (lambda: _x().softmax(-1), "softmax"),
    "F.softmax": (lambda: F.softmax(_x(), dim=-1), "softmax"),
    "F.log_softmax": (lambda: F.log_softmax(_x(), dim=-1), "softmax"),
    "nn.Softmax": (lambda: nn.Softmax(dim=-1)(_x()), "softmax"),
    "torch.special.softmax": (lambda: torch.special.softmax(_x(), -1), "softmax"),
    "scipy.special.softmax": (lambda: scipy.special.softmax(np.ones(3)), "softmax"),
    "F.scaled_dot_product_attention": (
        lambda: F.scaled_dot_product_attention(_x(), _x(), _x()), "attention"),
    "sdpa under an alias": (lambda: f(_x(), _x(), _x()), "attention"),
    "nn.MultiheadAttention": (_mha, "attention"),
    "F.layer_norm": (lambda: F.layer_norm(_x(), (4,)), "layer_norm"),
    "nn.LayerNorm": (lambda: nn.LayerNorm(4)(_x()), "layer_norm"),
    # reached with no Python-level call of their own: only the torch watchers see these
    "functools.partial(torch.softmax)": (
        lambda: functools.partial(torch.softmax, dim=-1)(_x()), "softmax"),
    "map(torch.softmax, ...)": (lambda: list(map(torch.softmax, _x(), [-1, -1])), "softmax"),
    "torch.ops.aten._softmax": (lambda: torch.ops.aten._softmax(_x(), -1, False), "softmax"),
    "functools.partial(sdpa)": (
        lambda: functools.partial(F.scaled_dot_product_attention, _x())(_x(), _x()),
        "attention"),
    "torch.ops.aten.native_layer_norm": (
        lambda: torch.ops.aten.native_layer_norm(_x(), [4], None, None, 1e-5), "layer_norm"),
}


@pytest.mark.parametrize("name", list(FORBIDDEN_CALLS))
def test_guard_catches_an_existing_implementation(name):
    """Is this existing implementation noticed, with the family's human-readable name?"""
    fn, family = FORBIDDEN_CALLS[name]
    out = call(fn, guard=Guard(ALL_FAMILIES))
    assert out.error is None, out.error
    assert out.forbidden[0] == core.HUMAN_NAMES[family]


@pytest.mark.parametrize("name", list(FORBIDDEN_CALLS))
def test_guard_only_watches_the_families_it_was_given(name):
    """Is a call from another family (or with no family at all) left alone?"""
    fn, family = FORBIDDEN_CALLS[name]
    others = [fam for fam in ALL_FAMILIES if fam != family and not
              (name == "nn.MultiheadAttention" and fam == "softmax")]  # MHA runs a softmax
    assert call(fn, guard=Guard(others)).forbidden == []
    assert call(fn).forbidden == []


def test_guard_catches_a_reference_kernel_passed_in_kernels():
    """Is the course's own function or class forward caught through any import path?"""
    import attnlab

    guard = Guard((), [("the course's own softmax", reference.softmax)])
    assert call(lambda: attnlab.softmax(np.ones(3)), guard=guard).forbidden == [
        "the course's own softmax"]
    guard = Guard((), [("the course's own LayerNorm", reference.LayerNorm.forward)])
    assert call(lambda: attnlab.LayerNorm(4)(_x()), guard=guard).forbidden == [
        "the course's own LayerNorm"]


def test_guard_does_not_flag_basic_operations():
    """Are torch.exp / sum / matmul / amax and numpy's exp / max / sum never flagged?"""
    def by_hand():
        x = _x()
        e = torch.exp(x - x.amax(dim=-1, keepdim=True))
        w = e / e.sum(dim=-1, keepdim=True)
        y = torch.matmul(w, x.transpose(-2, -1)) @ x
        a = np.exp(np.ones((2, 3)) - np.ones((2, 3)).max(axis=-1, keepdims=True))
        return y, a / a.sum(axis=-1, keepdims=True), x.mean(-1), x.var(-1)

    out = call(by_hand, guard=Guard(ALL_FAMILIES, [("ref", reference.softmax)]))
    assert out.error is None and out.forbidden == []


def test_guard_does_not_flag_a_learner_function_named_softmax():
    """Is the learner's own function called `softmax` left alone (names only match C code)?"""
    def softmax(x, axis=-1):
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)

    out = call(lambda: softmax(np.ones(3)), guard=Guard(ALL_FAMILIES))
    assert out.forbidden == []


def test_guard_lists_each_hit_once_in_order():
    """Is each forbidden implementation reported once, first one first?"""
    def both():
        for _ in range(3):
            F.layer_norm(torch.softmax(_x(), -1), (4,))

    out = call(both, guard=Guard(ALL_FAMILIES))
    assert out.forbidden == [core.HUMAN_NAMES["softmax"], core.HUMAN_NAMES["layer_norm"]]


def test_guard_records_forbidden_calls_even_when_the_code_raises():
    """Is a forbidden call noticed even if the learner's code fails after it?"""
    def fails():
        torch.softmax(_x(), -1)
        raise RuntimeError("later")

    out = call(fails, guard=Guard(["softmax"]))
    assert out.forbidden == [core.HUMAN_NAMES["softmax"]] and out.error == "RuntimeError: later"


# ----------------------------------------------------------------------------- Guard: profiler


@pytest.fixture
def python_profiler():
    """A Python-level profile function installed for the test, removed afterwards."""
    seen = []

    def profiler(frame, event, arg):
        seen.append(event)

    previous = sys.getprofile()
    sys.setprofile(profiler)
    yield profiler
    sys.setprofile(previous)


def test_profiler_is_restored_after_call(python_profiler):
    """Is sys.getprofile() what it was before, after a guarded call?"""
    call(lambda: torch.softmax(_x(), -1), guard=Guard(["softmax"]))
    assert sys.getprofile() is python_profiler


def test_profiler_is_restored_when_learner_code_raises(python_profiler):
    """Is sys.getprofile() restored even when the guarded learner code raises?"""
    def fails():
        raise ValueError("boom")

    out = call(fails, guard=Guard(["softmax"]))
    assert out.error == "ValueError: boom"
    assert sys.getprofile() is python_profiler


def test_no_profiler_stays_no_profiler():
    """With no profiler installed before, is none left installed after (success or failure)?"""
    previous = sys.getprofile()
    call(lambda: torch.softmax(_x(), -1), guard=Guard(ALL_FAMILIES))
    call(lambda: 1 / 0, guard=Guard(ALL_FAMILIES))
    assert sys.getprofile() is previous


def test_cprofile_is_restored_after_call():
    """Is a running cProfile profiler still running after a guarded call?"""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        before = sys.getprofile()
        call(lambda: torch.softmax(_x(), -1), guard=Guard(["softmax"]))
        after = sys.getprofile()
    finally:
        profiler.disable()
    assert after is before


# ----------------------------------------------------------------------------- to_plain


def test_to_plain_converts_a_tensor_that_requires_grad():
    """Does a tensor that requires grad become a numpy array that remembers its dtype?"""
    t = torch.ones(2, 3, requires_grad=True) * 2
    plain = to_plain(t)
    assert isinstance(plain, TensorRecord) and isinstance(plain, np.ndarray)
    assert plain.dtype == np.float32 and plain.torch_dtype == "float32"
    np.testing.assert_array_equal(plain, np.full((2, 3), 2.0))


def test_to_plain_converts_bfloat16():
    """Does a bfloat16 tensor (no numpy dtype) become float32 values, tagged bfloat16?"""
    t = torch.tensor([1.5, -2.0], dtype=torch.bfloat16, requires_grad=True)
    plain = to_plain(t)
    assert plain.dtype == np.float32 and plain.torch_dtype == "bfloat16"
    np.testing.assert_array_equal(plain, [1.5, -2.0])


def test_to_plain_converts_nested_containers():
    """Are nested tuples, lists and dicts converted all the way down, keeping their kind?"""
    value = (torch.zeros(2), (np.float32(1.5), [torch.tensor(3), None]), {"w": np.ones(1)})
    plain = to_plain(value)
    assert isinstance(plain, tuple) and isinstance(plain[1], tuple)
    assert isinstance(plain[1][1], list) and plain[1][1][1] is None
    assert plain[1][0] == 1.5 and type(plain[1][0]) is float
    assert isinstance(plain[0], TensorRecord) and isinstance(plain[1][1][0], TensorRecord)
    assert plain[1][1][0].shape == () and int(plain[1][1][0]) == 3
    np.testing.assert_array_equal(plain[2]["w"], np.ones(1))


def test_to_plain_keeps_unknown_objects_by_name():
    """Does an object that is not data (a module, a generator) become an Opaque record?"""
    plain = to_plain(nn.Linear(2, 2))
    assert isinstance(plain, Opaque) and plain.type_name == "Linear"
    assert to_plain(x for x in ()).type_name == "generator"


def test_tensor_record_survives_pickling():
    """Does a recorded tensor keep its values and torch dtype across processes (pickle)?"""
    plain = to_plain((torch.ones(2, dtype=torch.float16), torch.ones(1, dtype=torch.bfloat16)))
    back = pickle.loads(pickle.dumps(plain))
    assert [r.torch_dtype for r in back] == ["float16", "bfloat16"]
    np.testing.assert_array_equal(back[0], plain[0])


# ----------------------------------------------------------------------------- outcomes


def test_check_outcome_names_a_forbidden_call_first():
    """Does a forbidden call win over an error or an in-place edit in the message?"""
    out = Outcome(error="ValueError: x", error_type="ValueError", forbidden=["torch's softmax"],
                  mutated=["argument 1"])
    with pytest.raises(CheckFailed, match="^Your softmax calls torch's softmax. This exercise"):
        check_outcome(out, "Your softmax")


def test_check_outcome_explains_not_implemented():
    """Is an untouched exercise stub told to replace `raise NotImplementedError()`?"""
    out = Outcome(error="NotImplementedError", error_type="NotImplementedError")
    with pytest.raises(CheckFailed, match=r"not written yet.*raise NotImplementedError\(\)"):
        check_outcome(out, "Your attend")


def test_check_outcome_reports_errors_and_in_place_edits_with_the_case():
    """Are an exception and an in-place edit reported with the case they happened in?"""
    with pytest.raises(CheckFailed, match=r"^Your f raised ValueError: bad \(case A\)\.$"):
        check_outcome(Outcome(error="ValueError: bad", error_type="ValueError"), "Your f",
                      "case A")
    with pytest.raises(CheckFailed, match=r"changed its input \(argument 1, y\) in place \(B\)"):
        check_outcome(Outcome(value=1, mutated=["argument 1", "y"]), "Your f", "B")
    assert check_outcome(Outcome(value=3), "Your f") == 3


@pytest.mark.parametrize(("value", "match"), [
    (None, r"should return a pair `\(output, weights\)`, but returned None"),
    (np.ones(3), r"returned a single array of shape \(3,\)"),
    ((np.ones(2), np.ones(2), np.ones(2)), "returned tuple"),
    ((np.ones(2), None), r"Your attend's weights should return an array, but returned None"),
])
def test_unpack_pair_messages(value, match):
    """Is a missing, single or three-item return told what shape of answer is expected?"""
    with pytest.raises(CheckFailed, match=match):
        unpack_pair(value, "Your attend")


def test_expect_finite_says_nan_or_inf():
    """Does expect_finite say whether it found NaN or inf, and pass finite arrays?"""
    with pytest.raises(CheckFailed, match=r"contains NaN \(c\)\. hint"):
        expect_finite(np.array([1.0, np.nan, np.inf]), "Out", "c", hint="hint")
    with pytest.raises(CheckFailed, match="contains inf"):
        expect_finite(np.array([1.0, -np.inf]), "Out")
    expect_finite(np.array([1, 2]), "Out")


# ----------------------------------------------------------------------------- expect_close


WANT = np.array([0.1, 0.2, 0.7])
MISTAKES = [
    ("First mistake.", np.array([0.2, 0.2, 0.6])),
    ("Skipped mistake.", None),
    ("Second mistake.", np.array([1.0, 2.0, 7.0])),
    ("Wrong-shaped mistake.", np.ones(4)),
]


def test_expect_close_accepts_values_within_tolerance():
    """Are values within the tolerance accepted without a message?"""
    expect_close(WANT + 1e-7, WANT, "Yours", mistakes=MISTAKES)


@pytest.mark.parametrize(("got", "message"), [
    (np.array([0.2, 0.2, 0.6]), "First mistake."),
    (np.array([1.0, 2.0, 7.0]), "Second mistake."),
])
def test_expect_close_picks_the_matching_mistake(got, message):
    """Is the message of the known mistake that the answer matches the one shown?"""
    with pytest.raises(CheckFailed) as info:
        expect_close(got, WANT, "Your weights", "case", mistakes=MISTAKES)
    assert str(info.value) == f"Your weights does not match the reference (case). {message}"


def test_expect_close_checks_the_shape_before_any_mistake():
    """Does a wrong shape get the shape message even if it equals a catalogued mistake?"""
    with pytest.raises(CheckFailed, match=r"has shape \(4,\) but should have shape \(3,\)"):
        expect_close(np.ones(4), WANT, "Yours", mistakes=MISTAKES)


def test_expect_close_falls_back_to_the_largest_error():
    """Does an uncatalogued mistake get the largest error, where it is, and the hint?"""
    with pytest.raises(CheckFailed) as info:
        expect_close(np.array([0.1, 0.5, 0.7]), WANT, "Yours", "c", mistakes=MISTAKES,
                     hint="Check the sum.")
    assert str(info.value) == ("Yours does not match the reference (c): largest error 0.3 at "
                               "index (1,): yours 0.5, expected 0.2. Check the sum.")


def test_expect_close_treats_nan_as_the_largest_error():
    """Is a NaN reported as the place where the answer is furthest off?"""
    with pytest.raises(CheckFailed, match=r"largest error inf at index \(2,\): yours nan"):
        expect_close(np.array([0.1, 0.2, np.nan]), WANT, "Yours")


def test_expect_close_scalar_message_has_no_stray_space():
    """Does a wrong scalar read cleanly ('largest error 1.'), without a stray space?"""
    with pytest.raises(CheckFailed, match=r"largest error 1\.$"):
        expect_close(np.array(2.0), np.array(1.0), "Your loss")


def test_expect_shape_appends_case_and_hint():
    """Does a shape mismatch name both shapes, the case and the hint?"""
    with pytest.raises(CheckFailed, match=r"^W has shape \(2, 3\) but should have shape "
                                          r"\(3, 2\) \(c\)\. Transpose\?$"):
        expect_shape(np.ones((2, 3)), (3, 2), "W", "c", hint="Transpose?")


# ----------------------------------------------------------------------------- CheckFailed


def test_check_failed_is_an_assertion_error():
    """Does nbgrader count a CheckFailed as a failed test (an AssertionError)?"""
    assert issubclass(CheckFailed, AssertionError)
    with pytest.raises(CheckFailed, match="^msg$"):
        core.fail("msg")


def test_check_failed_renders_without_a_traceback():
    """Does _render_traceback_ give only the message, with no traceback into the autograder?"""
    lines = CheckFailed("Your softmax is off.")._render_traceback_()
    assert isinstance(lines, list) and all(isinstance(line, str) for line in lines)
    text = "\n".join(lines)
    assert "Not yet: Your softmax is off." in text and "Traceback" not in text
    assert "_core.py" not in text


def test_ipython_shows_check_failed_without_a_traceback(capsys):
    """In a notebook (IPython), is a failing check shown as one line, not a traceback?"""
    interactiveshell = pytest.importorskip("IPython.core.interactiveshell")
    shell = interactiveshell.InteractiveShell.instance()
    try:
        shell.user_ns["CheckFailed"] = CheckFailed
        result = shell.run_cell("raise CheckFailed('Your attend is off.')")
    finally:
        interactiveshell.InteractiveShell.clear_instance()
    shown = capsys.readouterr()
    assert isinstance(result.error_in_exec, CheckFailed)
    assert "Not yet: Your attend is off." in shown.out
    assert "Traceback" not in shown.out + shown.err


# ----------------------------------------------------------------------------- registry


def test_register_and_run(monkeypatch, capsys):
    """Does run record then compare, print the title on success and refuse duplicate ids?"""
    monkeypatch.setattr(core, "REGISTRY", {})
    seen = []

    def record(obj):
        return {"out": call(obj, 2)}

    def compare(rec):
        seen.append(rec)
        if check_outcome(rec["out"], "Your f") != 4:
            core.fail("Your f is not doubling.")

    core.register("demo.double", "demo: doubles", record, compare)
    with pytest.raises(ValueError, match="registered twice"):
        core.register("demo.double", "again", record, compare)
    core.run("demo.double", lambda x: 2 * x)
    assert capsys.readouterr().out == "\u2713 demo: doubles\n"
    core.run("demo.double", lambda x: 2 * x, quiet=True)
    assert capsys.readouterr().out == ""
    with pytest.raises(CheckFailed, match="not doubling"):
        core.run("demo.double", lambda x: x + 1)
    assert len(seen) == 3


def test_every_check_module_imports():
    """Do all lessons' check modules import (a broken one would only cost its own lesson)?"""
    from autograder.checks import BROKEN

    assert BROKEN == {}
