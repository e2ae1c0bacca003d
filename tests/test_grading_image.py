"""The sandbox image: what a graded learner's kernel can see, and that it records the same."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT, find_lesson, lessons
from autograder.grading import codec, image, trusted, verdict

CORE = trusted.core()
CHECKS = ROOT / "autograder" / "checks"



@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    return {n: image.build_image(find_lesson(n), folder)[0] for n in ("01", "03")}


def _in_image(path: Path, code: str) -> str:
    run = subprocess.run([sys.executable, "-E", "-s", "-c",
                          f"import sys; sys.path.insert(0, {str(path)!r})\n" + code],
                         capture_output=True, text=True, cwd=path, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_image_holds_no_compare_no_reference_no_solutions(images):
    """Does the sandbox see only the record half, with this lesson's reference withheld?"""
    path = images["01"]
    folder = path / "autograder" / "checks" / "lesson01"
    assert sorted(p.name for p in folder.iterdir()) == ["__init__.py", "cases.py"]
    checks = (folder / "cases.py").read_text()
    assert checks == (CHECKS / "lesson01" / "cases.py").read_text()  # copied, not sliced
    assert not (path / "autograder" / "checks" / "lesson01" / "verdicts.py").exists()
    in_image = {p.relative_to(path / "autograder" / "checks").as_posix()
                for p in (path / "autograder" / "checks").rglob("*.py")}
    assert not [name for name in in_image if "verdict" in name], in_image  # trusted side
    assert {"_core.py", "_modules.py", "lesson10/cases.py"} <= in_image
    assert not list(path.rglob("*.ipynb")) and not (path / "solutions").exists()
    # the fill-in-the-blanks answers stay in the grader (the record half only names them)
    from autograder.checks.lesson01 import cases, verdicts

    assert set(cases.BLANK_NAMES) == set(verdicts.BLANKS)
    assert "BLANKS" not in checks
    assert not any(repr(answer) in checks for accepted in verdicts.BLANKS.values()
                   for answer in accepted if answer not in ("softmax", "v"))
    out = _in_image(path, """
import attnlab, autograder.checks as c
assert c.__file__.startswith(sys.path[0]), c.__file__
try:
    attnlab.softmax([1.0])
except Exception as e:
    print(type(e).__name__, e)
print(c.REGISTRY["softmax.values"].compare)
""")
    assert "ReferenceWithheld the course's own softmax is withheld while lesson 01 is graded" in out
    assert "None" in out


def test_leak_panel_truth_stays_in_the_grader(tmp_path):
    """Does lesson 04's record half build the detector's test models without saying which
    of them leak (or naming them)?"""
    path, _ = image.build_image(find_lesson("04"), tmp_path)
    folder = path / "autograder" / "checks"
    checks = ((folder / "lesson04" / "cases.py") if (folder / "lesson04").is_dir()
              else (folder / "lesson04.py")).read_text()
    assert "BUILDERS" in checks and "MODELS" not in checks
    assert "tiny leak" not in checks and "peek ahead" not in checks


def test_earlier_lessons_building_blocks_stay(images):
    """Does lesson 03 keep lesson 02's attention but not its own MultiHeadAttention?"""
    out = _in_image(images["03"], """
import torch, attnlab
q = torch.ones(1, 2, 4)
print(attnlab.scaled_dot_product_attention(q, q, q)[1].shape)
for name in ("MultiHeadAttention", "split_heads", "LayerNorm"):
    try:
        getattr(attnlab, name)(4, 2)
    except Exception as e:
        print(name, type(e).__name__)
""")
    assert "torch.Size([1, 2, 2])" in out
    assert "MultiHeadAttention ReferenceWithheld" in out
    assert "split_heads ReferenceWithheld" in out and "LayerNorm ReferenceWithheld" in out


def _definitions(source: str) -> str:
    """Only the imports and definitions of a (demo) cell: no plots, no training."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    tree.body = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom,
                                                        ast.FunctionDef, ast.ClassDef))]
    return ast.unparse(tree)


def _namespace_script(lesson) -> str:
    """Python that defines a solution's answers (and what they lean on) into ``ns``."""
    nb = nbformat.read(lesson.source, as_version=4)
    sources = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or meta.get("grade"):
            continue
        sources.append(cell.source if meta.get("solution") else _definitions(cell.source))
    return f"""
import json, warnings
warnings.filterwarnings("ignore")
ns = {{}}
for src in {json.dumps(sources)}:
    try:
        exec(src, ns)
    except Exception:
        pass
"""


@pytest.mark.parametrize("graded_lesson", lessons(), ids=lambda lesson: lesson.name)
def test_image_records_equal_real_records(graded_lesson, tmp_path):
    """Does the record half in the sandbox record exactly what the full checks record?"""
    lesson = graded_lesson
    path, warnings = image.build_image(lesson, tmp_path)
    # no exercise of this lesson (or a later one) stays visible to learner code, not even
    # one the record half would like to build its inputs with
    assert warnings == []
    nb = nbformat.read(lesson.source, as_version=4)
    calls = [(cid, cell.source) for cell in nb.cells if verdict.is_test_cell(cell)
             for cid in (verdict.check_calls(cell.source) or [])]
    script = _namespace_script(lesson) + f"""
import ast
from autograder.checks import REGISTRY
from autograder.checks import _record_codec as wire
out = {{}}
for cid, src in {json.dumps(calls)}:
    call = [n for n in ast.walk(ast.parse(src.replace("### BEGIN HIDDEN TESTS", "")
            .replace("### END HIDDEN TESTS", ""))) if isinstance(n, ast.Call)
            and getattr(n.func, "id", "") == "check" and n.args[0].value == cid][0]
    obj = eval(compile(ast.Expression(call.args[1]), "<arg>", "eval"), ns)
    out[cid] = wire.encode(REGISTRY[cid].record(obj))
print(json.dumps(out))
"""
    sandboxed = json.loads(_in_image(path, script).splitlines()[-1])
    real = subprocess.run([sys.executable, "-c", script.replace(
        "from autograder.checks import _record_codec as wire",
        "from autograder.grading import codec as wire")], capture_output=True, text=True,
        cwd=ROOT, timeout=300)
    assert real.returncode == 0, real.stderr
    assert sandboxed == json.loads(real.stdout.splitlines()[-1])
    registry = trusted.load(lesson.number)
    for cid, record in sandboxed.items():
        registry[cid].compare(codec.decode(record, CORE))  # the solution passes


# ----------------------------------------------------------------------------- the boundary


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in a file, relative ones resolved."""
    package = "autograder.checks." + path.parent.name
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(parts + ([module] if module else []))
            found.append((module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
    return found


def _contract() -> dict[str, int]:
    """{kernel: first lesson whose grading may see it}, over every reference module."""
    visible: dict[str, int] = {}
    for path in sorted((ROOT / "autograder" / "reference").glob("*.py")):
        if path.name != "__init__.py":
            visible |= image.contract(ast.parse(path.read_text()), path.stem)
    return visible


def test_every_reference_kernel_says_which_lesson_it_belongs_to():
    """Does every public kernel declare its lesson next to its code (TAUGHT_IN/PROVIDED_IN)?"""
    visible = _contract()
    assert {"softmax", "MultiHeadAttention", "GPTBlock", "TinyLlama"} <= set(visible)
    assert visible["softmax"] == 2 and visible["GPTBlock"] == 7  # taught in 1, provided in 7
    with pytest.raises(image.ContractError, match="undeclared is in neither"):
        image.contract(ast.parse("TAUGHT_IN = {'a': 1}\ndef a(): pass\ndef undeclared(): pass"),
                       "made_up")


@pytest.mark.parametrize("cases", sorted(CHECKS.glob("lesson*/cases.py")),
                         ids=lambda p: p.parent.name)
def test_record_modules_import_no_verdicts_and_no_kernel_of_their_lesson(cases):
    """Does a lesson's kernel half stay on its side of the boundary: no verdicts module (its
    own or another's), no reference kernel the sandbox withholds from this lesson?"""
    lesson = int(cases.parent.name.removeprefix("lesson"))
    visible = _contract()
    for module, names in _imports(cases):
        assert not module.endswith(".verdicts") and "_verdict" not in module, \
            f"{cases.parent.name}/cases.py imports {module}"
        assert not module.startswith("autograder.grading"), module
        if module.startswith("autograder.reference") or module == "attnlab":
            withheld = [n for n in names if visible.get(n, 0) > lesson]
            assert not withheld, f"{cases.parent.name}/cases.py imports {withheld}, withheld " \
                                 f"while lesson {lesson:02d} is graded"
        if module.startswith("autograder.checks.lesson"):
            assert module.endswith(".cases"), module  # another lesson's kernel half only
            assert not any(n.startswith("_") for n in names), (module, names)
