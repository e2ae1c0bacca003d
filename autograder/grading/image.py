"""The sandbox image: the only course code a learner's kernel can see while it is graded.

For lesson N the image holds

* ``attnlab`` (unchanged: the lesson-side package), re-exporting
* ``autograder/reference`` *sliced*: the building blocks of lessons before N stay, every
  kernel of lesson N and later is replaced by a stub that raises ``ReferenceWithheld``
  (so "import the reference" and "read the reference" find nothing to copy);
* ``autograder/checks`` *sliced to its record half*: ``_core`` (the recorder), and each
  ``lessonNN`` module with only what the ``record`` functions given to ``register`` need.
  Every ``compare`` function, the mistake catalogues and anything only they use become
  stubs; they run in the trusted grader only. A generated ``checks/__init__`` defines
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

IMAGE_FORMAT = "7"
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
        try:
            if _module.ispkg:  # cases.py only: the verdicts are not in this image
                _cases = importlib.import_module(f"{__name__}.{_module.name}.cases")
                register_lesson(_module.name, _cases.RECORDS, None)
            else:
                importlib.import_module(f"{__name__}.{_module.name}")
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


def _is_register(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and (
        (isinstance(node.func, ast.Name) and node.func.id == "register")
        or (isinstance(node.func, ast.Attribute) and node.func.attr == "register"))


def _sibling(stmt: ast.stmt) -> str | None:
    """``from .lesson02 import x`` (or the absolute form): the sibling checks module."""
    if not isinstance(stmt, ast.ImportFrom) or not stmt.module:
        return None
    module = stmt.module
    if stmt.level == 1 and module.startswith("lesson"):
        return module
    if stmt.level == 0 and module.startswith("autograder.checks.lesson"):
        return module.rsplit(".", 1)[1]
    return None


def _record_half(tree: ast.Module, extra: set[str]) -> tuple[set[str], set[str]]:
    """(top-level names the record half needs, names its kept statements use)."""
    defs_and_imports = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                        ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom)
    roots = set(extra)
    for stmt in tree.body:
        if not isinstance(stmt, defs_and_imports):
            roots |= _names(stmt)  # register(...) calls, loops that register, if-blocks...
    needed = _closure(tree.body, roots)
    used: set[str] = set(roots)
    for stmt in tree.body:
        if any(n in needed for n in _defined(stmt)):
            used |= _names(stmt)
    return needed, used


def slice_checks_modules(sources: dict[str, str]) -> dict[str, str]:
    """The record half of every ``lessonNN`` checks module.

    A module keeps what the ``record`` functions it registers need; a name another lesson's
    record half imports from it is needed too (to a fixed point); imports of names only a
    compare half used are dropped, so no compare code travels in through them either.
    """
    trees: dict[str, ast.Module] = {}
    for name, source in sources.items():
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if _is_register(node):
                if len(node.args) >= 4:
                    node.args[3] = ast.Constant(None)
                node.keywords = [ast.keyword(arg=k.arg, value=ast.Constant(None))
                                 if k.arg == "compare" else k for k in node.keywords]
        trees[name] = tree
    extra: dict[str, set[str]] = {name: set() for name in trees}
    changed = True
    while changed:
        changed = False
        for name, tree in trees.items():
            _, used = _record_half(tree, extra[name])
            for stmt in tree.body:
                sibling = _sibling(stmt)
                if sibling not in trees:
                    continue
                for alias in stmt.names:
                    local = alias.asname or alias.name
                    wanted = alias.name == "*" or local in used
                    if wanted and alias.name not in extra[sibling]:
                        extra[sibling].add(alias.name)
                        changed = True
    out: dict[str, str] = {}
    for name, tree in trees.items():
        needed, used = _record_half(tree, extra[name])
        body: list[ast.stmt] = []
        for stmt in tree.body:
            names = _defined(stmt)
            sibling = _sibling(stmt)
            if sibling in trees:
                stmt.names = [a for a in stmt.names if a.name == "*" or
                              (a.asname or a.name) in used]
                if stmt.names:
                    body.append(stmt)
            elif not names or any(n in needed for n in names):
                body.append(stmt)
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                body.append(_stub(stmt, "RuntimeError('the compare half of the checks runs "
                                        "in the grader, not in this kernel')"))
            # unneeded assignments (mistake catalogues, messages) are dropped
        tree.body = body
        out[name] = ast.unparse(ast.fix_missing_locations(tree)) + "\n"
    return out


def _calls_outside_guard(tree: ast.Module, names: set[str]) -> set[str]:
    """Which of ``names`` the module uses other than as a ``Guard(...)`` kernel (where only
    the code object's identity matters, so the stub will do)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id == "Guard":
            return
        if isinstance(node, ast.Name) and node.id in names:
            found.add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for stmt in tree.body:
        if not isinstance(stmt, (ast.Import, ast.ImportFrom)):
            visit(stmt)
    return found


def reference_used_by_records(sliced: dict[str, str], reference_init: str) -> \
        dict[str, dict[str, list[str]]]:
    """{reference module: {kernel: [checks modules whose record half calls it]}}."""
    where: dict[str, str] = {}
    for stmt in ast.parse(reference_init).body:
        if isinstance(stmt, ast.ImportFrom) and stmt.level == 1 and stmt.module:
            for alias in stmt.names:
                where[alias.name] = stmt.module
    used: dict[str, dict[str, list[str]]] = {}
    for checks_module, text in sliced.items():
        tree = ast.parse(text)
        local: dict[str, tuple[str, str]] = {}
        for stmt in tree.body:
            if isinstance(stmt, ast.ImportFrom) and stmt.level == 0 and stmt.module and \
                    stmt.module.startswith("autograder.reference"):
                for alias in stmt.names:
                    stem = stmt.module.rsplit(".", 1)[1] if stmt.module.count(".") > 1 \
                        else where.get(alias.name)
                    if stem:
                        local[alias.asname or alias.name] = (stem, alias.name)
        for name in _calls_outside_guard(tree, set(local)):
            stem, kernel = local[name]
            used.setdefault(stem, {}).setdefault(kernel, []).append(checks_module)
    return used


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


def slice_reference(source: str, module: str, lesson: int,
                    keep: set[str] = frozenset()) -> tuple[str, list[str]]:
    """A reference module with the kernels of ``lesson`` and later ones withheld (except
    ``keep``: those the checks' record half itself calls to build its inputs)."""
    tree = ast.parse(source)
    body = tree.body
    visible_from = contract(tree, module)

    def lesson_of(name: str) -> int:
        return visible_from.get(name, 100) - 1

    defs = [s for s in body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef,
                                              ast.ClassDef))]
    kept = {s.name for s in defs if lesson_of(s.name) < lesson or s.name in keep}
    needed = _closure(body, set().union(*(_names(s) for s in defs if s.name in kept))
                      if kept else set())
    exposed = sorted(n for n in needed | set(keep) if lesson_of(n) >= lesson
                     and any(s.name == n for s in defs) and (n in keep or n not in kept))
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
    # TRANSITION: _verdict travels while _core still re-exports it for unsplit lessons
    shutil.copyfile(src / "checks" / "_verdict.py",
                    tmp / "autograder" / "checks" / "_verdict.py")
    for package in sorted(p for p in (src / "checks").glob("lesson*") if p.is_dir()):
        # the kernel half, copied as it is: __init__ (a docstring) and cases.py
        (tmp / "autograder" / "checks" / package.name).mkdir()
        for name in ("__init__.py", "cases.py"):
            if (package / name).exists():
                shutil.copyfile(package / name, tmp / "autograder" / "checks" / package.name / name)
    sources: dict[str, str] = {}
    for path in sorted((src / "checks").glob("lesson*.py")):
        text = path.read_text(encoding="utf-8")
        try:
            ast.parse(text)
            sources[path.stem] = text
        except SyntaxError as exc:
            (tmp / "autograder" / "checks" / path.name).write_text(
                f"raise ImportError({f'{path.name} does not parse: {exc}'!r})\n")
            warnings.append(f"checks/{path.name} does not parse ({exc.msg}, line "
                            f"{exc.lineno}): its checks are unavailable")
    sliced = slice_checks_modules(sources)
    for name, text in sliced.items():
        (tmp / "autograder" / "checks" / f"{name}.py").write_text(text)
    own = {n: t for n, t in sliced.items() if n == f"lesson{lesson.number}"}
    try:
        used = reference_used_by_records(own, (src / "reference" / "__init__.py").read_text())
    except SyntaxError:
        used = {}
    for path in sorted((src / "reference").glob("*.py")):
        if path.name == "__init__.py":
            shutil.copyfile(path, tmp / "autograder" / "reference" / path.name)
            continue
        keep = used.get(path.stem, {})
        try:
            text, exposed = slice_reference(path.read_text(encoding="utf-8"), path.stem,
                                            number, set(keep))
        except SyntaxError:  # broken for everyone alike: copy it as it is
            shutil.copyfile(path, tmp / "autograder" / "reference" / path.name)
            continue
        (tmp / "autograder" / "reference" / path.name).write_text(text)
        for name in exposed:
            why = (f"checks/{keep[name][0]}.py builds its inputs with it" if name in keep
                   else "a kernel that stays visible uses it")
            warnings.append(f"the course's {name} ({path.stem}.py) stays visible to learner "
                            f"code while lesson {lesson.number} is graded: {why}")
    shutil.copytree(ROOT / "attnlab", tmp / "attnlab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copyfile(HERE / "zygote.py", tmp / "_attnlab_zygote.py")
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
