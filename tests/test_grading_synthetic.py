"""With plain assert test cells (no checks), are hidden asserts still hidden in feedback?

A tiny synthetic lesson: one answer, one test cell with a visible and a hidden assert. Its
verdict comes from the learner's kernel, as in any nbgrader course (the report says so), and
the feedback must show the failing hidden assert's message but neither its source nor its
traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-synthetic")]
LESSON = "90_synthetic"


def _lesson(course):
    answer = nbformat.v4.new_code_cell(
        "def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION",
        id="double")
    answer.metadata["nbgrader"] = {"grade": False, "solution": True, "locked": False,
                                   "grade_id": "double", "schema_version": 3}
    test = nbformat.v4.new_code_cell(
        'assert double(2) == 4, "double(2) should be 4"\n### BEGIN HIDDEN TESTS\n'
        'assert double(21) == 42, "double(21) should be 42"\n### END HIDDEN TESTS', id="test")
    test.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True,
                                 "grade_id": "test_double", "points": 1.0,
                                 "schema_version": 3}
    nb = nbformat.v4.new_notebook(cells=[answer, test])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    (course / "solutions" / LESSON).mkdir(parents=True)
    nbformat.write(nb, course / "solutions" / LESSON / f"{LESSON}.ipynb")
    return nb


def test_hidden_asserts_stay_hidden(tmp_path):
    """Does a failing hidden assert reach the learner as its message only?"""
    course, folder = tmp_path / "course", tmp_path / "class"
    source = _lesson(course)
    wrong = nbformat.from_dict(json.loads(json.dumps(source)))
    wrong.cells[0].source = "def double(x):\n    return x + 2"
    wrong.cells[1].source = 'assert double(2) == 4, "double(2) should be 4"'
    (folder / "ana").mkdir(parents=True)
    nbformat.write(wrong, folder / "ana" / f"{LESSON}.ipynb")
    run = subprocess.run(
        [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "90",
         "--course", str(course), "--out", str(course / "graded"), "--workers", "1",
         "--no-progress", *isolation_flags()], cwd=ROOT, capture_output=True, text=True,
        timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((course / "graded" / "report.json").read_text())["learner_results"]
    assert report["ana"]["score"] == 0.0
    assert any("judged in the learner's kernel" in n for n in report["ana"]["notes"])
    html = (course / "graded" / "feedback" / "ana" / LESSON / f"{LESSON}.html").read_text()
    assert "double(21) should be 42" in html  # the message reaches the learner
    assert "double(21) ==" not in html  # the hidden assert's source does not
    assert "most recent call last" not in html and "Cell In[" not in html


RESTART = """
import json, sys
from pathlib import Path
from autograder.grading import pipeline

real_config, real_start, started = pipeline.nbgrader_config, pipeline.start_shared_zygote, []


def config(root, **overrides):  # the course says one worker; the flags said nothing
    c = real_config(root, **overrides)
    c.Grading.workers = 1
    return c


def start(image, isolation, clients, **kwargs):
    started.append(clients)
    return real_start(image, isolation, clients, **kwargs)


pipeline.nbgrader_config, pipeline.start_shared_zygote = config, start
course, folder, isolation = sys.argv[1], sys.argv[2], sys.argv[3] or None
summary = pipeline.grade(pipeline.Options(
    submissions=Path(folder), lesson="90", course=Path(course), out=Path(course) / "graded",
    isolation=isolation, progress=False), echo=lambda *a, **k: None)
print(json.dumps({"started": started, "failed": summary["failed"]}))
"""


def test_the_course_settings_replace_an_early_fork_server(tmp_path):
    """grade starts its fork server before it reads nbgrader_config.py (which imports
    nbgrader), with the flags' settings: when the course's differ (here c.Grading.workers
    = 1 against one per core), it starts another, and grades as before."""
    course, folder = tmp_path / "course", tmp_path / "class"
    _lesson(course)
    source = nbformat.read(course / "solutions" / LESSON / f"{LESSON}.ipynb", as_version=4)
    (folder / "bo").mkdir(parents=True)
    nbformat.write(source, folder / "bo" / f"{LESSON}.ipynb")
    flags = isolation_flags()
    run = subprocess.run([sys.executable, "-c", RESTART, str(course), str(folder),
                          flags[1] if flags else ""], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    cores = max(1, os.cpu_count() or 1)
    assert result == {"started": [cores, 1] if cores != 1 else [1], "failed": {}}
    timings = json.loads((course / ".grading" / LESSON / "timings.json").read_text())
    assert timings["workers"] == 1
    report = json.loads((course / "graded" / "report.json").read_text())["learner_results"]
    assert report["bo"]["score"] == 1.0


GRADE = """
course, folder, isolation = sys.argv[1], sys.argv[2], sys.argv[3] or None
summary = pipeline.grade(pipeline.Options(
    submissions=Path(folder), lesson="90", course=Path(course), out=Path(course) / "graded",
    isolation=isolation, progress=False, workers=WORKERS), echo=lambda *a, **k: None)
seen["failed"] = summary["failed"]
print(json.dumps(seen))
"""


def _harness(tmp_path, script: str, learners: str) -> tuple[dict, dict]:
    """A class of correct learners graded by `script` (a grade run with hooks that fill
    `seen`): what the hooks saw, and each learner's score."""
    course, folder = tmp_path / "course", tmp_path / "class"
    _lesson(course)
    source = nbformat.read(course / "solutions" / LESSON / f"{LESSON}.ipynb", as_version=4)
    for name in learners:
        (folder / name).mkdir(parents=True)
        nbformat.write(source, folder / name / f"{LESSON}.ipynb")
    flags = isolation_flags()
    run = subprocess.run([sys.executable, "-c", script, str(course), str(folder),
                          flags[1] if flags else ""], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads((course / "graded" / "report.json").read_text())["learner_results"]
    return (json.loads(run.stdout.strip().splitlines()[-1]),
            {name: r["score"] for name, r in report.items()})


PROC = """
import contextlib, json, os, signal, sys, threading, time
from pathlib import Path
from autograder.grading import pipeline
from autograder.grading.executor import _alive, _children

seen = {}


def parent(pid):
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])
"""


COPIES = PROC + """
Run = pipeline.Run
real_await, real_grade_all, real_handle = Run._await_workers, Run._grade_all, Run._handle


def await_workers(self):
    real_await(self)
    seen["pids"] = [w.pid for w in self.workers]
    seen["parents"] = [parent(w.pid) for w in self.workers]
    seen["grader"] = os.getpid()


def grade_all(self, learners):
    os.kill(self.workers[2].pid, signal.SIGKILL)  # dies idle: the first task sent fails
    while _alive(self.workers[2].pid):
        time.sleep(0.01)
    return real_grade_all(self, learners)


def handle(self, reply):
    if not seen.get("killed") and self.workers[1].pid == seen["pids"][1]:
        seen["killed"] = True
        os.kill(seen["pids"][1], signal.SIGKILL)  # dies busy: its channel ends
    return real_handle(self, reply)


Run._await_workers, Run._grade_all, Run._handle = await_workers, grade_all, handle
""" + GRADE.replace("WORKERS", "3")


def test_workers_are_copies_of_the_first_and_a_dead_one_is_replaced(tmp_path):
    """grade starts one worker process, which forks a copy of itself per further worker
    once its imports are done; a copy that dies, idle or in the middle of its tasks, is
    replaced by a worker process of its own and its learners are graded all the same, and
    no worker is left behind after the run."""
    from autograder.grading.executor import _alive

    seen, scores = _harness(tmp_path, COPIES, "abcdef")
    first, *copies = seen["pids"]
    assert seen["parents"] == [seen["grader"], first, first]  # forked by worker 0
    assert seen["killed"] and seen["failed"] == {}
    assert scores == dict.fromkeys("abcdef", 1.0)
    assert not any(_alive(pid) for pid in seen["pids"])


STARTING = PROC + """
WorkerProc = pipeline.WorkerProc
real_start_all, real_await = WorkerProc.start_all.__func__, pipeline.Run._await_workers


def start_all(cls, cfgs, state):
    # the copy's fork server is a pipe nobody answers on: it cannot be ready before the
    # kill below, however slow this machine (its real one is closed here, unused)
    answer_r, answer_w = os.pipe()
    sink = os.open(os.devnull, os.O_WRONLY)
    real = cfgs[1]["zygote_fds"]
    workers = real_start_all(cls, [cfgs[0], dict(cfgs[1], zygote_fds=[sink, answer_r])], state)
    for fd in real:
        os.close(fd)
    seen["_hold"] = answer_w

    def kill_the_copy():  # once the first worker has forked it and it writes to its log
        log = os.path.realpath(state / "worker1.log")  # worker 0 may have other children
        while True:
            for kid in _children(workers[0].proc.pid):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{kid}/fd/1") == log:
                        os.kill(kid, signal.SIGKILL)
                        seen["killed"] = kid
                        return
            time.sleep(0.005)

    threading.Thread(target=kill_the_copy, daemon=True).start()
    return workers


def await_workers(self):
    real_await(self)
    seen["second_parent"] = parent(self.workers[1].pid)
    seen["grader"] = os.getpid()
    os.close(seen.pop("_hold"))


WorkerProc.start_all = classmethod(start_all)
pipeline.Run._await_workers = await_workers
""" + GRADE.replace("WORKERS", "2")


def test_a_copy_that_dies_starting_is_replaced(tmp_path):
    """A copy of the first worker that dies before it is ready (or that the first worker
    could not make) is replaced by a worker process of its own, and the run grades all."""
    seen, scores = _harness(tmp_path, STARTING, "abc")
    assert seen["killed"] and seen["failed"] == {}
    assert seen["second_parent"] == seen["grader"]  # a process of its own now
    assert scores == dict.fromkeys("abc", 1.0)
