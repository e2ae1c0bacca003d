"""Is lessons/ exactly what nbgrader makes of solutions/, and does drift fail loudly?"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import subprocess
import sys

import nbformat
import pytest

from autograder.build import build
from autograder.course import ROOT


def test_lessons_are_in_sync_with_solutions():
    """Does `python -m autograder build --check` pass on the repository as committed?"""
    result = subprocess.run([sys.executable, "-m", "autograder", "build", "--check"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_edited_solution_makes_lessons_stale(course_copy):
    """Does editing a solution make build --check name the stale release, and build fix it?"""
    lesson = sorted((course_copy / "solutions").glob("[0-9][0-9]_*"))[0]
    path = lesson / f"{lesson.name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[0].source += "\n\nAn extra sentence."
    nbformat.write(nb, path)
    stale = build(check=True)
    assert f"lessons/{lesson.name}/{lesson.name}.ipynb" in stale
    build()
    assert build(check=True) == []


def test_stray_release_folder_is_reported(course_copy):
    """Is a folder in lessons/ with no source in solutions/ reported as stale?"""
    (course_copy / "lessons" / "99_orphan").mkdir()
    assert any("99_orphan" in path for path in build(check=True))


def test_outputs_in_a_solution_are_reported(course_copy):
    """Does a solution notebook saved with outputs fail the check (git stores none)?"""
    lesson = sorted((course_copy / "solutions").glob("[0-9][0-9]_*"))[0]
    path = lesson / f"{lesson.name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    code = next(c for c in nb.cells if c.cell_type == "code")
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="hello\n")]
    code.execution_count = 3
    nbformat.write(nb, path)
    assert f"solutions/{lesson.name}/{lesson.name}.ipynb" in build(check=True)


def test_build_is_deterministic(course_copy):
    """Does building twice give byte-identical notebooks (stable cell ids, no timestamps)?"""
    lesson = sorted((course_copy / "lessons").glob("[0-9][0-9]_*"))[0]
    path = lesson / f"{lesson.name}.ipynb"
    path.unlink()
    build()
    first = path.read_bytes()
    path.unlink()
    build()
    assert path.read_bytes() == first


def test_release_has_no_hidden_tests_or_solutions(lesson):
    """Does the learner release keep hidden tests, solutions and rubrics out?"""
    text = lesson.release.read_text(encoding="utf-8")
    for marker in ("BEGIN HIDDEN TESTS", "BEGIN SOLUTION", "Rubric", ".hidden\""):
        assert marker not in text, f"{marker!r} leaked into {lesson.release}"
    source = json.loads(lesson.source.read_text(encoding="utf-8"))
    hidden_calls = [line for c in source["cells"] for line in "".join(c["source"]).splitlines()
                    if "check(" in line and "hidden" in line]
    for line in hidden_calls:
        assert line.strip() not in text


def test_solutions_are_stored_clean(lesson):
    """Are solution notebooks stored without outputs, counts or widget state, with lesson ids?"""
    nb = json.loads(lesson.source.read_text(encoding="utf-8"))
    assert nb["metadata"]["attnlab"]["lesson"] == lesson.name
    assert "widgets" not in nb["metadata"]
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


def test_every_lesson_ends_with_the_self_check(lesson):
    """Does each lesson's last cell run the self-check on the saved notebook?"""
    nb = nbformat.read(lesson.release, as_version=4)
    assert f'self_check("{lesson.name}")' in nb.cells[-1].source


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _third_party_imports(folder) -> dict[str, str]:
    """Top-level modules the folder's code imports that are neither stdlib nor ours."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.py")):
        siblings = {p.stem for p in path.parent.glob("*.py")}
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in (name.split(".")[0] for name in names):
                if top in sys.stdlib_module_names or top in ("autograder", "attnlab") or \
                        top in siblings or top.startswith("_"):  # _x: copied into the sandbox
                    continue
                found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_direct_imports_are_declared_dependencies():
    """Is every package that autograder/ and attnlab/ import a declared runtime dependency?"""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {_normalised(re.split(r"[<>=!~;\[ ]", dep)[0]) for dep in project["dependencies"]}
    dists = importlib.metadata.packages_distributions()
    imports = {**_third_party_imports(ROOT / "autograder"),
               **_third_party_imports(ROOT / "attnlab")}
    undeclared = [f"{module} ({where})" for module, where in sorted(imports.items())
                  if not {_normalised(d) for d in dists.get(module, [module])} & declared]
    assert not undeclared, "imported but not in pyproject.toml's dependencies: " + \
        ", ".join(undeclared)
