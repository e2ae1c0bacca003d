"""Plain `nbgrader autograde` against `python -m autograder grade`, same class, one run.

    .venv/bin/python benchmarks/grading.py                 # 40 learners of lesson 01
    .venv/bin/python benchmarks/grading.py --learners 80 --workers 2

Generates an honest class (correct and typically wrong answers, no hostile code) from
lesson 01's release (tests/grading_fixtures/submissions.py), then in two scratch course
folders:

* **nbgrader**: `nbgrader generate_assignment` (not timed), the notebooks copied into
  `submitted/`, then `nbgrader autograde LESSON` timed; `nbgrader generate_feedback` and
  `nbgrader export` timed separately (the same work `grade` also does);
* **grade**: `python -m autograder grade CLASS --lesson 01` timed as a whole (registering
  the lesson, building the sandbox image, starting workers, collecting, sandboxed
  execution, nbgrader autograde, feedback, export, report).

Both gradebooks are then read: every learner's score on every test cell must be equal.
Writes benchmarks/GRADING.md, a section of BENCHMARKS.md (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from grading_fixtures.submissions import HONEST, LESSON, honest_class  # noqa: E402


def _env() -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                  f"{os.environ.get('PATH', '')}"}


def _nbgrader(course: Path, *args: str) -> float:
    start = time.perf_counter()
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), *args], cwd=course,
                          env=_env(), capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def _scores(db: Path) -> dict[str, dict[str, float]]:
    sys.path.insert(0, str(ROOT))
    from nbgrader.api import Gradebook

    out: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{db}", "attention-lab") as gb:
        for sub in gb.find_assignment(LESSON).submissions:
            nb = gb.find_submission_notebook(LESSON, LESSON, sub.student.id)
            out[sub.student.id] = {g.name: float(g.auto_score or 0.0) for g in nb.grades
                                   if g.cell.cell_type == "code"}
    return out


def _preflight() -> None:
    done = subprocess.run([sys.executable, "-c", "import autograder.checks"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("autograder.checks does not import (a lesson's checks are broken), so "
                         "plain nbgrader would grade every learner zero:\n" + done.stderr[-800:])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=40)
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "GRADING.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--solutions", action="store_true",
                        help="also grade every lesson's solution notebook (full marks?)")
    args = parser.parse_args()
    _preflight()
    tmp = Path(tempfile.mkdtemp(prefix="attnlab-bench-grading-"))
    try:
        folder = tmp / "class"
        expected = honest_class(folder, args.learners)

        plain = tmp / "nbgrader"
        (plain / "solutions").mkdir(parents=True)
        shutil.copytree(ROOT / "solutions" / LESSON, plain / "solutions" / LESSON)
        shutil.copy(ROOT / "nbgrader_config.py", plain)
        _nbgrader(plain, "generate_assignment", LESSON, "--force")
        for student_dir in sorted(folder.iterdir()):
            dest = plain / "submitted" / student_dir.name / LESSON
            dest.mkdir(parents=True)
            shutil.copy(student_dir / f"{LESSON}.ipynb", dest)
        print(f"nbgrader autograde, {args.learners} learners...", flush=True)
        t_autograde = _nbgrader(plain, "autograde", LESSON)
        t_feedback = _nbgrader(plain, "generate_feedback", LESSON)
        t_export = _nbgrader(plain, "export")

        ours = tmp / "grade"
        ours.mkdir()
        command = [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson", "01",
                   "--course", str(ours), "--out", str(ours / "graded"), "--no-progress"]
        if args.workers:
            command += ["--workers", str(args.workers)]
        print("python -m autograder grade...", flush=True)
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=_env())
        t_grade = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(f"grade failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        sandbox = next((ln.split("sandbox: ")[1].rstrip(")") for ln in done.stdout.splitlines()
                        if "sandbox: " in ln), "?")
        workers = next((ln.split(" workers")[0].rsplit(", ", 1)[1]
                        for ln in done.stdout.splitlines() if " workers, sandbox" in ln), "?")

        theirs, mine = _scores(plain / "gradebook.db"), _scores(ours / "gradebook.db")
        differ = sorted(s for s in expected if theirs.get(s) != mine.get(s))
        wrong = sorted(s for s in expected if sum(mine.get(s, {}).values()) != expected[s])
        n_correct = sum(1 for s in expected if expected[s] == 8.0)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    ratio = t_autograde / t_grade
    ratio_all = (t_autograde + t_feedback + t_export) / t_grade
    same = "yes" if not differ else f"**no** ({', '.join(differ)})"
    text = f"""# Grading a class: `grade` against `nbgrader autograde`

Measured by `.venv/bin/python benchmarks/grading.py --learners {args.learners}\
{' --workers ' + str(args.workers) if args.workers else ''}\
{' --solutions' if args.solutions else ''}` \
({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} CPUs, Python \
{platform.python_version()}; `grade` with {workers} workers, sandbox mode `{sandbox}`). One run \
each, wall clock, seconds. The class: {args.learners} learners of lesson 01 cycling through \
{len(HONEST)} honest variants (correct, or one typical mistake: overflowing \
or wrong-axis softmax, scaled or swapped attend, wrong blanks, untouched), \
{n_correct} of them fully correct.

| | seconds | per learner |
|---|---:|---:|
| `nbgrader autograde` (one learner at a time) | {t_autograde:.1f} | \
{t_autograde / args.learners:.2f} |
| `nbgrader generate_feedback` + `export` | {t_feedback + t_export:.1f} | \
{(t_feedback + t_export) / args.learners:.2f} |
| `python -m autograder grade` (all of it: sandboxed, parallel, feedback, export) | \
{t_grade:.1f} | {t_grade / args.learners:.2f} |

- **Speed-up**: {ratio:.2f}x over `nbgrader autograde` alone; {ratio_all:.2f}x over \
autograde + feedback + export, the same work `grade` does.
- **Same grades**: {same}. Every learner's score on every test cell is equal in the two \
gradebooks{'' if not wrong else f'; differ from the expected score: {wrong}'}.
- `grade` includes its fixed start-up (registering the lesson, building the sandbox image, \
forking each worker's pre-imported fork server), paid once per run.
"""
    failures = []
    if args.solutions:
        table, failures = _solutions()
        text += table
    Path(args.out).write_text(text)
    print(text)
    from report import compose  # benchmarks/report.py, beside this script

    print(f"wrote {args.out} and {compose()}")
    return 0 if not differ and not wrong and not failures else 1


def _solutions() -> tuple[str, list[str]]:
    """Every lesson's solution, graded alone by `grade`: full marks, in the sandbox?"""
    from autograder.course import lessons

    rows, failures = [], []
    for lesson in lessons():
        with tempfile.TemporaryDirectory(prefix="attnlab-bench-solution-") as tmp:
            folder, course = Path(tmp) / "class", Path(tmp) / "course"
            (folder / "solution").mkdir(parents=True)
            course.mkdir()
            shutil.copy(lesson.source, folder / "solution")
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson",
                 lesson.number, "--course", str(course), "--out", str(course / "graded"),
                 "--no-progress"], cwd=ROOT, capture_output=True, text=True, env=_env())
            seconds = time.perf_counter() - start
            import json

            report = course / "graded" / "report.json"
            result = json.loads(report.read_text())["learner_results"]["solution"] \
                if report.exists() else {}
            score, top = result.get("score"), result.get("max_score")
            full = done.returncode == 0 and score is not None and score == top
            if not full:
                failures.append(lesson.name)
            rows.append(f"| {lesson.name} | {score} / {top} | {seconds:.1f} | "
                        f"{'yes' if full else '**no**'} |")
            print(rows[-1], flush=True)
    table = ("\nEvery lesson's solution notebook graded on its own by `grade` (sandboxed, "
             "this lesson's reference withheld), `benchmarks/grading.py --solutions`:\n\n"
             "| lesson | autograded score | seconds (whole run) | full marks |\n"
             "|---|---|---:|---|\n" + "\n".join(rows) + "\n")
    return table, failures


if __name__ == "__main__":
    raise SystemExit(main())
