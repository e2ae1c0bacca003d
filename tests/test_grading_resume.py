"""Does a grading run killed at any moment resume without grading anyone twice or losing a grade?"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_mode  # noqa: E402
from grading_fixtures.submissions import LESSON, honest_class  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-resume")]


def _command(folder: Path, course: Path) -> list[str]:
    return [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "01",
            "--course", str(course), "--out", str(course / "graded"), "--workers", "2",
            "--no-progress"]


def _journal(course: Path) -> list[dict]:
    path = course / ".grading" / LESSON / "journal.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass
    return entries


def _kill_when(command, course: Path, ready, limit: float = 300.0) -> None:
    """Start a run and SIGKILL its main process as soon as ``ready(journal)`` holds."""
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    base = 1_000_000 + (proc.pid % 100_000) * 16  # the sandbox uids of this run
    end = time.monotonic() + limit
    while time.monotonic() < end and proc.poll() is None and not ready(_journal(course)):
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _sandbox_processes(base):
        time.sleep(0.1)
    assert not _sandbox_processes(base), "kernels outlived the killed run"


def _sandbox_processes(base: int) -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if base <= entry.stat().st_uid < base + 16:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def test_killed_runs_resume_without_double_grading(tmp_path):
    """Killed twice mid-way, does the third run finish with every grade, each given once?"""
    if isolation_mode() == "none":
        pytest.skip("sandboxing kernels needs root or unprivileged user namespaces")
    folder, course = tmp_path / "class", tmp_path / "course"
    course.mkdir()
    expected = honest_class(folder, 8)
    command = _command(folder, course)

    def graded(n):
        return lambda entries: sum(e["stage"] == "graded" for e in entries) >= n

    _kill_when(command, course, lambda entries: any(e["stage"] == "executed"
                                                    for e in entries))
    _kill_when(command, course, graded(5))
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    report = json.loads((course / "graded" / "report.json").read_text())
    assert report["graded"] == len(expected) and not report["failed"]
    for student, score in expected.items():
        assert report["learner_results"][student]["score"] == score, student
    entries = _journal(course)
    for student in expected:
        stages = [e["stage"] for e in entries if e["student"] == student]
        assert stages.count("graded") == 1, (student, stages)
        assert stages.count("executed") <= 1, (student, stages)
        assert stages.count("feedback") == 1, (student, stages)
        assert (course / "graded" / "feedback" / student / LESSON / f"{LESSON}.html").exists()
    # each finished step says where its time went (benchmarks/grading.py's breakdown)
    for entry in entries:
        want = {"executed": {"sanitise", "fork", "execute", "teardown", "verdicts", "write"},
                "graded": {"autograde"}, "feedback": {"feedback"}}.get(entry["stage"])
        if want:
            assert set(entry["timings"]) == want, entry
            assert all(v >= 0 for v in entry["timings"].values()), entry
    timings = json.loads((course / ".grading" / LESSON / "timings.json").read_text())
    assert timings["learners"] == len(expected) and timings["workers"] == 2
    assert {"register", "workers_start", "grading", "export", "insight"} <= \
        set(timings["phases"])
    with sqlite3.connect(course / "gradebook.db") as con:
        rows = con.execute("SELECT student_id, count(*) FROM submitted_assignment "
                           "GROUP BY student_id").fetchall()
        missing = con.execute("SELECT count(*) FROM grade JOIN grade_cells ON grade.cell_id "
                              "= grade_cells.id WHERE grade.auto_score IS NULL AND "
                              "grade_cells.cell_type = 'code'").fetchone()[0]
    assert sorted(rows) == sorted((s, 1) for s in expected)
    assert missing == 0

    before = len(_journal(course))
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0
    assert len(_journal(course)) == before  # nothing left to do: nothing redone
    assert len((course / "graded" / "grades.csv").read_text().splitlines()) == 9

    # an interrupted --regrade, run again without the flag, is finished, not half kept
    regrade = [*command, "--regrade", "--timeout", "60"]
    start = len(_journal(course))
    _kill_when(regrade, course, lambda entries: sum(
        e["stage"] == "graded" for e in entries[start:]) >= 3)
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "finishing an interrupted --regrade" in resumed.stderr
    assert "cell_timeout 60 -> 120" in resumed.stderr  # it says the limits differ
    entries = _journal(course)
    marker = max(i for i, e in enumerate(entries) if e["stage"] == "regrade")
    after = entries[marker:]
    for student in expected:  # everyone regraded once since the --regrade began
        assert [e["stage"] for e in after if e["student"] == student].count("graded") == 1
    assert after[-1]["stage"] == "regrade_done"


SETUP_ONCE = r"""
import json, os, sys
from pathlib import Path
import jsonschema
from sqlalchemy import event
from autograder.grading import db
import nbgrader.api as api
from nbgrader.nbgraderformat.v3 import MetadataValidatorV3

folder = Path(sys.argv[1])
bad = {"grade": True, "solution": False, "locked": True, "points": "two",
       "grade_id": "x", "schema_version": 3}
validator = MetadataValidatorV3()
try:
    jsonschema.validate(bad, validator.schema)  # nbgrader's way, before share_engines
except jsonschema.ValidationError as exc:
    plain = exc.message
command = db._alembic_command()  # nbgrader's way: the `alembic` command
db.share_engines()
out = {"head": db.alembic_head(), "command": command, "plain": plain}
import nbformat
cell = nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": bad})
try:
    validator.validate_cell(cell)
except jsonschema.ValidationError as exc:
    out["cached"] = exc.message
cell.metadata["nbgrader"] = nbformat.from_dict(dict(bad, points=2))
validator.validate_cell(cell)  # valid metadata still passes

url = f"sqlite:///{folder / 'gradebook.db'}"
statements = []
def opened(tag):
    with api.Gradebook(url, "attention-lab") as gb:
        engine = gb.engine
        statements.clear()
    return engine
first = opened(1)
event.listen(first, "before_cursor_execute",
             lambda c, cur, stmt, *a: statements.append(stmt))
opened(2)
out["second_open_statements"] = len(statements)
with api.Gradebook(url, "attention-lab") as gb:
    gb.add_student("ada")
    out["version"] = gb.db.execute(api.text("SELECT version_num FROM alembic_version")).scalar()
db.forget_engines()  # a run ends; the gradebook is replaced before the next one
os.remove(folder / "gradebook.db")
with api.Gradebook(url, "attention-lab") as gb:
    out["students_after_replace"] = [s.id for s in gb.students]
    gb.add_student("grace")
print(json.dumps(out))
"""


def test_gradebook_set_up_once_per_engine(tmp_path):
    """share_engines(): nbgrader's per-open schema set-up done once per engine, the same
    alembic head as the `alembic` command, the same schema errors as jsonschema.validate,
    and a gradebook replaced between runs set up again."""
    done = subprocess.run([sys.executable, "-c", SETUP_ONCE, str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PATH": f"{Path(sys.executable).parent}"
                                                     f"{os.pathsep}{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["head"] == out["command"] == out["version"]
    assert out["cached"] == out["plain"] and "two" in out["plain"]
    assert out["second_open_statements"] == 0  # no table listing, no create_all
    assert out["students_after_replace"] == []
