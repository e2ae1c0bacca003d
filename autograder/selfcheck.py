"""``python -m autograder check NOTEBOOK``: grade one learner's notebook, hidden tests included.

The learner's file is never touched and never run in place. Grading is nbgrader's own
autograde, minus what does not change between two checks of the same lesson:

* **Per lesson version, once** (``prepared``): nbgrader's ``generate_assignment`` runs in a
  scratch course and its gradebook (schema, source cells with hidden tests, checksums,
  points) is kept under a per-user cache folder (``$ATTNLAB_CACHE``, else
  ``$XDG_CACHE_HOME/attnlab``, else ``~/.cache/attnlab``), keyed by a hash of the lesson's
  source folder, the course's nbgrader configuration and this autograder. It is built in
  a private folder and renamed into place, so concurrent checks never see half of one; a
  changed lesson gets a new key.
* **Per check**: a kernel starts first, importing what every lesson imports (numpy,
  torch, matplotlib, the checks) while this process reads the notebook and runs
  nbgrader's sanitising preprocessors against a copy of that gradebook (locked cells and
  hidden tests restored from the source, deleted test cells added back, duplicates
  dropped). nbgrader's ``Execute``, ``IgnorePattern`` and ``LimitOutput`` then run the
  notebook in that kernel with the course's limits, and each score is nbgrader's
  ``determine_grade``, exactly what ``autograde`` stores in a gradebook.

``grade_notebook(..., reference=True)`` (``check --nbgrader``) runs nbgrader's complete
``generate_assignment`` + ``autograde`` in a scratch course instead, as an instructor's
run would; the tests compare the two.

Messages come from the outputs of the executed notebook's test cells. Written answers are
graded by an instructor; once a learner has written one, the report shows it beside the
solution's model answer and rubric for self-assessment, and lists the answers not yet
written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .course import CourseError, Lesson, lesson_of_notebook, read_notebook

STUDENT = "self"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# imported by the check's kernel before the learner's first cell (into sys.modules only,
# never into the notebook's namespace): what every lesson's first cell imports
PRELOAD = ("numpy", "torch", "matplotlib.pyplot", "ipywidgets", "autograder.checks",
           "attnlab", "attnlab.plots", "attnlab.data")
PRUNE_AFTER_S = 24 * 3600  # a cached lesson version unused this long is deleted
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR", "--HistoryManager.hist_file=:memory:"]


@dataclass
class TestResult:
    id: str
    kind: str  # "auto" | "manual"
    points: float | None
    max_points: float
    passed: bool | None
    message: str
    answered: bool | None = None  # written answers only: has the learner written one?
    answer: str | None = None  # their answer, once written
    model_answer: str | None = None  # the solution's model answer and rubric, once written


@dataclass
class Report:
    lesson: str
    score: float
    max_score: float
    tests: list[TestResult]
    unanswered: list[str] = field(default_factory=list)  # answer cells still as released

    def to_json(self) -> dict:
        return {"lesson": self.lesson, "score": self.score, "max_score": self.max_score,
                "tests": [asdict(t) for t in self.tests], "unanswered": self.unanswered}


# --------------------------------------------------------------------------- the kernel


def _kernel_main() -> None:
    """``python -m autograder.selfcheck -f CONNECTION_FILE``: an IPython kernel whose course
    imports are done before it answers, so they overlap the grader's own preparation."""
    import importlib

    # no debugger in a grading kernel: ipykernel sets debugpy up at start-up whenever it
    # can import it; with the import refused it skips that
    sys.modules.setdefault("debugpy", None)
    from ipykernel.kernelapp import IPKernelApp

    app = IPKernelApp.instance()
    app.initialize(sys.argv[1:])  # sets the inline matplotlib backend, as any kernel does
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # the learner's own import will report it
            pass
    app.start()


def _start_kernel(cwd: Path):
    """A kernel manager whose kernel is already starting (in ``cwd``)."""
    from jupyter_core.utils import run_sync

    from .kernels import KernelManager

    class PreloadedKernelManager(KernelManager):  # its clients never sleep through a reply
        def format_kernel_cmd(self, extra_arguments=None):
            return [sys.executable, "-m", "autograder.selfcheck", "-f",
                    os.path.realpath(self.connection_file), *(extra_arguments or [])]

    # the lesson's own self-check cell stays quiet, and lesson 07 trains its short budget;
    # torch on one thread (unless the learner set it): the course's models are small, and two
    # checks at once (a lab) each using every core are several times slower than one
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **os.environ,
           "ATTNLAB_GRADING": "1", "NBGRADER_EXECUTION": "autograde"}
    km = PreloadedKernelManager(kernel_name="python3")
    run_sync(km.start_kernel)(extra_arguments=KERNEL_ARGS, cwd=str(cwd), env=env)
    return km


def _stop_kernel(km) -> None:
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=True)
    except Exception:
        pass


# ------------------------------------------------------------------ the per-lesson cache


def cache_root() -> Path:
    if os.environ.get("ATTNLAB_CACHE"):
        return Path(os.environ["ATTNLAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "attnlab"


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(folder).parts))


def _version_key(lesson: Lesson) -> str:
    """Changes when the lesson, the course's nbgrader config or this autograder changes."""
    import nbgrader

    from . import __version__
    from .course import ROOT

    here = Path(__file__).parent
    h = hashlib.sha256(f"{__version__} nbgrader {nbgrader.__version__}".encode())
    for path in [*_files(lesson.source_dir), ROOT / "nbgrader_config.py",
                 here / "selfcheck.py", here / "build.py", here / "course.py",
                 here / "grading" / "model_answers.py"]:
        h.update(str(path.name).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@contextmanager
def _alembic_head_in_process():
    """A new gradebook is stamped with nbgrader's newest migration; nbgrader asks the
    ``alembic`` command for it, a subprocess that imports alembic again (most of a cache
    build's time). ``grade`` reads the same head from nbgrader's migration scripts in this
    process (:func:`autograder.grading.db.alembic_head`, which falls back to the command);
    so does the cache build. The scratch build of ``check --nbgrader`` keeps nbgrader's way."""
    import nbgrader.api as api

    from .grading.db import alembic_head

    original = api.get_alembic_version
    api.get_alembic_version = alembic_head
    try:
        yield
    finally:
        api.get_alembic_version = original


def _build(lesson: Lesson, dest: Path) -> None:
    """nbgrader generate_assignment in a scratch course under ``dest``."""
    import nbformat
    from nbgrader.api import Gradebook

    from .build import normalise
    from .course import nbgrader_config, run_nbgrader, scratch_course

    scratch_course(dest, lesson)
    source = dest / "solutions" / lesson.name / f"{lesson.name}.ipynb"
    nb = normalise(nbformat.read(source, as_version=4), lesson)
    nbformat.write(nb, source)
    run_nbgrader("generate_assignment", nbgrader_config(dest), assignment_id=lesson.name,
                 force=True, create=True)
    with Gradebook(f"sqlite:///{dest / 'gradebook.db'}"):
        pass  # nbgrader's preprocessors open it with the default course id: add it now
    from .grading.model_answers import model_answers

    (dest / "answers.json").write_text(json.dumps(model_answers(nb)), encoding="utf-8")


def prepared(lesson: Lesson) -> Path:
    """The lesson's generated assignment and gradebook, built once per lesson version."""
    root = cache_root() / "check"
    final = root / f"{lesson.name}-{_version_key(lesson)}"
    if (final / "answers.json").exists():
        with suppress(OSError):
            os.utime(final)  # in use: not pruned
        return final
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{lesson.name}-", dir=root))
    except OSError:  # no writable cache: build a private copy for this check only
        tmp = Path(tempfile.mkdtemp(prefix="attnlab-check-"))
        with _alembic_head_in_process():
            _build(lesson, tmp)
        return tmp
    try:
        with _alembic_head_in_process():
            _build(lesson, tmp)
        os.rename(tmp, final)  # atomic; fails if another check got there first
    except OSError:
        if not (final / "answers.json").exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    for old in root.glob(f"{lesson.name}-*"):  # other versions of this lesson, unused for a day
        with suppress(OSError):
            if old != final and time.time() - old.stat().st_mtime > PRUNE_AFTER_S:
                shutil.rmtree(old, ignore_errors=True)
    return final


# ------------------------------------------------------------------------------ grading


def grade_notebook(path: str | os.PathLike, lesson: Lesson | None = None,
                   reference: bool = False) -> Report:
    """Grade one notebook; raise CourseError if it cannot be graded.

    ``reference`` runs nbgrader's full generate_assignment + autograde in a scratch course
    (slower; the fast path must agree with it).
    """
    if reference:
        nb = read_notebook(path)
        return _grade_reference(nb, lesson or lesson_of_notebook(nb, Path(path).name))
    with tempfile.TemporaryDirectory(prefix="attnlab-check-") as tmp:
        work = Path(tmp) / "work"
        work.mkdir()
        km = _start_kernel(work)
        try:
            nb = read_notebook(path)
            lesson = lesson or lesson_of_notebook(nb, Path(path).name)
            return _grade_fast(nb, lesson, prepared(lesson), km, Path(tmp))
        finally:
            _stop_kernel(km)


def _config(root: Path):
    from .course import nbgrader_config

    return nbgrader_config(root)


def _grade_fast(nb, lesson: Lesson, cache: Path, km, tmp: Path) -> Report:
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.converters import Autograde
    from nbgrader.preprocessors import Execute, IgnorePattern, LimitOutput

    shutil.copyfile(cache / "gradebook.db", tmp / "gradebook.db")
    answers = json.loads((cache / "answers.json").read_text(encoding="utf-8"))
    for item in _files(lesson.source_dir):  # files beside the lesson, as autograde copies
        if item.suffix != ".ipynb":
            (tmp / "work" / item.relative_to(lesson.source_dir)).parent.mkdir(
                parents=True, exist_ok=True)
            shutil.copyfile(item, tmp / "work" / item.relative_to(lesson.source_dir))
    config = _config(tmp)
    resources = {"nbgrader": {"notebook": lesson.name, "assignment": lesson.name,
                              "student": STUDENT, "db_url": f"sqlite:///{tmp / 'gradebook.db'}"},
                 "metadata": {"path": str(tmp / "work")}}
    configured = config.get("Autograde", {}).get("sanitize_preprocessors")
    for cls in configured or Autograde.class_traits()["sanitize_preprocessors"].default():
        nb, resources = cls(config=config)(nb, resources)
    execute = Execute(config=config)
    execute.startup_timeout += execute.timeout or 0  # it imports torch & co. before answering
    try:
        nb, resources = execute.preprocess(nb, resources, km=km)  # in our kernel
    except Exception as exc:  # the kernel died or would not start: as autograde reports it
        raise CourseError(f"the notebook could not be run: {type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
                          ) from None
    for cls in (IgnorePattern, ClearMetadataPreprocessor, LimitOutput):  # autograde's order
        nb, resources = cls(config=config)(nb, resources)
    return _report(lesson, nb, answers)


def _grade_reference(nb, lesson: Lesson) -> Report:
    """nbgrader's generate_assignment + autograde in a scratch course, as an instructor."""
    import nbformat

    from .course import run_nbgrader

    with tempfile.TemporaryDirectory(prefix="attnlab-check-") as tmp:
        root = Path(tmp)
        _build(lesson, root)
        submitted = root / "submitted" / STUDENT / lesson.name
        submitted.mkdir(parents=True)
        nbformat.write(nb, submitted / f"{lesson.name}.ipynb")
        previous = os.environ.get("ATTNLAB_GRADING")
        os.environ["ATTNLAB_GRADING"] = "1"  # the lesson's own self-check cell stays quiet
        try:
            run_nbgrader("autograde", _config(root), assignment_id=lesson.name,
                         student_id=STUDENT, force=True, create=True)
        finally:
            if previous is None:
                os.environ.pop("ATTNLAB_GRADING", None)
            else:
                os.environ["ATTNLAB_GRADING"] = previous
        graded = nbformat.read(root / "autograded" / STUDENT / lesson.name /
                               f"{lesson.name}.ipynb", as_version=4)
        answers = json.loads((root / "answers.json").read_text(encoding="utf-8"))
        return _report(lesson, graded, answers, _gradebook_scores(root, lesson))


def _gradebook_scores(root: Path, lesson: Lesson) -> dict[str, tuple[float | None, float]]:
    """What nbgrader autograde stored: grade id -> (auto score or None if manual, max)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        sub = gb.find_submission_notebook(lesson.name, lesson.name, STUDENT)
        return {g.name: (None if g.cell.cell_type == "markdown" or g.needs_manual_grade
                         else float(g.auto_score), float(g.max_score)) for g in sub.grades}


# ----------------------------------------------------------------------------- the report


def _nbgrader_scores(nb) -> dict[str, tuple[float | None, float]]:
    """What nbgrader's SaveAutoGrades would store for each grade cell of an executed
    notebook (its ``determine_grade``); written answers are for an instructor (None)."""
    from nbgrader import utils

    scores = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if utils.is_grade(cell) and meta.get("grade_id") and meta["grade_id"] not in scores:
            auto, max_points = utils.determine_grade(cell)
            manual = cell.cell_type == "markdown" or auto is None
            scores[meta["grade_id"]] = (None if manual else float(auto), float(max_points))
    return scores


def _answered(cell) -> bool:
    """Has the learner changed this answer cell from the release? (nbgrader's checksum)"""
    from nbgrader import utils

    return cell.metadata.get("nbgrader", {}).get("checksum") != utils.compute_checksum(cell)


def _report(lesson: Lesson, graded, answers: dict[str, str],
            scores: dict[str, tuple[float | None, float]] | None = None) -> Report:
    from nbgrader import utils

    scores = _nbgrader_scores(graded) if scores is None else scores
    cells = {}
    for cell in graded.cells:
        cells.setdefault(cell.metadata.get("nbgrader", {}).get("grade_id"), cell)
    syntax = _syntax_errors(graded)
    tests: list[TestResult] = []
    for grade_id, (points, max_points) in scores.items():
        cell = cells.get(grade_id)
        if points is None:
            tests.append(_written(grade_id, max_points, cell, answers.get(grade_id)))
            continue
        passed, message = _message(cell, syntax) if cell is not None else (False,
                                                                          "cell missing")
        tests.append(TestResult(grade_id, "auto", points, max_points,
                                passed and points == max_points, message))
    order = {gid: i for i, gid in enumerate(cells)}
    tests.sort(key=lambda t: order.get(t.id, len(order)))
    unanswered = [c.metadata.nbgrader["grade_id"] for c in graded.cells
                  if utils.is_solution(c) and c.metadata.nbgrader.get("grade_id")
                  and not _answered(c)]
    auto = [t for t in tests if t.kind == "auto"]
    return Report(lesson.name, sum(t.points for t in auto), sum(t.max_points for t in auto),
                  tests, list(dict.fromkeys(unanswered)))


def _written(grade_id: str, max_points: float, cell, model: str | None) -> TestResult:
    if cell is None or not _answered(cell):
        return TestResult(grade_id, "manual", None, max_points, None,
                          "graded by an instructor (model answer and rubric in the solution "
                          "notebook)", answered=False)
    return TestResult(grade_id, "manual", None, max_points, None,
                      "answered; graded by an instructor: compare yours with the model "
                      "answer and rubric below", answered=True, answer=cell.source.strip(),
                      model_answer=model)


def _syntax_errors(nb) -> dict[str, str]:
    """Names defined by answer cells that did not compile -> what to tell the learner."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.output_type == "error" and out.ename in ("SyntaxError", "IndentationError",
                                                            "TabError"):
                names = re.findall(r"^(?:def|class)\s+(\w+)|^(\w+)\s*(?::[^=]*)?=(?!=)",
                                   cell.source, re.MULTILINE)
                for name in {a or b for a, b in names}:
                    found.setdefault(name, _syntax_message(out, name))
    return found


def _syntax_message(out, name: str) -> str:
    evalue = ANSI.sub("", str(out.evalue))
    line = re.search(r"line (\d+)\)?\s*$", evalue)
    what = re.sub(r"\s*\([^()]*line \d+\)\s*$", "", evalue).strip()
    where = f", line {line.group(1)}" if line else ""
    return f"{out.ename} in the cell that defines {name}{where}: {what}"


def _message(cell, syntax: dict[str, str] | None = None) -> tuple[bool, str]:
    """Did a test cell pass, and what should the learner read about it?"""
    ok_lines, err = [], None
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            err = out
        elif out.output_type == "stream" and out.name == "stdout":
            ok_lines += [ln for ln in out.text.splitlines() if ln.startswith("\u2713")]
        elif out.output_type == "stream" and out.name == "stderr" and err is None:
            err = out
    if err is None:
        return True, "; ".join(ln.lstrip("\u2713 ") for ln in ok_lines) or "passed"
    if err.output_type == "stream":
        lines = [ln for ln in ANSI.sub("", err.text).splitlines() if ln.strip()]
        return False, "wrote to stderr: " + (lines[-1] if lines else "")
    missing = re.search(r"NameError: name '(\w+)' is not defined",
                        f"{err.ename}: {ANSI.sub('', str(err.evalue))}")
    if missing and missing.group(1) in (syntax or {}):  # the cause, not its consequence
        return False, syntax[missing.group(1)]
    if err.ename == "CheckFailed":
        return False, ANSI.sub("", err.evalue)
    if err.ename == "CellTimeoutError":
        return False, "this cell ran past the time limit (an endless loop?)"
    text = ANSI.sub("", f"{err.ename}: {err.evalue}").strip().rstrip(":")
    if err.ename == "NotImplementedError":
        text = "not answered yet (the exercise still raises NotImplementedError)"
    elif err.ename == "NameError":
        text += " (did you run, rename or delete the cell that defines it?)"
    return False, text


def format_report(report: Report, path: str, answers: bool = True) -> str:
    """The report as text; ``answers``: with each written answer beside its model answer."""
    width = max([len(t.id) for t in report.tests] + [4])
    lines = [f"Attention Lab self-check: {report.lesson}  ({path})", ""]
    for t in report.tests:
        if t.kind == "manual":
            mark, pts = "\u2026", f"  -/{t.max_points:g}"
        else:
            mark = "\u2713" if t.passed else "\u2717"
            pts = f"{t.points:>3g}/{t.max_points:g}"
        lines.append(f"  {mark} {t.id:<{width}}  {pts:>6}  {t.message}")
    manual = sum(t.max_points for t in report.tests if t.kind == "manual")
    lines += ["", f"Score: {report.score:g} / {report.max_score:g} autograded points"
                  + (f" (plus {manual:g} points your instructor grades by hand)" if manual else "")]
    if report.unanswered:
        lines.append("Still unanswered: " + ", ".join(report.unanswered))
    for t in report.tests if answers else []:
        if t.answered:
            lines += ["", f"--- {t.id}: your answer ---", _indent(t.answer),
                      f"--- {t.id}: model answer and rubric (mark yourself against it) ---",
                      _indent(t.model_answer or "(no model answer in the solution notebook)")]
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("    " + ln if ln.strip() else "" for ln in text.splitlines())


if __name__ == "__main__":
    _kernel_main()
