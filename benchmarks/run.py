"""Lesson run time and `check` time: benchmarks/LESSONS.md, a section of BENCHMARKS.md.

    .venv/bin/python benchmarks/run.py            # every lesson
    .venv/bin/python benchmarks/run.py 01 02      # some lessons

Each solution notebook is executed top to bottom with nbclient (as a learner's "Run all"),
then graded once with `python -m autograder check` (nbgrader generate + autograde). Times
are the median of --repeat runs, wall clock, on whatever machine runs this.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from attnlab.tasks import FULL_STEPS, GRADING_STEPS  # noqa: E402
from autograder.course import find_lesson, lessons  # noqa: E402
from autograder.kernels import KernelManager  # noqa: E402

TARGET_S = {"07": 60.0, "08": 60.0, "09": 60.0, "10": 60.0}  # the rest: 30 s (README, "Lessons")


def run_notebook(path: Path, grading: bool = False) -> float:
    """Run all, as a learner anywhere; with grading, as a grader runs it (ATTNLAB_GRADING=1)."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env.pop("ATTNLAB_GRADING", None)
    if grading:
        env["ATTNLAB_GRADING"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": tmp}},
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                kernel_manager_class=KernelManager)  # see autograder/kernels.py
        start = time.perf_counter()
        client.execute(env=env)  # passed on to the kernel manager's start_kernel
        return time.perf_counter() - start


def run_check(path: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--json"],
                   check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lessons", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "LESSONS.md"))
    args = parser.parse_args()
    chosen = [find_lesson(k) for k in args.lessons] or lessons()
    rows = []
    for lesson in chosen:
        run_all = statistics.median(run_notebook(lesson.source) for _ in range(args.repeat))
        check = statistics.median(run_check(lesson.source) for _ in range(args.repeat))
        target = TARGET_S.get(lesson.number, 30.0)
        rows.append(f"| {lesson.name} | {run_all:.1f} | {check:.1f} | {target:.0f} | "
                    f"{'yes' if run_all < target else '**no**'} |")
        print(rows[-1], flush=True)
        if lesson.number in ("07", "10"):  # the lessons that train a model
            short = statistics.median(run_notebook(lesson.source, grading=True)
                                      for _ in range(args.repeat))
            rows.append(f"| {lesson.name}, grading budget (ATTNLAB_GRADING=1) | {short:.1f} | | "
                        f"{target:.0f} | {'yes' if short < target else '**no**'} |")
            print(rows[-1], flush=True)
    command = "`.venv/bin/python benchmarks/run.py" + \
        (" " + " ".join(args.lessons) if args.lessons else "") + f" --repeat {args.repeat}`"
    load = os.getloadavg()[0]
    text = f"""# Lessons: run all and check

Measured by {command} ({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} \
CPUs, Python {platform.python_version()}; load average {load:.1f} when it finished). Median of \
{args.repeat} runs, wall clock, seconds.

- **run all**: the solution notebook executed top to bottom (nbclient, a fresh kernel,
  kernel start-up included), as a learner's "Run all".
- **check**: `python -m autograder check` on the solution notebook, hidden tests included
  (nbgrader's assignment and gradebook cached per lesson version; the grading budget).
- Lessons 07 and 10 train a model. "run all" is the full run a learner gets wherever they
  run the notebook ({FULL_STEPS} steps in lesson 07); the "grading budget" row is the same
  notebook as `check`, `grade`, Validate and nbgrader run it (they set ATTNLAB_GRADING=1:
  {GRADING_STEPS} steps).

| lesson | run all (s) | check (s) | target (s) | within target |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    from report import compose  # benchmarks/report.py, beside this script

    print(f"wrote {args.out} and {compose()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
