"""Verdicts the learner cannot forge: compare the kernel's records in the trusted grader.

A test cell of an Attention Lab lesson only calls ``check("<id>", obj)``. Under ``grade``
that call, inside the sandboxed kernel, only *records* (runs the learner's code on the
check's fixed inputs and emits the outputs as plain data; see ``image.py``). Here, in the
grader's own process, each test cell's source (the instructor's, restored by nbgrader's
OverwriteCells) says which checks must have run; their records are decoded (JSON only)
and given to the real ``compare`` functions, which rebuild the cases from the same seeds
and run the reference. The cell's outputs are then replaced by the verdict: one line per
passed check, or one error whose message is the check's, with no traceback. Nothing the
kernel printed in a test cell survives, so monkeypatched assert helpers, fake "passed"
lines, forged errors and warnings on stderr all change nothing.

A test cell that contains anything else than ``check`` calls is left to nbgrader's usual
rule (its verdict then comes from the learner's kernel) and reported as such.

What a record can and cannot carry. A learner can make their kernel emit any record at
all, so a record is only ever *data to compare*: to pass, it must hold the reference's
outputs on the check's fixed inputs, and nothing in the sandbox can compute those except a
correct implementation (the reference, the compare code and the mistake catalogue are not
there; see image.py). Two facts do come from inside the kernel: whether the learner's code
called a forbidden implementation (the checks' Guard, which watches Python calls and
torch's function and operator dispatch), and whether the recorder itself was tampered with (a
snapshot of its functions, sys.setprofile and key builtins, taken before any learner code,
is compared at every check; a difference fails the test). A learner who rewrites the
recorder *and* forges its records can hide a forbidden call; they cannot fake correct
values they did not compute.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import nbformat

from . import codec

ANSI = re.compile(r"\x1b\[[0-9;]*m")
HIDDEN = re.compile(r"^\s*#+\s*(BEGIN|END) HIDDEN TESTS\s*$", re.MULTILINE)


@dataclass
class CellVerdict:
    grade_id: str
    trusted: bool
    passed: bool | None
    message: str
    checks: list[str] = field(default_factory=list)


def check_calls(source: str) -> list[str] | None:
    """The check ids a test cell runs, in order; None if the cell does anything else."""
    try:
        tree = ast.parse(HIDDEN.sub("", source))
    except SyntaxError:
        return None
    ids: list[str] = []
    for stmt in tree.body:
        call = stmt.value if isinstance(stmt, ast.Expr) else None
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "check" and len(call.args) == 2 and not call.keywords
                and isinstance(call.args[0], ast.Constant)
                and isinstance(call.args[0].value, str)):
            return None
        ids.append(call.args[0].value)
    return ids or None


def is_test_cell(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return (cell.get("cell_type") == "code" and bool(meta.get("grade"))
            and not meta.get("solution"))


def _error(ename: str, message: str):
    return nbformat.v4.new_output("error", ename=ename, evalue=message,
                                  traceback=[f"\x1b[0;31mNot yet: {message}\x1b[0m"])


def kernel_error(outputs) -> str | None:
    """What went wrong in the kernel, as one line a learner can act on (or None)."""
    for out in outputs:
        if out.get("output_type") != "error":
            continue
        ename, evalue = out.get("ename", ""), ANSI.sub("", str(out.get("evalue", "")))
        if ename in ("NotRun", "DeadKernel", "CellTimeoutError"):
            return evalue
        if ename == "NameError":
            return (f"{ename}: {evalue} (did you run, rename or delete the cell that "
                    "defines it?)")
        if ename == "NotImplementedError":
            return "not answered yet (the exercise still raises NotImplementedError)"
        return f"{ename}: {evalue}".strip().rstrip(":")
    return None


def judge_cell(cell, registry, types) -> CellVerdict:
    """Replace a test cell's outputs with the trusted verdict (in place)."""
    grade_id = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
    ids = check_calls(cell.source)
    if ids is None:
        return CellVerdict(grade_id, False, None, "not a check-only test cell: its verdict "
                                                  "comes from the learner's kernel")
    records: dict[str, list[dict]] = {}
    for out in cell.get("outputs", []):
        data = out.get("data", {}) if out.get("output_type") == "display_data" else {}
        payload = data.get(codec.MIME)
        if isinstance(payload, dict) and isinstance(payload.get("check"), str):
            records.setdefault(payload["check"], []).append(payload)
    problem = kernel_error(cell.get("outputs", []))
    passed_titles: list[str] = []
    failure: str | None = None
    for check_id in ids:
        got = records.get(check_id, [])
        if len(got) > 1:
            failure = ("more than one result was recorded for one check of this cell: the "
                       "test cell's output was tampered with")
            break
        if not got:
            failure = problem or ("this test did not run (did your code redefine `check`, "
                                  "or stop the kernel?)")
            break
        payload = got[0]
        if payload.get("tampered"):
            failure = ("the checks were changed in your kernel before this test ran ("
                       f"{', '.join(map(str, payload['tampered'][:3]))}), so it cannot be "
                       "trusted: do not modify autograder.checks, sys.setprofile or builtins")
            break
        if "record" not in payload:
            failure = f"the check could not run your code: {payload.get('error', '?')}"
            break
        if check_id not in registry:
            failure = "this cell runs a check the grader does not know (out-of-date lesson?)"
            break
        try:
            record = codec.decode(payload["record"], types)
        except (codec.RecordError, ValueError, TypeError) as exc:
            failure = f"the result recorded for this test could not be read ({exc})"
            break
        try:
            registry[check_id].compare(record)
        except types.CheckFailed as exc:
            failure = str(exc)
            break
        except Exception as exc:  # a forged or malformed record trips the comparison
            failure = ("the result recorded for this test is not what the check expects "
                       f"({type(exc).__name__}); did your code change the checks?")
            break
        passed_titles.append(registry[check_id].title)
    if failure is None:
        cell.outputs = [nbformat.v4.new_output(
            "stream", name="stdout", text="".join(f"\u2713 {t}\n" for t in passed_titles))]
        return CellVerdict(grade_id, True, True, "; ".join(passed_titles), ids)
    outputs = []
    if passed_titles:
        outputs.append(nbformat.v4.new_output(
            "stream", name="stdout", text="".join(f"\u2713 {t}\n" for t in passed_titles)))
    outputs.append(_error("CheckFailed", failure))
    cell.outputs = outputs
    return CellVerdict(grade_id, True, False, failure, ids)


def judge_notebook(nb, lesson_number: str | None = None) -> list[CellVerdict]:
    """Judge every test cell of an executed notebook (in place)."""
    from . import trusted

    registry = trusted.load(lesson_number)
    wanted = {i for cell in nb.cells if is_test_cell(cell) for i in check_calls(cell.source) or []}
    if wanted - set(registry):
        registry = trusted.load(lesson_number, everything=True)
    return [judge_cell(cell, registry, trusted.core()) for cell in nb.cells
            if is_test_cell(cell)]
