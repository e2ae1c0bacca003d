"""The adversarial class: one learner per way to break (or cheat) a grading run.

Each entry: learner id -> (how to write the submission, exact expected autograded score out
of 8, a phrase the run's report or the learner's verdicts must contain (or None)).
Lesson 01: softmax_values 2, softmax_stable 1, attend_values 2, attend_retrieval 1,
blanks_format 0.5, blanks_answers 1.5.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from .submissions import LESSON, notebook

ROOT = Path(__file__).resolve().parents[2]

ZEROS = {
    "softmax": "def softmax(x, axis=-1):\n    return np.zeros_like(x)\n",
    "attend": "def attend(query, keys, values):\n"
              "    return np.zeros(values.shape[1]), np.zeros(len(keys))\n",
}

PATCH_ALLCLOSE = """
np.allclose = lambda *a, **k: True
np.isclose = lambda a, b, *r, **k: np.ones(np.shape(a), dtype=bool)
np.array_equal = lambda *a, **k: True
np.testing.assert_allclose = lambda *a, **k: None
"""

PATCH_TORCH = """
import torch
torch.allclose = lambda *a, **k: True
torch.testing.assert_close = lambda *a, **k: None
torch.equal = lambda *a, **k: True
"""

PATCH_CHECKS = """
import autograder.checks as _C
import autograder.checks._core as _K
_K.fail = lambda message: None
_K.expect_close = lambda *a, **k: None
_K.CheckFailed = type("NeverRaised", (Exception,), {})
_K.run = lambda *a, **k: print("\\u2713 passed")
for _c in _K.REGISTRY.values():
    _c.compare = lambda rec: None
def check(check_id, obj):
    print("\\u2713", check_id, "passed")
_C.check = check
"""

PATCH_BUILTINS = """
import builtins
builtins.AssertionError = type("NeverRaised", (Exception,), {})
builtins.all = lambda *a, **k: True
builtins.any = lambda *a, **k: False
builtins.abs = lambda x: 0
"""

FORGE = """
from IPython.display import publish_display_data as _publish
import autograder.checks as _C
_real_check = _C.check
_MIME = "application/vnd.attnlab.record+json"

def _uniform(shape):
    n = shape[-1] if shape else 1
    return {"__array__": {"dtype": "<f8", "shape": list(shape),
            "b64": __import__("base64").b64encode((np.ones(shape) / n).tobytes()).decode()}}

def check(check_id, obj):
    if check_id.startswith("blanks"):
        return _real_check(check_id, obj)
    print("\\u2713", check_id, "passed")
    fake = {"__dict__": [["a vector of 4 scores", {"__outcome__": {
        "value": _uniform((4,)), "error": None, "error_type": None,
        "forbidden": [], "mutated": []}}]]}
    _publish({_MIME: {"check": check_id, "record": fake}})
"""

DUPLICATE = """
from IPython.display import publish_display_data as _publish
import autograder.checks as _C
_real_check = _C.check

def check(check_id, obj):
    _real_check(check_id, obj)
    _publish({"application/vnd.attnlab.record+json": {"check": check_id, "record": None}})
"""

IMPORT_REFERENCE = {
    "softmax": "from attnlab import softmax\n",
}

READ_REFERENCE = {
    "softmax": '''import inspect, os
import attnlab
_found = []
for _p in ("{root}/autograder/reference/retrieval.py", "{root}/solutions"):
    if os.path.exists(_p):
        _found.append(_p)
try:
    _src = inspect.getsource(attnlab.softmax)
    exec(_src)  # the course's own softmax, copied
except Exception as _e:
    _found.append(repr(_e))
try:  # the verdicts (mistake catalogue, reference calls) are not in the sandbox at all
    from autograder.checks.lesson01.verdicts import softmax_mistakes
    _found.append(repr(softmax_mistakes(np.ones(3), -1)))
except Exception as _e:
    _found.append(repr(_e))
if "softmax" not in globals() or softmax.__module__ != "__main__":
    def softmax(x, axis=-1):
        return np.zeros_like(x)
''',
}

STEAL = '''import glob, os, sqlite3
COURSE = {course!r}
_leaks = []
for _pattern in (COURSE + "/gradebook.db", COURSE + "/solutions/**/*.ipynb",
                 COURSE + "/submitted/*/*/*.ipynb", COURSE + "/autograded/**/*",
                 "/root/*", "../../../gradebook.db", "/home/*/", "/proc/1/environ"):
    for _p in glob.glob(_pattern, recursive=True):
        try:
            with open(_p, "rb") as _fh:
                _fh.read(10)
            _leaks.append(_p)
        except (OSError, IsADirectoryError):
            pass
try:
    _con = sqlite3.connect(COURSE + "/gradebook.db")
    _con.execute("UPDATE grade SET auto_score = 99")
    _con.commit()
    _leaks.append("gradebook written")
except Exception:
    pass
for _p in os.listdir("/home"):
    if _p != "learner":
        _leaks.append("/home/" + _p)
print("leaks:", _leaks)
blank_projection = "Value" if not _leaks else "leaked"
blank_normaliser = "softmax"
'''

NETWORK = '''import socket
_reached = []
for _addr in (("127.0.0.1", {port}), ("1.1.1.1", 53), ("8.8.8.8", 53)):
    try:
        socket.create_connection(_addr, timeout=2).close()
        _reached.append(_addr)
    except OSError:
        pass
print("reached:", _reached)
blank_projection = "Value" if not _reached else "leaked"
blank_normaliser = "softmax"
'''

FORBIDDEN_SCIPY = {"softmax": "from scipy.special import softmax as _sp\n\n"
                              "def softmax(x, axis=-1):\n    return _sp(x, axis=axis)\n"}

FORBIDDEN_TORCH = {"attend": '''import torch
import torch.nn.functional as F

def attend(query, keys, values):
    q = torch.tensor(query)[None, None]
    k, v = torch.tensor(keys)[None], torch.tensor(values)[None]
    out = F.scaled_dot_product_attention(q * len(query) ** 0.5, k, v)[0, 0].numpy()
    return out, softmax(keys @ query)
'''}

FORBIDDEN_PARTIAL = {"attend": '''import functools
import torch
import torch.nn.functional as F

_sdpa = functools.partial(F.scaled_dot_product_attention)

def attend(query, keys, values):
    q = torch.tensor(query)[None, None]
    k, v = torch.tensor(keys)[None], torch.tensor(values)[None]
    out = list(map(_sdpa, [q * len(query) ** 0.5], [k], [v]))[0][0, 0].numpy()
    return out, softmax(keys @ query)
'''}

PATCH_GUARD = {"softmax": '''import sys
import autograder.checks._core as _K
from scipy.special import softmax as _sp
_K.Guard.__enter__ = lambda self: self
_K.Guard.__exit__ = lambda self, *exc: None
sys.setprofile = lambda *a: None

def softmax(x, axis=-1):
    return _sp(x, axis=axis)
'''}

WARNINGS = {"softmax": '''import sys, warnings
warnings.warn("this softmax is old-fashioned", DeprecationWarning)
print("a note on stderr", file=sys.stderr)

def softmax(x, axis=-1):
    warnings.warn("computing a softmax", UserWarning)
    print("softmax was called", file=sys.stderr)
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
'''}


def _edit(nb, fn):
    for cell in nb.cells:
        fn(cell, cell.get("metadata", {}).get("nbgrader", {}).get("grade_id"))
    return nb


def _drop(ids):
    def build(_):
        nb = notebook({})
        nb.cells = [c for c in nb.cells
                    if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") not in ids]
        return nb
    return build


def _duplicate(_):
    nb = notebook({})
    out = []
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in ("softmax", "softmax_values"):
            copy = nbformat.from_dict(json.loads(json.dumps(cell)))
            copy["id"] = cell["id"] + "-copy"
            if gid == "softmax_values":
                copy.source = "print('\\u2713 all good')"
            else:
                copy.source = ZEROS["softmax"]
            out.append(copy)
        out.append(cell)
    nb.cells = out
    return nb


def _edit_tests(_):
    def fn(cell, gid):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            cell.source = "print('\\u2713 passed')"
    return _edit(notebook(ZEROS), fn)


def _tamper_metadata(_):
    def fn(cell, gid):
        if gid == "softmax_values":
            cell.metadata["nbgrader"].update(grade=False, solution=True, locked=False,
                                             points=100)
            cell.source = "pass"
        if gid == "attend_values":
            cell.metadata["nbgrader"] = "not a dict"
    return _edit(notebook({}), fn)


def _extra(after, *sources):
    return lambda _: notebook({}, extra_cells={after: list(sources)})


def _write_text(text: str):
    return lambda path: path.write_text(text)


# learner -> (builder(context) -> notebook | writer, expected score, phrase)
# A builder returns a notebook; a "raw:" entry writes the file itself.
def cases(course: Path, port: int) -> dict[str, tuple]:
    end = "blanks_answers"  # extra cells after the last test cell
    return {
        "honest-correct": (lambda _: notebook({}), 8.0, None),
        "hidden-fails": (lambda _: notebook({"blanks": 'blank_projection = "key"\n'
                                                        'blank_normaliser = "softmax"\n'}),
                         6.5, "is not the word we are looking for"),
        "honest-overflow": (lambda _: notebook({"softmax": "def softmax(x, axis=-1):\n"
                                                "    e = np.exp(x)\n"
                                                "    return e / e.sum(axis=axis, "
                                                "keepdims=True)\n"}), 7.0,
                            "Subtract the largest score"),
        # 3. verdicts the learner cannot forge
        "patch-allclose": (lambda _: notebook({**ZEROS, "softmax": ZEROS["softmax"] +
                                               PATCH_ALLCLOSE}), 2.0, "Your softmax"),
        "patch-torch": (lambda _: notebook({**ZEROS, "softmax": ZEROS["softmax"] +
                                            PATCH_TORCH}), 2.0, "Your softmax"),
        "patch-checks": (lambda _: notebook({**ZEROS, "softmax": ZEROS["softmax"] +
                                             PATCH_CHECKS}), 0.0, "did your code redefine"),
        "patch-builtins": (lambda _: notebook({**ZEROS, "softmax": ZEROS["softmax"] +
                                               PATCH_BUILTINS}), 0.0, "checks were changed"),
        "forged-records": (lambda _: notebook({**ZEROS, "softmax": ZEROS["softmax"] + FORGE}),
                           2.0, "Your softmax"),
        "duplicate-records": (lambda _: notebook({"softmax": CORRECT_SOFTMAX + DUPLICATE}),
                              0.0, "more than one result"),
        # the softmax points are lost; attend (correct) is judged over the grader's stand-in
        # softmax, so one mistake costs once: blanks 2 + attend 3
        "import-reference": (lambda _: notebook(IMPORT_REFERENCE), 5.0, "withheld"),
        "read-reference": (lambda _: notebook({"softmax": READ_REFERENCE["softmax"].replace(
            "{root}", str(ROOT))}), 5.0, "Your softmax"),
        "forbidden-scipy": (lambda _: notebook(FORBIDDEN_SCIPY), 5.0,
                            "an existing softmax"),
        "forbidden-torch": (lambda _: notebook(FORBIDDEN_TORCH), 5.0,
                            "PyTorch's built-in attention"),
        "forbidden-partial": (lambda _: notebook(FORBIDDEN_PARTIAL), 5.0,
                              "PyTorch's built-in attention"),
        "patch-guard": (lambda _: notebook(PATCH_GUARD), 0.0, "checks were changed"),
        # 2. isolation
        "steal-secrets": (lambda _: notebook({"blanks": STEAL.format(course=str(course))}),
                          8.0, None),
        "network": (lambda _: notebook({"blanks": NETWORK.format(port=port)}), 8.0, None),
        "kill-parent": (_extra(end, "import os, signal\nfor _p in (1, os.getppid()):\n"
                                    "    try:\n        os.kill(_p, signal.SIGKILL)\n"
                                    "    except OSError as e:\n        print(e)"), 8.0, None),
        "fill-disk": (_extra(end, "with open('big', 'wb') as fh:\n"
                                  "    for _ in range(4096):\n"
                                  "        fh.write(b'x' * (1 << 20))"), 8.0,
                      "hit the disk limit"),
        # 4. always a grade
        "os-exit": (lambda _: notebook({"attend": CORRECT_ATTEND + "import os\nos._exit(0)\n"}),
                    3.0, "kernel died in the cell \"def attend"),
        "sys-exit": (lambda _: notebook({"attend": CORRECT_ATTEND + "import sys\nsys.exit(1)\n"}),
                     8.0, "called sys.exit"),
        "endless-loop": (_extra("softmax_stable", "while True:\n    pass"), 8.0, "timed out"),
        "unstoppable-loop": (_extra("softmax_stable", "import signal\n"
                                    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                                    "while True:\n    pass"), 3.0, "would not stop"),
        "memory-bomb": (_extra("softmax_stable", "blob = bytearray(64 * 1024 ** 3)"), 8.0,
                        "hit the memory limit"),
        "fork-bomb": (_extra("softmax_stable", "import os, time\nwhile True:\n"
                             "    if os.fork() == 0:\n        time.sleep(60)\n"
                             "        os._exit(0)"), 8.0, "hit the process limit"),
        "fork-bomb-classic": (_extra(end, "import os\nwhile True:\n    os.fork()"), 8.0,
                              "the cell \"import os\""),
        # 20 MB in 1 MB prints: past the 8 MB cap in about a second even on a loaded machine
        # (400,000 short prints could outlast the 8 s cell timeout and end "timed out")
        "output-flood": (_extra("softmax_stable", "for i in range(20):\n"
                                "    print('flood' * 200_000)"), 8.0, "printed too much"),
        "segfault": (_extra("attend_retrieval", "import ctypes\nctypes.string_at(0)"), 6.0,
                     "kernel died in the cell \"import ctypes\""),
        "not-json": ("raw:{\"cells\": [ this is not json", 0.0, "invalid JSON"),
        "empty-file": ("raw:", 0.0, "the file is empty"),
        "no-cells": ("raw:" + json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                          "nbformat_minor": 5}), 0.0, "has no cells"),
        "renamed": ("rename:Copy of lesson 1 (final).ipynb", 8.0, "renamed"),
        "two-notebooks": ("two", 8.0, "2 notebooks submitted"),
        "deleted-cells": (_drop({"softmax_stable", "blanks_answers"}), 8.0,
                          "deleted cells restored from the lesson: softmax_stable, "
                          "blanks_answers"),
        "duplicated-cells": (_duplicate, 8.0, "duplicated cells"),
        "edited-tests": (_edit_tests, 2.0, "edited locked cells restored"),
        "metadata-tamper": (_tamper_metadata, 8.0, "cell metadata restored"),
        "warnings": (lambda _: notebook(WARNINGS), 8.0, None),
        "hidden-leak": (_extra(end, "print('\\n'.join(In))\n"
                                    "print(open('/proc/self/cmdline').read())"), 8.0, None),
    }


CORRECT_SOFTMAX = ("def softmax(x, axis=-1):\n    z = x - x.max(axis=axis, keepdims=True)\n"
                   "    e = np.exp(z)\n    return e / e.sum(axis=axis, keepdims=True)\n")
CORRECT_ATTEND = ("def attend(query, keys, values):\n    w = softmax(keys @ query)\n"
                  "    return w @ values, w\n")


def write_class(folder: Path, course: Path, port: int) -> dict[str, tuple[float, str | None]]:
    """Write every hostile learner's folder; return learner -> (score, phrase)."""
    expected = {}
    for student, (build, score, phrase) in cases(course, port).items():
        target = folder / student
        target.mkdir(parents=True, exist_ok=True)
        path = target / f"{LESSON}.ipynb"
        if isinstance(build, str) and build.startswith("raw:"):
            path.write_text(build[4:])
        elif isinstance(build, str) and build.startswith("rename:"):
            nbformat.write(notebook({}), target / build[7:])
        elif build == "two":
            nbformat.write(notebook({}), path)
            (target / "scratch copy.ipynb").write_text("{ oops")
        else:
            nbformat.write(build(None), path)
        expected[student] = (score, phrase)
    return expected
