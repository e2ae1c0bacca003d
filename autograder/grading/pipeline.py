"""``python -m autograder grade``: a class's submissions in, grades and feedback out.

The run, in order:

1. the lesson's source is registered in the gradebook (nbgrader ``generate_assignment`` in a
   scratch folder, writing to the real gradebook; ``lessons/`` is never touched);
2. the sandbox image is built and N workers start, each with its fork server;
3. submissions are collected into ``submitted/`` (nbgrader ``zip_collect`` for an LMS zip)
   and repaired (one readable notebook per learner, under the lesson's name);
4. workers run each learner's notebook in a fresh sandboxed kernel and judge its test cells
   (in parallel); this process, the only one that writes the gradebook, runs nbgrader's own
   ``autograde`` for each learner as soon as its run is ready (the execution step splices in
   the sandboxed run); workers then render the feedback with nbgrader's
   ``generate_feedback``;
5. ``grades.csv`` is nbgrader's CSV export of the gradebook; a summary table ends the run.

Every finished step is in a journal (journal.py), so a killed run resumes where it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..course import (
    ROOT,
    CourseError,
    Lesson,
    environment_on_path,
    find_lesson,
    lesson_of_notebook,
    nbgrader_config,
    run_nbgrader,
)
from .channel import Channel
from .collect import Learner, collect_folder, collect_zip, repair
from .db import (
    check_connection,
    forget_engines,
    normalize_url,
    restore_sqlite,
    share_engines,
    tune_sqlite,
)
from .executor import _alive, start_shared_zygote
from .image import build_image
from .journal import Journal, RunLock
from .settings import Grading

log = logging.getLogger("attnlab.grade")
WORKER_NICE = 5  # grading workers and the fork server (worker.py nices itself by as much)


@dataclass
class Options:
    submissions: Path
    lesson: str | None = None
    workers: int | None = None
    timeout: float | None = None
    notebook_timeout: float | None = None
    memory_mb: int | None = None
    db: str | None = None
    out: Path | None = None  # default: <course>/graded/<lesson>
    course: Path | None = None
    pattern: str | None = None
    isolation: str | None = None
    regrade: bool = False
    progress: bool = True
    due: str | None = None  # the lesson's due date (nbgrader's duedate; naive means UTC)


@dataclass
class Outcome:
    learner: Learner
    status: str = "pending"  # graded | failed
    reason: str = ""
    events: list[str] = field(default_factory=list)
    score: float | None = None
    max_score: float | None = None
    tests: dict[str, tuple[float | None, float]] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # written answers awaiting a grade
    manual_max: float = 0.0
    timestamp: str = ""
    late: bool = False


# ----------------------------------------------------------------------------- set-up


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lessons_in(submissions: Path, limit: int = 50) -> list[str]:
    """The lessons the first ``limit`` readable notebooks say they are (metadata, else name)."""
    import zipfile

    import nbformat

    if submissions.is_file():
        try:
            with zipfile.ZipFile(submissions) as zf:
                names = [(n, zf.read(n)) for n in zf.namelist()
                         if n.endswith(".ipynb")][:limit]
        except zipfile.BadZipFile:
            raise CourseError(f"{submissions}: not a zip file (nor a folder)") from None
    else:
        names = [(str(p), p.read_bytes()) for p in sorted(submissions.rglob("*.ipynb"))
                 if ".ipynb_checkpoints" not in p.parts][:limit]
    found = []
    for name, data in names:
        try:
            nb = nbformat.reads(data.decode("utf-8"), as_version=4)
            found.append(lesson_of_notebook(nb, Path(name).name).name)
        except Exception:
            continue
    return found


def _guess_lesson(submissions: Path) -> Lesson:
    found = _lessons_in(submissions, limit=20)
    if not found:
        raise CourseError("cannot tell which lesson these submissions are: pass --lesson NN")
    return find_lesson(max(set(found), key=found.count))


def _check_lesson(submissions: Path, lesson: Lesson) -> None:
    """Refuse a --lesson that none of the notebooks is (before anything is written)."""
    found = _lessons_in(submissions)
    if found and lesson.name not in found:
        other = max(set(found), key=found.count)
        raise CourseError(f"these notebooks are lesson {other[:2]} ({other}), not "
                          f"{lesson.name}: pass --lesson {other[:2]}, or leave --lesson out "
                          "to read it from the notebooks")


def _find_lesson(course: Path, key: str) -> Lesson:
    """A lesson of this course folder (its own solutions/ first, then the repository's)."""
    from ..course import LESSON_NAME

    own = course / "solutions"
    if course.resolve() != ROOT.resolve() and own.is_dir():
        key = key.strip().rstrip("/")
        for path in sorted(own.iterdir()):
            if path.is_dir() and LESSON_NAME.match(path.name) and (
                    key in (path.name, path.name[:2]) or
                    (key.isdigit() and int(key) == int(path.name[:2]))):
                return Lesson(path.name)
    return find_lesson(key)


def _ensure_source(course: Path, lesson: Lesson) -> Path:
    source = course / "solutions" / lesson.name
    if not (source / f"{lesson.name}.ipynb").exists():
        if course.resolve() == ROOT.resolve():
            raise CourseError(f"{source}: the lesson's source is missing")
        shutil.copytree(lesson.source_dir, source, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    return source


def _source_checksums(db_url: str, course_id: str, lesson: Lesson) -> dict[str, str] | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id) as gb:
        try:
            notebook = gb.find_notebook(lesson.name, lesson.name)
        except MissingEntry:
            return None
        return {c.name: c.checksum for c in notebook.source_cells}


def _ensure_assignment(course: Path, lesson: Lesson, config, state: Path) -> Path:
    """Register the lesson in the gradebook, unless it is there with this very source.

    The release is generated in a scratch folder against a scratch gradebook (``lessons/``
    and the real gradebook are not touched); only if the real gradebook lacks the lesson or
    holds other source cells is it regenerated there. A shared gradebook (PostgreSQL) thus
    sees no writes from a second run of the same lesson.
    """
    db_url = config.CourseDirectory.db_url
    course_id = config.CourseDirectory.course_id
    source = course / "solutions" / lesson.name
    digest = hashlib.sha256(db_url.encode())
    for path in sorted(source.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(source)).encode() + path.read_bytes())
    stamp = state / "assignment.stamp"
    release = state / "release.ipynb"
    if release.exists() and stamp.exists() and stamp.read_text() == digest.hexdigest() and \
            _source_checksums(db_url, course_id, lesson) is not None:
        return release
    with tempfile.TemporaryDirectory(prefix="attnlab-generate-") as tmp:
        scratch = Path(tmp)
        shutil.copytree(source, scratch / "solutions" / lesson.name,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        cfg = nbgrader_config(scratch)
        run_nbgrader("generate_assignment", cfg, assignment_id=lesson.name, force=True,
                     create=True)
        shutil.copyfile(scratch / "lessons" / lesson.name / f"{lesson.name}.ipynb", release)
        want = _source_checksums(cfg.CourseDirectory.db_url, course_id, lesson)
        for attempt in range(3):
            if _source_checksums(db_url, course_id, lesson) == want:
                break
            cfg.CourseDirectory.db_url = db_url
            try:
                run_nbgrader("generate_assignment", cfg, assignment_id=lesson.name,
                             force=True, create=True)
            except CourseError:
                if attempt == 2:  # another run registering it at the same moment
                    raise
                time.sleep(1.0 + attempt)
    stamp.write_text(digest.hexdigest())
    return release


# ----------------------------------------------------------------------------- workers


class WorkerProc:
    """A grading worker as the main process sees it: a process started here, or a copy of
    the first worker, forked by it once its imports are done (``start_all``)."""

    def __init__(self, index: int, cfg: dict, log_path: Path, copies: list[dict] = ()):
        up_r, up_w = os.pipe()    # worker -> grader
        down_r, down_w = os.pipe()  # grader -> worker
        self.index = index
        self.cfg = cfg
        self._log = open(log_path, "ab")
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        zygote = tuple(cfg.get("zygote_fds") or ())  # its copy of the shared fork server
        # the copies it forks: each its own channel and copy of the fork server
        theirs, specs, self.copies = [], [], []
        for copy in copies:
            c_up_r, c_up_w = os.pipe()
            c_down_r, c_down_w = os.pipe()
            theirs += [c_down_r, c_up_w, *(copy.get("zygote_fds") or ())]
            specs.append({"cfg": copy, "fds": [c_down_r, c_up_w], "log": copy["log_path"]})
            self.copies.append(WorkerProc._copy(copy["index"], copy, Channel(c_up_r, c_down_w)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "autograder.grading.worker", str(down_r), str(up_w)],
            pass_fds=(down_r, up_w, *zygote, *theirs), stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=self._log, cwd=str(ROOT), env=env)
        os.close(down_r)
        os.close(up_w)
        for fd in (*zygote, *theirs):  # the worker's now (a replacement starts a fork
            os.close(fd)                # server of its own)
        self.cfg = {k: v for k, v in cfg.items() if k != "zygote_fds"}
        self.channel = Channel(up_r, down_w)
        self.channel.send(dict(cfg, copies=specs) if specs else cfg)
        self.pid = self.proc.pid
        self.tasks: list[dict] = []
        self.info: dict = {}
        self._stopped = False

    @classmethod
    def start_all(cls, cfgs: list[dict], state: Path) -> list[WorkerProc]:
        """Every worker of a run: the first started as a process that, once it has imported
        nbgrader, torch and the reference kernels, forks a copy of itself for each of the
        others (each then attaches to its own copy of the fork server). One worker's
        imports instead of one per worker: the run's start is CPU-bound on every core."""
        copies = [dict(cfg, index=i, log_path=str(state / f"worker{i}.log"))
                  for i, cfg in enumerate(cfgs) if i]
        first = cls(0, cfgs[0], state / "worker0.log", copies=copies)
        return [first, *first.copies]

    @classmethod
    def _copy(cls, index: int, cfg: dict, channel: Channel) -> WorkerProc:
        self = cls.__new__(cls)
        self.index, self.channel, self.copies = index, channel, []
        # what a replacement needs (it is started as a process of its own)
        self.cfg = {k: v for k, v in cfg.items()
                    if k not in ("zygote_fds", "index", "log_path")}
        self._log = None
        self.proc = None
        self.pid = None  # known from its "ready" message (worker 0 is its parent)
        self.tasks, self.info, self._stopped = [], {}, False
        return self

    def fileno(self) -> int:
        return self.channel.fileno()

    def send(self, task: dict) -> None:
        self.tasks.append(task)
        self.channel.send(task)

    def ready(self, info: dict) -> None:
        self.info = info
        if self.proc is None and isinstance(info.get("pid"), int):
            self.pid = info["pid"]

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        return self.pid is not None and _alive(self.pid)

    def stop(self) -> None:
        """Ask the worker to finish (close() waits for it; stop all, then close all)."""
        if not self._stopped:
            self._stopped = True
            try:
                self.channel.send({"type": "stop"})
            except OSError:
                pass

    def close(self) -> None:
        self.stop()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        else:  # a copy, not our child (worker 0 reaps it): its end closes when it exits
            end = time.monotonic() + 10
            while time.monotonic() < end:
                readable, _, _ = select.select([self.channel.read_fd], [], [],
                                               max(0.0, end - time.monotonic()))
                if readable and not os.read(self.channel.read_fd, 1 << 16):
                    break
            if self.pid is not None and _alive(self.pid):
                with contextlib.suppress(OSError):
                    os.kill(self.pid, signal.SIGKILL)
        self.channel.close()
        if self._log is not None:
            self._log.close()


# ----------------------------------------------------------------------------- the run


class Run:
    def __init__(self, opts: Options, echo=print):
        self.opts = opts
        self.echo = echo
        self.course = (opts.course or ROOT).resolve()
        submissions = opts.submissions.resolve()
        if not submissions.exists():
            raise CourseError(f"{opts.submissions}: no such file or folder")
        self.submissions = submissions
        self.due = None
        if opts.due:
            from nbgrader.utils import parse_utc

            try:
                self.due = parse_utc(opts.due).isoformat(sep=" ")
            except (ValueError, OverflowError):
                raise CourseError(f"--due {opts.due!r}: not a date (e.g. "
                                  "'2026-03-01 23:59', read as UTC, or with a +01:00 offset)"
                                  ) from None
        if opts.lesson:
            self.lesson = _find_lesson(self.course, opts.lesson)
            _check_lesson(submissions, self.lesson)
        else:
            self.lesson = _guess_lesson(submissions)
        self.course.mkdir(parents=True, exist_ok=True)
        self.out = (opts.out.resolve() if opts.out is not None else
                    self.course / "graded" / self.lesson.name)
        self.state = self.course / ".grading" / self.lesson.name
        self.zygote = None  # the shared fork server (_start_zygote)
        self.db_url = None  # nbgrader's configuration is loaded by run() (_configure)
        self.results = self.state / "results"
        self.outcomes: dict[str, Outcome] = {}
        self.workers: list[WorkerProc] = []
        self.mode = "?"
        self.mode_why = ""
        self.started = time.monotonic()
        self._t0 = time.perf_counter()
        self.phases: dict[str, float] = {}
        self._task_id = 0
        self._insight_import: threading.Thread | None = None

    def _configure(self) -> None:
        """nbgrader's configuration for this course, and the grading settings (the course's,
        then the flags). Loading it imports nbgrader (nbgrader_config.py does)."""
        opts = self.opts
        self.config = nbgrader_config(self.course)
        if opts.db:
            self.config.CourseDirectory.db_url = normalize_url(opts.db)
        self.db_url = self.config.CourseDirectory.db_url
        self.settings = Grading(config=self.config)
        for name, value in (("workers", opts.workers), ("cell_timeout", opts.timeout),
                            ("notebook_timeout", opts.notebook_timeout),
                            ("memory_mb", opts.memory_mb), ("isolation", opts.isolation)):
            if value is not None:
                setattr(self.settings, name, value)
        # nbgrader's feedback folder (c.CourseDirectory.feedback_directory) is the one copy
        # grade, `autograder feedback` and `nbgrader generate_feedback` all write
        self.feedback = self.course / self.config.CourseDirectory.feedback_directory

    # -- entry point
    def run(self) -> dict:
        os.environ.setdefault("NBFORMAT_VALIDATOR", "fastjsonschema")
        environment_on_path()
        for path in (self.state, self.results, self.out):
            path.mkdir(parents=True, exist_ok=True)
        timed = self._timed
        with RunLock(self.state / "lock"):
            with timed("setup"):
                _ensure_source(self.course, self.lesson)
            with timed("image"):
                image, image_warnings = build_image(self.lesson, self.course / ".grading" /
                                                    "images")
            try:
                with timed("workers_start"):  # torch & co. imported there, nbgrader here
                    self._start_zygote(image, self.opts.isolation or "auto",
                                       self.opts.workers or max(1, os.cpu_count() or 1))
                with timed("setup"):
                    tune_sqlite(wal=True)
                    share_engines()  # (imports nbgrader)
                    forget_engines()
                    self._configure()
                    check_connection(self.db_url)
                with timed("workers_start"):
                    self._start_workers(image)  # they warm up while we prepare the gradebook
                with timed("register"):
                    self.release = _ensure_assignment(self.course, self.lesson, self.config,
                                                      self.state)
                    self._set_due()
                with timed("collect"):
                    learners = self._collect()
                with timed("workers_start"):
                    self._await_workers()
                self.journal = Journal(self.state / "journal.jsonl")
                try:
                    with timed("grading"):
                        self._grade_all(learners)
                finally:
                    self.journal.close()
            finally:
                with timed("workers_stop"):
                    for worker in self.workers:
                        worker.stop()
                    for worker in self.workers:
                        worker.close()
                    self._stop_zygote()
                    shutil.rmtree(getattr(self, "scratch", "/nonexistent"), ignore_errors=True)
                    if self.db_url:
                        restore_sqlite(self.db_url)
            for warning in image_warnings:
                self.echo(f"note: {warning}")
            with timed("export"):
                self._export()
            with timed("report"):
                summary = self._summary()
            with timed("insight"):
                self._insight()
            forget_engines()
            self._write_timings(len(learners))
        self._hand_back()
        return summary

    @contextlib.contextmanager
    def _timed(self, phase: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start

    def _write_timings(self, learners: int) -> None:
        """.grading/NN_x/timings.json: this run's phases in seconds (set-up, image,
        workers_start: fork servers ready, register: the lesson in the gradebook, collect,
        grading: every learner, workers_stop, export, report, insight); per learner the
        journal has the rest (benchmarks/grading.py reads both)."""
        data = {"learners": learners, "workers": len(self.workers),
                "seconds": round(time.perf_counter() - self._t0, 3),
                "phases": {k: round(v, 3) for k, v in self.phases.items()}}
        tmp = self.state / ".timings.json.tmp"
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, self.state / "timings.json")

    def _warm_insight(self) -> None:
        """Import the insight report's plotting library in a thread once every learner is
        handed to a worker: the run's last learners leave a core idle, and the report is
        written right after them."""
        if self._insight_import is None:
            def warm() -> None:
                with contextlib.suppress(Exception):  # _insight imports it again and says
                    import matplotlib

                    matplotlib.use("Agg")
                    import matplotlib.pyplot  # noqa: F401

                    from .. import insight  # noqa: F401

            self._insight_import = threading.Thread(target=warm, name="insight-import",
                                                    daemon=True)
            self._insight_import.start()

    def _insight(self) -> None:
        """What the class got wrong: graded/NN_x/insight.html and .json (autograder.insight)."""
        if self._insight_import is not None:
            self._insight_import.join()
        from ..insight import write_insight

        try:
            html, _ = write_insight(self.lesson, self.db_url, self.course, self.out)
        except Exception as exc:  # noqa: BLE001  (the grades are written; the report is a bonus)
            self.echo(f"note: the insight report was not written ({type(exc).__name__}: {exc})")
        else:
            self.echo(f"Insight:   {html}")

    def _set_due(self) -> None:
        """--due: the lesson's due date in the gradebook, so nbgrader's late handling (the
        submission's timestamp against it, c.LateSubmissionPlugin's penalty) applies."""
        if not self.due:
            return
        from nbgrader.api import Gradebook
        from nbgrader.utils import parse_utc

        with Gradebook(self.db_url, self.config.CourseDirectory.course_id) as gb:
            gb.update_or_create_assignment(self.lesson.name, duedate=parse_utc(self.due))

    def _hand_back(self) -> None:
        """Run with sudo: give the files this run made back to the instructor."""
        uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
        if os.geteuid() != 0 or not uid or not uid.isdigit():
            return
        uid, gid = int(uid), int(gid or uid)
        paths = [self.course / name for name in ("gradebook.db", "submitted", "autograded",
                                                 "downloaded", ".grading")]
        paths += [self.feedback, self.out]
        for top in paths:
            if not top.exists():
                continue
            for path in [top, *top.rglob("*")] if top.is_dir() else [top]:
                try:
                    os.lchown(path, uid, gid)
                except OSError:
                    pass

    # -- workers
    def _start_workers(self, image: Path) -> None:
        n = self.settings.resolved_workers()
        for stale in Path(tempfile.gettempdir()).glob("alab-*-*"):  # left by a killed run
            pid = stale.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"alab-{os.getpid()}-"))
        scratch.chmod(0o755)
        self.scratch = scratch
        base = self.settings.uid_base + (os.getpid() % 100_000) * 16
        limits = {"cell_timeout": self.settings.cell_timeout,
                  "notebook_timeout": self.settings.notebook_timeout,
                  "memory_mb": self.settings.memory_mb,
                  "processes": self.settings.processes,
                  "output_mb": self.settings.output_mb, "tmpfs_mb": self.settings.tmpfs_mb}
        if self._zygote_for != (self.settings.isolation, n):  # the course's settings differ
            self._stop_zygote()
            self._start_zygote(image, self.settings.isolation, n)
        fds, self._zygote_fds = self._zygote_fds, None
        cfgs = []
        for i in range(n):
            slot = scratch / f"w{i}"
            slot.mkdir()
            cfg = {"course": str(self.course), "lesson": self.lesson.name,
                   "results": str(self.results), "feedback_copy": self._feedback_copy(),
                   "image": str(image),
                   "isolation": self.settings.isolation, "limits": limits,
                   "slot": str(slot), "uid": base + i, "db_url": self.db_url,
                   "nbgrader_config": self.config, "python": sys.executable,
                   "log": str(self.state / f"worker{i}.log"), "zygote_fds": list(fds[i])}
            cfgs.append(cfg)
        self.workers = WorkerProc.start_all(cfgs, self.state)

    def _start_zygote(self, image: Path, isolation: str, workers: int) -> None:
        """One fork server for all workers: torch & co. imported once, then it forks a copy
        of itself per worker. Started before nbgrader's configuration is loaded here (it
        imports nbgrader), with the flags' isolation and number of workers; _start_workers
        starts another if the course's settings say otherwise. It and the kernels it forks
        are niced as the workers are (this process, the only gradebook writer, is the
        critical path)."""
        self.zygote, self._zygote_fds = start_shared_zygote(
            image, isolation, workers, log=self.state / "forkserver.log", nice=WORKER_NICE)
        self._zygote_for = (isolation, workers)

    def _stop_zygote(self) -> None:
        """The shared fork server exits when its workers tell it to (or go away)."""
        for fd in (fd for pair in getattr(self, "_zygote_fds", None) or () for fd in pair):
            os.close(fd)  # no worker got these: its copies see their end of file
        self._zygote_fds = None
        zygote, self.zygote = self.zygote, None
        if zygote is not None:
            try:
                zygote.wait(timeout=5)
            except subprocess.TimeoutExpired:
                zygote.kill()
                zygote.wait()

    def _await_workers(self) -> None:
        for i, worker in enumerate(self.workers):
            info = self._hello(worker)
            if "error" in info and worker.proc is None:
                # a copy the first worker could not make, or that died starting: a worker
                # process of its own instead (with a fork server of its own)
                worker.close()
                worker = self.workers[i] = WorkerProc(
                    worker.index, worker.cfg, self.state / f"worker{worker.index}.log")
                info = self._hello(worker)
            if "error" in info:
                raise CourseError(f"a grading worker could not start: {info['error']}")
            worker.ready(info)
        self.mode, self.mode_why = self.workers[0].info["mode"], self.workers[0].info["why"]
        if self.mode != "root":
            self.echo(_isolation_warning(self.mode, self.mode_why), file=sys.stderr)

    def _hello(self, worker: WorkerProc) -> dict:
        """A starting worker's first message: ready, or why not."""
        try:
            return worker.channel.recv()
        except EOFError:
            return {"error": "the worker exited while starting (see "
                             f"{self.state / f'worker{worker.index}.log'})"}

    def _collect(self) -> dict[str, Learner]:
        originals = self.state / "originals"
        if self.submissions.is_file():
            learners = collect_zip(self.submissions, self.lesson, self.course, self.config,
                                   self.opts.pattern)
        else:
            learners = collect_folder(self.submissions, self.lesson, self.course)
        if not learners:
            raise CourseError(f"{self.opts.submissions}: no learners' submissions found")
        notes_path = self.state / "notes.json"
        stored = json.loads(notes_path.read_text()) if notes_path.exists() else {}
        for learner in learners.values():
            repair(learner, self.lesson, self.course, self.release, originals)
            target = self._notebook(learner.student)
            sha = _sha(target)
            previous = stored.get(learner.student, {})
            if not learner.notes and previous.get("sha") == sha:
                learner.notes = previous.get("notes", [])
            stored[learner.student] = {"sha": sha, "notes": learner.notes}
        tmp = notes_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stored, indent=1))
        os.replace(tmp, notes_path)
        return learners

    def _notebook(self, student: str) -> Path:
        return self.course / "submitted" / student / self.lesson.name / \
            f"{self.lesson.name}.ipynb"

    # -- the main loop
    def _grade_all(self, learners: dict[str, Learner]) -> None:
        from nbgrader.api import Gradebook

        self.shas = {s: _sha(self._notebook(s)) for s in learners}
        self.outcomes = {s: Outcome(lr) for s, lr in learners.items()}
        execute, autograde, feedback = deque(), deque(), deque()
        with Gradebook(self.db_url, self.config.CourseDirectory.course_id) as gb:
            complete = {s: self._in_gradebook(gb, s) for s in learners}
        if self.opts.regrade:  # old runs go first: a kill in between leaves no mix
            for student in learners:
                (self.results / f"{student}.json").unlink(missing_ok=True)
            self.journal.start_regrade(settings=self._settings())
        elif self.journal.regrade is not None:
            left = sum(not self.journal.has(s, self.shas[s], "graded") for s in learners)
            self.echo(f"note: finishing an interrupted --regrade: {left} of {len(learners)} "
                      "learners still to regrade (the others keep their new results)",
                      file=sys.stderr)
            self._settings_changed(self.journal.regrade.get("settings"))
        for student in sorted(learners):
            sha = self.shas[student]
            graded = self.journal.has(student, sha, "graded") and complete[student]
            if graded and self.journal.has(student, sha, "feedback") and \
                    self._feedback_exists(student):
                self._finish(student)
            elif graded:
                feedback.append(student)
            elif self._cached(student):  # run before a kill: nbgrader checks it still fits
                autograde.append(student)
            else:
                execute.append(student)
        self.queues = (execute, autograde, feedback)
        self.converter = self._converter()
        total = len(learners)
        bar = _progress(total, self.opts.progress, self.lesson.name)
        bar.update(sum(o.status != "pending" for o in self.outcomes.values()))
        try:
            while any(o.status == "pending" for o in self.outcomes.values()):
                self._feed_workers()
                if not execute:
                    self._warm_insight()
                self._drain(timeout=0)
                if autograde:
                    self._autograde(autograde.popleft())
                else:
                    self._drain(timeout=1.0)
                done = sum(o.status != "pending" for o in self.outcomes.values())
                bar.update(done - bar.n)
                failed = sum(o.status == "failed" for o in self.outcomes.values())
                if failed:
                    bar.set_postfix_str(f"{failed} failed")
        finally:
            bar.close()
        self.journal.finish_regrade()

    def _settings(self) -> dict:
        return {name: getattr(self.settings, name) for name in
                ("cell_timeout", "notebook_timeout", "memory_mb", "processes", "output_mb")}

    def _settings_changed(self, before: dict | None) -> None:
        changed = [f"{k} {before[k]:g} -> {v:g}" for k, v in self._settings().items()
                   if before and k in before and before[k] != v]
        if changed:
            self.echo("note: the interrupted --regrade ran with other limits ("
                      + ", ".join(changed) + "); learners graded from now on get the new "
                      "ones: run with --regrade to grade everyone alike", file=sys.stderr)

    def _feed_workers(self) -> None:
        execute, _, feedback = self.queues
        for i in range(len(self.workers)):
            worker = self.workers[i]
            while len(worker.tasks) < 2 and (feedback or execute):
                if feedback:
                    task = {"type": "feedback", "student": feedback.popleft()}
                else:
                    task = {"type": "execute", "student": execute.popleft()}
                self._task_id += 1
                task["id"] = self._task_id
                try:
                    worker.send(task)
                except OSError:  # it died between tasks: its tasks, this one too, go to
                    self._worker_died(worker)  # a replacement
                    worker = self.workers[i]

    def _drain(self, timeout: float, want: int | None = None):
        """Handle worker replies (waiting up to ``timeout`` for the first); with ``want``,
        keep going until that task's reply arrives (or the time is up) and return it."""
        end = time.monotonic() + timeout
        while True:
            busy = [w for w in self.workers if w.tasks]
            if not busy:
                return None
            readable, _, _ = select.select(busy, [], [], max(0.0, end - time.monotonic()))
            for worker in readable:
                try:
                    reply = worker.channel.recv()
                except EOFError:
                    self._worker_died(worker)
                    continue
                worker.tasks = [t for t in worker.tasks if t["id"] != reply.get("id")]
                if want is not None and reply.get("id") == want:
                    return reply
                self._handle(reply)
            if want is None or time.monotonic() >= end:
                return None

    def _worker_died(self, worker: WorkerProc) -> None:
        tasks, worker.tasks = worker.tasks, []
        index = self.workers.index(worker)
        worker.close()
        replacement = WorkerProc(worker.index, worker.cfg, self.state /
                                 f"worker{worker.index}.log")
        replacement.ready(self._hello(replacement))
        self.workers[index] = replacement
        for task in tasks:
            student = task["student"]
            attempts = task.get("attempts", 0) + 1
            if attempts >= 2:
                self._fail(student, "the grading worker crashed twice on this submission")
                continue
            task = dict(task, attempts=attempts)
            self._task_id += 1
            task["id"] = self._task_id
            replacement.send(task)

    def _handle(self, reply: dict) -> None:
        student = reply.get("student")
        if student not in self.outcomes or self.outcomes[student].status != "pending":
            return
        _, autograde, _ = self.queues
        if reply["type"] == "execute":
            if reply.get("ok"):
                self.journal.record(student, self.shas[student], "executed",
                                    seconds=round(reply.get("seconds", 0), 3),
                                    timings=reply.get("timings", {}))
                autograde.append(student)
            else:
                self._fail(student, reply.get("error", "could not run the notebook"))
        elif reply["type"] == "feedback":
            if reply.get("ok"):
                self.journal.record(student, self.shas[student], "feedback",
                                    timings=reply.get("timings", {}))
            else:
                self.outcomes[student].events.append(
                    f"feedback could not be rendered: {reply.get('error', '?')}")
            self._finish(student)

    def _fail(self, student: str, reason: str) -> None:
        outcome = self.outcomes[student]
        outcome.status, outcome.reason = "failed", reason.splitlines()[0][:300]

    def _finish(self, student: str) -> None:
        self.outcomes[student].status = "graded"

    def _cached(self, student: str) -> bool:
        return (self.results / f"{student}.json").exists()

    def _feedback_copy(self) -> str | None:
        """Where --out wants a copy of the feedback, if not nbgrader's own folder."""
        if self.opts.out is None or (self.out / "feedback").resolve() == self.feedback.resolve():
            return None
        return str(self.out / "feedback")

    def _feedback_exists(self, student: str) -> bool:
        name = f"{self.lesson.name}.html"
        copy = self._feedback_copy()
        return all((Path(base) / student / self.lesson.name / name).exists()
                   for base in [self.feedback, *([copy] if copy else [])])

    def _in_gradebook(self, gb, student: str) -> bool:
        """Does the gradebook hold a complete autograde of this learner?"""
        from nbgrader.api import MissingEntry

        autograded = self.course / "autograded" / student / self.lesson.name / \
            f"{self.lesson.name}.ipynb"
        if not autograded.exists():
            return False
        try:
            sub = gb.find_submission_notebook(self.lesson.name, self.lesson.name, student)
        except MissingEntry:
            return False
        return all(g.auto_score is not None or g.cell.cell_type == "markdown"
                   for g in sub.grades)

    # -- nbgrader autograde, in this process only
    def _converter(self):
        from nbconvert.preprocessors import ClearMetadataPreprocessor
        from nbgrader.converters import Autograde
        from nbgrader.coursedir import CourseDirectory
        from nbgrader.preprocessors import (
            AssignLatePenalties,
            CheckCellMetadata,
            IgnorePattern,
            LimitOutput,
            SaveAutoGrades,
        )

        from .nbgrader_hooks import SandboxedExecute

        config = self.config.copy()
        config.SandboxedExecute.results_dir = str(self.results)
        config.Autograde.autograde_preprocessors = [
            SandboxedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
            SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
        config.Autograde.create_student = True
        config.Autograde.pre_convert_hook = None  # the lesson is registered already
        coursedir = CourseDirectory(config=config)
        coursedir.assignment_id = self.lesson.name
        converter = Autograde(coursedir=coursedir, config=config)
        converter.force = True
        SandboxedExecute.execute_now = self._execute_now
        return converter

    def _execute_now(self, student: str, nb):
        """nbgrader's notebook differs from the one run ahead: run this one, now."""
        worker = min(self.workers, key=lambda w: len(w.tasks))
        self._task_id += 1
        task = {"type": "execute", "student": student, "id": self._task_id,
                "notebook": json.loads(json.dumps(nb))}
        worker.send(task)
        reply = None
        while reply is None:
            reply = self._drain(timeout=5.0, want=task["id"])
            if reply is None and not worker.alive():
                raise RuntimeError("the grading worker died")
        if not reply.get("ok"):
            raise RuntimeError(reply.get("error", "could not run the notebook"))
        self.journal.record(student, self.shas[student], "executed",
                            seconds=round(reply.get("seconds", 0), 3),
                            timings=reply.get("timings", {}))
        return reply["notebook"]

    def _autograde(self, student: str) -> None:
        from nbgrader.api import Gradebook
        from nbgrader.converters.base import NbGraderException

        started = time.perf_counter()
        outcome = self.outcomes[student]
        learner = outcome.learner
        with Gradebook(self.db_url, self.config.CourseDirectory.course_id) as gb:
            fields = {k: v for k, v in (("first_name", learner.first_name),
                                        ("last_name", learner.last_name)) if v}
            gb.update_or_create_student(student, **fields)
        errors: list[str] = []
        handler = _Capture(errors)
        self.converter.log.addHandler(handler)
        self.converter.coursedir.student_id = student
        try:
            self.converter.start()
        except (NbGraderException, SystemExit, Exception) as exc:  # noqa: B014
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.converter.log.removeHandler(handler)
        with Gradebook(self.db_url, self.config.CourseDirectory.course_id) as gb:
            complete = self._in_gradebook(gb, student)
        if not complete:
            cause = next((e for e in errors if "Traceback" not in e), errors[0] if errors
                         else "nbgrader autograde did not finish")
            self._fail(student, f"nbgrader autograde failed: {cause}")
            return
        self.journal.record(student, self.shas[student], "graded", timings={
            "autograde": round(time.perf_counter() - started, 4)})
        self.queues[2].append(student)

    # -- results
    def _export(self) -> None:
        from nbgrader.api import Gradebook

        export_grades(self.config, self.lesson, sorted(self.outcomes), self.out / "grades.csv")
        with Gradebook(self.db_url, self.config.CourseDirectory.course_id) as gb:
            for student, outcome in self.outcomes.items():
                self._scores(gb, student, outcome)
        (self.state / "out").write_text(str(self.out))  # where `feedback` refreshes it

    def _scores(self, gb, student: str, outcome: Outcome) -> None:
        from nbgrader.api import MissingEntry

        try:
            sub = gb.find_submission_notebook(self.lesson.name, self.lesson.name, student)
        except MissingEntry:
            return
        auto = [g for g in sub.grades if g.cell.cell_type == "code"]
        manual = [g for g in sub.grades if g.cell.cell_type != "code"]
        outcome.tests = {g.name: (g.auto_score, float(g.max_score)) for g in auto}
        outcome.score = float(sum(g.auto_score or 0 for g in auto))
        outcome.max_score = float(sum(g.max_score for g in auto))
        outcome.manual_max = float(sum(g.max_score for g in manual))
        outcome.pending = [g.name for g in manual if g.needs_manual_grade]
        submission = sub.assignment  # the SubmittedAssignment
        outcome.timestamp = submission.timestamp.isoformat(sep=" ") if \
            submission.timestamp else ""
        outcome.late = bool(submission.duedate and submission.timestamp and
                            submission.timestamp > submission.duedate) or \
            "marked late by the LMS" in outcome.learner.notes
        path = self.results / f"{student}.json"
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            outcome.events = data.get("events", []) + outcome.events
            if data.get("untrusted"):
                outcome.events.append("test cells judged in the learner's kernel (not "
                                      "check-only): " + ", ".join(data["untrusted"]))

    def _summary(self) -> dict:
        from .report import write_report

        return write_report(self, self.echo)


def export_grades(config, lesson: Lesson, students: list[str], target: Path) -> None:
    """nbgrader's CSV export of this lesson for these learners, one row each, sorted by
    learner id (nbgrader lists them in gradebook order)."""
    import csv

    from nbgrader.api import Gradebook
    from nbgrader.plugins import CsvExportPlugin

    tmp = target.with_name(f".{target.name}.tmp")
    plugin = CsvExportPlugin(config=config)
    plugin.to, plugin.assignment, plugin.student = str(tmp), [lesson.name], list(students)
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gb:
        plugin.export(gb)
    with open(tmp, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, sorted(reader, key=lambda r: r["student_id"])
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, target)


def refresh_feedback(key: str, course: Path | None = None, db: str | None = None,
                     echo=print) -> None:
    """``python -m autograder feedback``: after manual grading, every learner's feedback
    rendered again from the gradebook and the lesson's grades.csv exported again."""
    from nbgrader.api import Gradebook

    course = (course or ROOT).resolve()
    lesson = _find_lesson(course, key)
    config = nbgrader_config(course)
    if db:
        config.CourseDirectory.db_url = normalize_url(db)
    check_connection(config.CourseDirectory.db_url)
    with Gradebook(config.CourseDirectory.db_url, config.CourseDirectory.course_id) as gb:
        try:
            students = sorted(s.student.id for s in gb.assignment_submissions(lesson.name))
        except Exception:  # noqa: BLE001  (nbgrader raises MissingEntry or KeyError)
            students = []
    if not students:
        raise CourseError(f"the gradebook has no graded submission of {lesson.name}: run "
                          "`python -m autograder grade` first")
    run_nbgrader("generate_feedback", config, assignment_id=lesson.name, force=True)
    feedback = course / config.CourseDirectory.feedback_directory
    state = course / ".grading" / lesson.name
    out = Path((state / "out").read_text()) if (state / "out").exists() else \
        course / "graded" / lesson.name
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "feedback"
    if copy.resolve() != feedback.resolve() and copy.is_dir():
        for student in students:
            src = feedback / student / lesson.name
            for html in src.glob("*.html"):
                (copy / student / lesson.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(html, copy / student / lesson.name / html.name)
    export_grades(config, lesson, students, out / "grades.csv")
    from ..insight import write_insight

    write_insight(lesson, config.CourseDirectory.db_url, course, out)  # manual points included
    echo(f"Feedback refreshed for {len(students)} learners of {lesson.name}: "
         f"{feedback}/<learner>/{lesson.name}/{lesson.name}.html\n"
         f"Grades (manual points included): {out / 'grades.csv'}")


class _Capture(logging.Handler):
    def __init__(self, sink: list[str]):
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage().strip().splitlines()[-1][:300]
                         if record.getMessage().strip() else "")


def _isolation_warning(mode: str, why: str) -> str:
    bar = "!" * 78
    if mode == "userns":
        text = ("learner code runs in user namespaces as YOUR uid (no privileges, no network, "
                "no view of your files). Run as root for a separate uid per kernel.")
    else:
        text = ("learner code is NOT isolated: it runs as you and can read your files, "
                "the gradebook and the network. Only rlimits and timeouts apply. Grade "
                "untrusted submissions as root on Linux (or where user namespaces work).")
    return f"{bar}\nWARNING: sandbox mode '{mode}'{f' ({why})' if why else ''}:\n{text}\n{bar}"


def _progress(total: int, enabled: bool, name: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"grading {name}", unit="learner", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True, mininterval=0.5)


def grade(opts: Options, echo=print) -> dict:
    return Run(opts, echo).run()
