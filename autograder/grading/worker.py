"""A grading worker: one process, one fork server, one learner at a time.

The main process hands it learners; for each it sanitises the submission with nbgrader's
own preprocessors (reading the gradebook), runs it in a fresh sandboxed kernel, judges the
test cells in this (trusted) process and leaves the result, atomically, where the main
process's nbgrader autograde will pick it up. It also renders feedback with nbgrader's
``GenerateFeedback`` once a learner's grades are in the gradebook.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path

from ..course import environment_on_path, without_iri_grammar

if __name__ == "__main__":
    without_iri_grammar()

import nbformat  # noqa: E402

from .executor import Limits, SandboxedKernel, SandboxError, Zygote  # noqa: E402
from .sandbox import PR_SET_PDEATHSIG, prctl, threads  # noqa: E402


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Worker:
    def __init__(self, cfg: dict):
        from traitlets.config import Config

        self.cfg = cfg
        self.course = Path(cfg["course"])
        self.lesson = cfg["lesson"]
        self.results = Path(cfg["results"])
        self.limits = Limits(**cfg["limits"])
        self.slot = Path(cfg["slot"])
        self.uid = int(cfg["uid"])
        self.config = Config(cfg["nbgrader_config"])
        self.zygote: Zygote | None = None
        self._feedback = None  # nbgrader's GenerateFeedback, built for the first learner

    # -- fork server
    def start_zygote(self) -> Zygote:
        """This worker's fork server: its copy of the shared one while that works, else
        (it did not start, or died) one of its own."""
        if self.zygote is not None and self.zygote.alive():
            try:
                return self.zygote.wait_ready()
            except SandboxError:
                if not self.zygote.shared:
                    raise
        if self.zygote is not None:
            self.zygote.close()
        self.zygote = Zygote(Path(self.cfg["image"]), self.cfg["isolation"],
                             log=Path(self.cfg["log"]))
        return self.zygote.wait_ready()

    # -- sanitise exactly as nbgrader autograde will
    def sanitize(self, student: str):
        from nbgrader.converters import Autograde

        path = self.course / "submitted" / student / self.lesson / f"{self.lesson}.ipynb"
        nb = nbformat.read(path, as_version=4)
        resources = {"nbgrader": {"notebook": self.lesson, "assignment": self.lesson,
                                  "student": student, "db_url": self.cfg["db_url"]},
                     "metadata": {"path": str(path.parent)}}
        configured = self.config.get("Autograde", {}).get("sanitize_preprocessors")
        default = Autograde.class_traits()["sanitize_preprocessors"].default()
        for cls in configured or default:
            nb, resources = cls(config=self.config).preprocess(nb, resources)
        return nb

    def _files(self, student: str) -> Path:
        """The submission's folder as nbgrader autograde lays it out, minus notebooks."""
        files = self.slot / "files"
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir(parents=True)
        for base in (self.course / "submitted" / student / self.lesson,
                     self.course / "solutions" / self.lesson):
            if not base.is_dir():
                continue
            for item in base.rglob("*"):
                rel = item.relative_to(base)
                if item.suffix == ".ipynb" or item.is_symlink() or any(
                        p.startswith(".") or p == "__pycache__" for p in rel.parts):
                    continue
                if item.is_file():
                    (files / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(item, files / rel)
        return files

    def execute(self, student: str, nb_json: dict | None = None) -> dict:
        from .nbgrader_hooks import fingerprint
        from .verdict import judge_notebook

        t0 = time.perf_counter()
        nb = nbformat.from_dict(nb_json) if nb_json is not None else self.sanitize(student)
        files = self._files(student)
        t1 = time.perf_counter()
        last_error = ""
        for attempt in range(3):
            zygote = self.start_zygote()
            kernel = SandboxedKernel(zygote, self.slot, self.uid, self.limits)
            try:
                kernel.start(files)
                forked = time.perf_counter()  # forked, confined, and answering
                run = kernel.run(nb)
                ran = time.perf_counter()
                break
            except SandboxError as exc:
                last_error = str(exc)
                if not zygote.alive() or attempt == 1:
                    zygote.close()
                    self.zygote = None
                time.sleep(0.2 * (attempt + 1))
            finally:
                kernel.close()
        else:
            return {"ok": False, "error": last_error or "could not start a kernel"}
        t2 = time.perf_counter()  # the kernel and its strays are gone
        verdicts = judge_notebook(nb, self.lesson[:2])
        t3 = time.perf_counter()
        result = {
            "student": student, "fingerprint": fingerprint(nb), "notebook": nb,
            "events": run.events, "seconds": round(run.seconds, 3),
            "untrusted": [v.grade_id for v in verdicts if not v.trusted],
        }
        write_atomic(self.results / f"{student}.json", json.dumps(result))
        # where this learner's time went (journalled; benchmarks/grading.py sums it):
        # sanitise, fork (a kernel forked, confined and answering), execute (the cells),
        # teardown (kernel and strays killed), verdicts, write (the result file)
        timings = {"sanitise": t1 - t0, "fork": forked - t1, "execute": ran - forked,
                   "teardown": t2 - ran, "verdicts": t3 - t2,
                   "write": time.perf_counter() - t3}
        timings = {k: round(v, 4) for k, v in timings.items()}
        print(f"execute {student}: {timings}", file=sys.stderr, flush=True)
        return {"ok": True, "events": run.events, "seconds": run.seconds,
                "untrusted": result["untrusted"], "notebook": nb if nb_json else None,
                "timings": timings}

    def feedback(self, student: str) -> dict:
        started = time.perf_counter()
        converter = self._feedback_converter()
        coursedir = converter.coursedir
        coursedir.student_id = student
        converter.start()
        src = Path(coursedir.format_path(coursedir.feedback_directory, student, self.lesson))
        copy = self.cfg.get("feedback_copy")
        if copy:
            out = Path(copy) / student / self.lesson
            out.mkdir(parents=True, exist_ok=True)
            for html in src.glob("*.html"):
                tmp = out / f".{html.name}.tmp"
                shutil.copyfile(html, tmp)
                os.replace(tmp, out / html.name)
        seconds = round(time.perf_counter() - started, 4)
        print(f"feedback {student}: {seconds:.3f}s", file=sys.stderr, flush=True)
        return {"ok": True, "timings": {"feedback": seconds}}

    def _feedback_converter(self):
        """nbgrader's GenerateFeedback, made once: its HTML exporter (template compiled,
        preprocessors configured) serves every learner, as it does in one `nbgrader
        generate_feedback` run over a class."""
        if self._feedback is None:
            self._feedback = feedback_converter(self.config, self.lesson)
        return self._feedback


def feedback_converter(config, lesson: str):
    """A GenerateFeedback for this lesson whose exporter is built once (reuse_exporter)."""
    from nbgrader.converters import GenerateFeedback
    from nbgrader.coursedir import CourseDirectory

    from .nbgrader_hooks import reuse_exporter

    coursedir = CourseDirectory(config=config)
    coursedir.assignment_id = lesson
    converter = GenerateFeedback(coursedir=coursedir, config=config)
    converter.force = True
    return reuse_exporter(converter)


def _die_with_parent() -> None:
    try:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def _fork_copies(conn, cfg: dict, specs: list[dict]):
    """Worker 0, its imports done: fork a copy of itself for each further worker (grade's
    ``WorkerProc.start_all``). Returns ``(conn, cfg, [])`` in a copy (its own channel and
    settings), ``(conn, cfg, pids)`` here. No thread runs and no file object wraps another
    worker's descriptors yet, so each copy closes what is not its own by number."""
    from .channel import Channel

    if threads() != 1:  # forking a threaded process is unsafe: each copy is then told so
        for spec in specs:
            with contextlib.suppress(OSError):
                Channel(*spec["fds"]).send(
                    {"type": "ready", "error": f"worker 0 has {threads()} threads"})
            for fd in (*spec["fds"], *(spec["cfg"].get("zygote_fds") or ())):
                os.close(fd)
        return conn, cfg, []
    parent, pids = os.getpid(), []
    for k, spec in enumerate(specs):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            later = [fd for s in specs[k + 1:]
                     for fd in (*s["fds"], *(s["cfg"].get("zygote_fds") or ()))]
            for fd in (conn.read_fd, conn.write_fd, *(cfg.get("zygote_fds") or ()), *later):
                os.close(fd)
            log = os.open(spec["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            _die_with_parent()  # with worker 0, which dies with the grader
            if os.getppid() != parent:
                os._exit(0)
            return Channel(*spec["fds"]), spec["cfg"], []
        pids.append(pid)
        for fd in (*spec["fds"], *(spec["cfg"].get("zygote_fds") or ())):
            os.close(fd)
    return conn, cfg, pids


def _reap(pids: list[int], seconds: float = 10.0) -> None:
    """Worker 0, stopping: wait for its copies (told to stop too) so none is left a zombie."""
    end = time.monotonic() + seconds
    left = list(pids)
    while left and time.monotonic() < end:
        for pid in list(left):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done:
                left.remove(pid)
        if left:
            time.sleep(0.01)


def worker_main(conn, cfg: dict) -> None:
    """Entry point of a worker process (``python -m autograder.grading.worker R W``)."""
    _die_with_parent()  # die with the grader
    environment_on_path()
    os.environ.setdefault("NBFORMAT_VALIDATOR", "fastjsonschema")
    # torch on one thread here (set before it is imported): the verdicts' tensors are tiny,
    # every core already has a worker, and an idle OpenMP pool spins after each parallel
    # op, taking CPU from the learners' kernels (which run on one thread too)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = "1"
    try:
        os.nice(5)  # the main process (the only gradebook writer) is the critical path
    except OSError:
        pass
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    from .db import share_engines, tune_sqlite

    tune_sqlite()
    share_engines()
    copies: list[int] = []
    worker = None
    try:
        # the fork server imports torch & co. in the background while we import nbgrader:
        # grade's shared one (started before this worker, attached to below), else one of
        # our own, started now
        shared = cfg.get("zygote_fds")
        own = None if shared else Zygote(Path(cfg["image"]), cfg["isolation"],
                                         log=Path(cfg["log"]))
        import nbgrader.converters  # noqa: F401
        import nbgrader.preprocessors  # noqa: F401

        from . import nbgrader_hooks, trusted, verdict  # noqa: F401

        trusted.load(cfg["lesson"][:2])
        feedback = None
        if cfg.get("copies") and shared:
            # the feedback exporter too, and a first page rendered with it (templates to
            # compile, lexers to build, the lesson's cells into its caches): once here, not
            # in each copy as its first learner's feedback
            with contextlib.suppress(Exception):  # each worker builds its own as before
                from traitlets.config import Config

                feedback = feedback_converter(Config(cfg["nbgrader_config"]), cfg["lesson"])
                from .nbgrader_hooks import warm_exporter

                lesson = cfg["lesson"]
                warm_exporter(feedback, nbformat.read(
                    Path(cfg["course"]) / "solutions" / lesson / f"{lesson}.ipynb", 4))
            conn, cfg, copies = _fork_copies(conn, cfg, cfg["copies"])
            shared = cfg.get("zygote_fds")
        worker = Worker(cfg)
        worker._feedback = feedback
        worker.zygote = Zygote.attach(Path(cfg["image"]), tuple(shared)) if shared else own
        zygote = worker.start_zygote()
        conn.send({"type": "ready", "mode": zygote.mode, "why": zygote.why,
                   "missing": zygote.missing, "pid": os.getpid()})
    except Exception as exc:
        conn.send({"type": "ready", "error": f"{type(exc).__name__}: {exc}"})
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            break
        if task.get("type") == "stop":
            break
        reply = {"type": task["type"], "id": task.get("id"), "student": task.get("student")}
        try:
            if task["type"] == "execute":
                reply.update(worker.execute(task["student"], task.get("notebook")))
            elif task["type"] == "feedback":
                reply.update(worker.feedback(task["student"]))
        except Exception as exc:  # an infrastructure failure for this learner only
            reply.update(ok=False, error=f"{type(exc).__name__}: {exc}",
                         trace=traceback.format_exc()[-2000:])
        try:
            conn.send(reply)
        except (BrokenPipeError, OSError):
            break
    if worker.zygote is not None:
        worker.zygote.close()
    _reap(copies)


if __name__ == "__main__":
    import sys

    from .channel import Channel

    channel = Channel(int(sys.argv[1]), int(sys.argv[2]))
    worker_main(channel, channel.recv())
    # every result is written (atomically) and sent; the gradebook was only read here:
    # skip the interpreter's teardown of torch, nbgrader & co.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
