"""Does `grade` write a shared PostgreSQL gradebook, two workers and two runs at once?

A real PostgreSQL from Debian's packages, on loopback, run as the `postgres` user (it refuses
root). `make system-deps` installs it (`make test` does, as root); without it the test skips
with a one-line reason.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from autograder.course import ROOT

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests/grading_fixtures
from grading_fixtures import isolation_flags  # noqa: E402
from grading_fixtures.submissions import LESSON, honest_class  # noqa: E402

pytestmark = [pytest.mark.notebook, pytest.mark.xdist_group("grading-postgres")]


def _bin(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def _require_postgres() -> None:
    if not (_bin("initdb") and _bin("pg_ctl")):
        pytest.skip("PostgreSQL is not installed (make system-deps)")


def _as_postgres(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def postgres():
    try:
        import psycopg2  # noqa: F401
    except ImportError:
        pytest.skip("psycopg2-binary is not installed (make setup installs the test extra)")
    _require_postgres()
    home = Path(tempfile.mkdtemp(prefix="attnlab-pg-"))
    password = secrets.token_hex(12)
    (home / "pw").write_text(password)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    if os.geteuid() == 0:
        shutil.chown(home, "postgres")
        shutil.chown(home / "pw", "postgres")
    data = home / "data"
    _as_postgres([_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", f"--pwfile={home / 'pw'}"])
    _as_postgres([_bin("pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w", "-t", "60",
                  "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {home}", "start"])
    try:
        url = f"postgresql://postgres:{password}@127.0.0.1:{port}"
        import psycopg2

        con = psycopg2.connect(f"{url}/postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE gradebook")
        con.close()
        yield f"{url}/gradebook"
    finally:
        _as_postgres([_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(home, ignore_errors=True)


def test_two_runs_with_two_workers_fill_one_postgres_gradebook(postgres, tmp_path):
    """Do two grading runs (two workers each), at once, put every grade in PostgreSQL?"""
    isolation = isolation_flags()
    expected, runs = {}, []
    for name in ("ta1", "ta2"):
        folder, course = tmp_path / f"class-{name}", tmp_path / f"course-{name}"
        course.mkdir()
        for student, score in honest_class(folder, 4).items():
            (folder / student).rename(folder / f"{name}-{student}")
            expected[f"{name}-{student}"] = score
        runs.append((course, subprocess.Popen(
            [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "01",
             "--course", str(course), "--out", str(course / "graded"), "--workers", "2",
             "--db", postgres, "--no-progress", *isolation],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
        time.sleep(1.0)  # the second run starts while the first is registering the lesson
    for course, proc in runs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, out[-2000:] + err[-2000:]
        assert postgres.split("@")[0].split(":")[-1] not in out + err  # no password shown
        assert not (course / "gradebook.db").exists()  # SQLite stays untouched

    from nbgrader.api import Gradebook

    from autograder.grading.db import normalize_url

    with Gradebook(normalize_url(postgres), "attention-lab") as gb:
        assignment = gb.find_assignment(LESSON)
        assert {s.student.id for s in assignment.submissions} == set(expected)
        for student, score in expected.items():
            sub = gb.find_submission_notebook(LESSON, LESSON, student)
            autograded = [g for g in sub.grades if g.cell.cell_type == "code"]
            assert len(autograded) == 6 and all(g.auto_score is not None for g in autograded)
            assert sum(g.auto_score for g in autograded) == score, student
