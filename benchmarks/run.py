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

TARGET_S = {"07": 60.0, "08": 60.0, "09": 60.0, "10": 60.0}  # the rest: 30 s (README, "Lessons")


BUDGET_LINE = "steps = GRADING_STEPS if grading_run() else FULL_STEPS"


def run_notebook(path: Path, full_training: bool = False) -> float:
    nb = nbformat.read(path, as_version=4)
    if full_training:  # lesson 07 as in JupyterLab: the full training run, not the short one
        cells = [c for c in nb.cells if BUDGET_LINE in c.source]
        if len(cells) != 1:
            raise SystemExit(f"{path.name}: no single cell sets the training budget")
        cells[0].source = cells[0].source.replace(BUDGET_LINE, "steps = FULL_STEPS")
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": tmp}},
                                extra_arguments=["--IPKernelApp.log_level=ERROR"])
        start = time.perf_counter()
        client.execute()
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
            full = statistics.median(run_notebook(lesson.source, full_training=True)
                                     for _ in range(args.repeat))
            rows.append(f"| {lesson.name}, full training (as in JupyterLab) | {full:.1f} | | "
                        f"{target:.0f} | {'yes' if full < target else '**no**'} |")
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
- **check**: `python -m autograder check` on the solution notebook: nbgrader
  `generate_assignment` + `autograde` (hidden tests included) in a scratch course.
- Lesson 07 trains a model. Run outside JupyterLab (as here, and whenever nbgrader runs
  it) it trains for its short stated budget ({GRADING_STEPS} steps); the "full training" row
  is the same notebook with the {FULL_STEPS}-step run a learner gets in JupyterLab.

| lesson | run all (s) | check (s) | target (s) | within target |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    from report import compose  # benchmarks/report.py, beside this script

    print(f"wrote {args.out} and {compose()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
