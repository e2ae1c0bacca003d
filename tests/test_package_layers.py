"""The packages' layers: ``attnlab`` (the lesson side) may import the grader's reference, never
the other way round (issue 13: no package cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from autograder.course import ROOT

AUTOGRADER = ROOT / "autograder"
IMPORTERS = ("import_module", "__import__")  # importlib.import_module("x"), __import__("x")


def _is_attnlab(module: str) -> bool:
    return module == "attnlab" or module.startswith("attnlab.")


def attnlab_imports(source: str) -> list[tuple[int, str]]:
    """(line, module) of every import of attnlab in a Python source: import statements at any
    depth (inside functions too), and import_module / __import__ of a literal name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if _is_attnlab(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                _is_attnlab(node.module):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and node.args and \
                isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str) \
                and _is_attnlab(node.args[0].value):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in IMPORTERS:
                found.append((node.lineno, node.args[0].value))
    return found


def test_the_detector_sees_every_form_of_import():
    """Does the detector find each way of importing attnlab (so the test below can fail)?"""
    source = ("import attnlab\n"
              "import attnlab.minilm as m\n"
              "from attnlab import softmax\n"
              "from attnlab.minilm import tokenize\n"
              "def f():\n"
              "    import importlib\n"
              "    importlib.import_module('attnlab.tasks')\n"
              "    __import__('attnlab')\n"
              "from . import attnlab_like\n"
              "import attnlabs\n"
              "x = 'attnlab'\n")
    assert [line for line, _ in attnlab_imports(source)] == [1, 2, 3, 4, 7, 8]


@pytest.mark.parametrize("path", sorted(AUTOGRADER.rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_autograder_never_imports_attnlab(path: Path):
    """Does this grader file stay below the lesson side (no import of attnlab)?"""
    found = attnlab_imports(path.read_text(encoding="utf-8"))
    assert not found, (f"{path.relative_to(ROOT)} imports {', '.join(m for _, m in found)} "
                       f"(line {found[0][0]}): the grader must not depend on the lesson-side "
                       "package; import from autograder.reference instead")
