"""The sandbox image: the only course code a learner's kernel can see while it is graded.

For lesson N the image holds

* ``attnlab`` (unchanged: the lesson-side package), re-exporting
* ``autograder/reference`` *sliced*: the building blocks of lessons before N stay, every
  kernel of lesson N and later (as each module's ``TAUGHT_IN`` / ``PROVIDED_IN`` declare)
  is replaced by a stub that raises ``ReferenceWithheld`` (so "import the reference" and
  "read the reference" find nothing to copy);
* ``autograder/checks``, the kernel half only, *copied* file by file: the kernel toolkits
  (``checks/_*.py`` whose name does not say "verdict") and each lesson's ``__init__.py``
  and ``cases.py``. No ``verdicts.py``, no trusted toolkit: they run in the grader only.
  A generated ``checks/__init__`` registers the record halves and defines
  ``check(id, obj)`` as "record, then emit the record as a display_data output";
* the fork server (``_attnlab_zygote.py``) and its confinement code.

Not in the image: solutions/, the source notebooks, the gradebook, the rest of the
autograder. Images are rebuilt when any input file changes (content hash).
"""

from __future__ import annotations

import ast
import hashlib
import shutil
import tempfile
from pathlib import Path

from ..course import ROOT, Lesson

IMAGE_FORMAT = "8"
HERE = Path(__file__).resolve().parent

WITHHELD_HELPER = '''

class ReferenceWithheld(RuntimeError):
    """The course's own version of an exercise is not available while it is graded."""


def _withheld(name):
    return ReferenceWithheld(
        f"the course's own {name} is withheld while lesson {_GRADED_LESSON:02d} is graded: it "
        "is what this lesson (or a later one) asks you to write, so it cannot stand in for "
        "yours. Outside grading it works as usual.")
'''

CHECKS_INIT = '''"""Attention Lab checks, record half only: this kernel is being graded.

``check(id, obj)`` runs the check's ``record`` on your code (fixed inputs, plain data out)
and hands the record to the grader, which compares it with the reference outside this
process. Nothing here knows the right answers.
"""

import importlib
import pkgutil

from . import _record_codec as _codec
from ._core import REGISTRY, CheckFailed, register_lesson

for _module in pkgutil.iter_modules(__path__):
    if _module.name.startswith("lesson"):
        try:  # cases.py only: the verdicts are not in this image
            _cases = importlib.import_module(f"{__name__}.{_module.name}.cases")
            register_lesson(_module.name, _cases.RECORDS, None)
        except Exception:  # another lesson's checks must never break this one
            pass


_WATCHED_BUILTINS = ("getattr", "setattr", "hasattr", "isinstance", "issubclass", "type",
                     "len", "list", "dict", "tuple", "set", "str", "repr", "id", "iter",
                     "next", "zip", "range", "any", "all", "sorted", "callable", "vars",
                     "object", "super", "Exception", "BaseException")
_SNAPSHOT = {}


def _fingerprint():
    """Identity of every function and class of the recorder (and what its Guard relies on).
    Data is left out (a check may cache), except the lists of forbidden implementations."""
    import builtins
    import sys

    seen = {}
    for name, module in sorted(sys.modules.items()):
        if name != __name__ and not name.startswith(__name__ + "."):
            continue
        for key, value in list(vars(module).items()):
            if key.startswith("__") or not (callable(value) or isinstance(value, type)):
                continue
            seen[f"{name}.{key}"] = id(value)
            if isinstance(value, type) and value.__module__ == name:
                for attr, member in list(vars(value).items()):
                    if callable(member) or isinstance(member, (staticmethod, classmethod,
                                                               property)):
                        seen[f"{name}.{key}.{attr}"] = id(member)
    core = sys.modules.get(__name__ + "._core")
    for key in ("FORBIDDEN_C_NAMES", "FORBIDDEN_PY", "HUMAN_NAMES"):
        seen[f"_core.{key}"] = repr(getattr(core, key, None))
    seen["REGISTRY"] = repr(sorted((k, id(v), id(v.record)) for k, v in REGISTRY.items()))
    for name in ("setprofile", "getprofile", "settrace", "gettrace"):
        seen[f"sys.{name}"] = id(getattr(sys, name, None))
    for name in _WATCHED_BUILTINS:
        seen[f"builtins.{name}"] = id(getattr(builtins, name, None))
    return seen


def snapshot():
    """Taken by the kernel before any learner code runs."""
    _SNAPSHOT.clear()
    _SNAPSHOT.update(_fingerprint())


def _tampered():
    if not _SNAPSHOT:
        return []
    now = _fingerprint()
    return sorted(k for k, v in _SNAPSHOT.items() if now.get(k) != v)[:10]


def check(check_id, obj):
    """Record your code's outputs for the grader (it compares them with the reference)."""
    from IPython.display import publish_display_data

    changed = _tampered()
    if changed:
        payload = {"check": str(check_id)[:100], "tampered": changed}
    elif not isinstance(check_id, str) or check_id not in REGISTRY:
        payload = {"check": str(check_id)[:100], "error": "unknown check"}
    else:
        try:
            payload = {"check": check_id,
                       "record": _codec.encode(REGISTRY[check_id].record(obj))}
        except Exception as exc:
            payload = {"check": check_id,
                       "error": f"{type(exc).__name__}: {exc}".strip()[:500]}
    publish_display_data({_codec.MIME: payload,
                          "text/plain": f"(check {check_id!r}: recorded for grading)"})


__all__ = ["REGISTRY", "CheckFailed", "check"]
'''


# ----------------------------------------------------------------------------- slicing


def _names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _defined(stmt: ast.stmt) -> list[str]:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [stmt.name]
    if isinstance(stmt, ast.Assign):
        return [n.id for t in stmt.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(stmt, (ast.AnnAssign, ast.AugAssign)) and isinstance(stmt.target, ast.Name):
        return [stmt.target.id]
    return []


def _stub(stmt: ast.stmt, message: str) -> ast.stmt:
    """A function or class of the same name whose use raises."""
    if isinstance(stmt, ast.ClassDef):
        methods = [m.name for m in stmt.body
                   if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        code = f"class {stmt.name}:\n"
        for name in dict.fromkeys(["__init__", *methods]):  # same names, e.g. for Guard
            code += f"    def {name}(self, *args, **kwargs):\n        raise {message}\n"
    else:
        code = f"def {stmt.name}(*args, **kwargs):\n    raise {message}\n"
    return ast.parse(code).body[0]


def _closure(statements: list[ast.stmt], roots: set[str]) -> set[str]:
    """Top-level names reachable from ``roots`` through definitions and assignments."""
    by_name: dict[str, list[ast.stmt]] = {}
    for stmt in statements:
        for name in _defined(stmt):
            by_name.setdefault(name, []).append(stmt)
    needed, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in needed or name not in by_name:
            continue
        needed.add(name)
        for stmt in by_name[name]:
            todo.extend(_names(stmt) - needed)
    return needed


class ContractError(ValueError):
    """A reference module does not say which lesson each of its kernels belongs to."""


def _declared(tree: ast.Module, name: str) -> dict[str, int]:
    for stmt in tree.body:
        if isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return dict(ast.literal_eval(stmt.value))
    return {}


def contract(tree: ast.Module, module: str) -> dict[str, int]:
    """{kernel: the first lesson whose grading may see it}, from the module's own TAUGHT_IN
    (an exercise: visible after its lesson) and PROVIDED_IN (a ready-made block: visible from
    its lesson on). A private helper goes with the module's earliest lesson (and is kept
    anyway when a visible kernel needs it); a public name declared in neither is an error."""
    taught, provided = _declared(tree, "TAUGHT_IN"), _declared(tree, "PROVIDED_IN")
    visible = {name: n + 1 for name, n in taught.items()} | provided
    earliest = min([*taught.values(), *provided.values()], default=99)
    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                stmt.name not in visible:
            if not stmt.name.startswith("_"):
                raise ContractError(f"autograder/reference/{module}.py: {stmt.name} is in "
                                    "neither TAUGHT_IN nor PROVIDED_IN; say which lesson it "
                                    "belongs to")
            visible[stmt.name] = earliest + 1
    return visible


def slice_reference(source: str, module: str, lesson: int) -> tuple[str, list[str]]:
    """A reference module with the kernels of ``lesson`` and later ones withheld; also the
    withheld kernels a visible one needs (so they stay visible: a warning)."""
    tree = ast.parse(source)
    body = tree.body
    visible_from = contract(tree, module)

    def lesson_of(name: str) -> int:
        return visible_from.get(name, 100) - 1

    defs = [s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                              ast.ClassDef))]
    kept = {s.name for s in defs if lesson_of(s.name) < lesson}
    needed = _closure(body, set().union(*(_names(s) for s in defs if s.name in kept))
                      if kept else set())
    exposed = sorted(n for n in needed if lesson_of(n) >= lesson and n not in kept
                     and any(s.name == n for s in defs))
    kept |= needed
    out: list[ast.stmt] = []
    insert_at = 0
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                and stmt.name not in kept:
            out.append(_stub(stmt, f"_withheld({stmt.name!r})"))
        else:
            out.append(stmt)
        if (isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__") or (
                not out[:-1] and isinstance(stmt, ast.Expr)
                and isinstance(stmt.value, ast.Constant)):
            insert_at = len(out)
    helper = ast.parse(f"_GRADED_LESSON = {lesson}\n" + WITHHELD_HELPER).body
    out[insert_at:insert_at] = helper
    tree.body = out
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n", exposed


# ----------------------------------------------------------------------------- building


def _inputs() -> list[Path]:
    files = sorted((ROOT / "autograder" / "checks").rglob("*.py"))
    files += sorted((ROOT / "autograder" / "reference").glob("*.py"))
    files += sorted(p for p in (ROOT / "attnlab").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    files += [ROOT / "autograder" / "__init__.py", HERE / "codec.py", HERE / "zygote.py",
              HERE / "sandbox.py", HERE / "image.py"]
    return files


def image_key(lesson: Lesson) -> str:
    digest = hashlib.sha256(f"{IMAGE_FORMAT}|{lesson.name}".encode())
    for path in _inputs():
        digest.update(str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name)
                      .encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_image(lesson: Lesson, images: Path) -> tuple[Path, list[str]]:
    """Build (or reuse) the image for ``lesson`` under ``images``; return it and warnings."""
    key = image_key(lesson)
    dest = images / f"{lesson.name}-{key}"
    warnings_file = dest / "WARNINGS"
    if (dest / ".complete").exists():
        return dest, [w for w in warnings_file.read_text().splitlines() if w] \
            if warnings_file.exists() else []
    images.mkdir(parents=True, exist_ok=True)
    for old in images.glob(f"{lesson.name}-*"):
        shutil.rmtree(old, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=images))
    warnings: list[str] = []
    number = int(lesson.number)
    src = ROOT / "autograder"
    (tmp / "autograder" / "checks").mkdir(parents=True)
    (tmp / "autograder" / "reference").mkdir(parents=True)
    shutil.copyfile(src / "__init__.py", tmp / "autograder" / "__init__.py")
    # the kernel-side toolkits: every checks/_*.py except the trusted ones, which say
    # "verdict" in their name (_verdict.py, _module_verdicts.py, ...)
    for toolkit in sorted((src / "checks").glob("_*.py")):
        if "verdict" not in toolkit.name and toolkit.name != "__init__.py":
            shutil.copyfile(toolkit, tmp / "autograder" / "checks" / toolkit.name)
    shutil.copyfile(HERE / "codec.py", tmp / "autograder" / "checks" / "_record_codec.py")
    (tmp / "autograder" / "checks" / "__init__.py").write_text(CHECKS_INIT)
    for package in sorted(p for p in (src / "checks").glob("lesson*") if p.is_dir()):
        # the kernel half, copied as it is: __init__ (a docstring) and cases.py
        (tmp / "autograder" / "checks" / package.name).mkdir()
        for name in ("__init__.py", "cases.py"):
            if (package / name).exists():
                shutil.copyfile(package / name, tmp / "autograder" / "checks" / package.name / name)
    for path in sorted((src / "reference").glob("*.py")):
        if path.name == "__init__.py":
            shutil.copyfile(path, tmp / "autograder" / "reference" / path.name)
            continue
        try:
            text, exposed = slice_reference(path.read_text(encoding="utf-8"), path.stem,
                                            number)
        except SyntaxError:  # broken for everyone alike: copy it as it is
            shutil.copyfile(path, tmp / "autograder" / "reference" / path.name)
            continue
        (tmp / "autograder" / "reference" / path.name).write_text(text)
        for name in exposed:
            warnings.append(f"the course's {name} ({path.stem}.py) stays visible to learner "
                            f"code while lesson {lesson.number} is graded: a kernel that "
                            "stays visible uses it")
    shutil.copytree(ROOT / "attnlab", tmp / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(HERE / "zygote.py", tmp / "_attnlab_zygote.py")
    (tmp / "LESSON").write_text(lesson.number)  # the fork server warms what it computes
    shutil.copyfile(HERE / "sandbox.py", tmp / "_attnlab_sandbox.py")
    (tmp / "WARNINGS").write_text("\n".join(warnings))
    (tmp / ".complete").write_text(key)
    for path in tmp.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    tmp.chmod(0o755)
    try:
        tmp.rename(dest)
    except OSError:  # a concurrent run built it first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest, warnings
