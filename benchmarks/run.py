"""Measure what the course promises: lesson run time and `check` time, written to BENCHMARKS.md.

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

from autograder.course import find_lesson, lessons  # noqa: E402

TARGET_S = {"07": 60.0, "08": 60.0, "09": 60.0}  # the rest: 30 s (STYLE.md)


def run_notebook(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
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
    parser.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
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
    command = "`.venv/bin/python benchmarks/run.py" + \
        (" " + " ".join(args.lessons) if args.lessons else "") + f" --repeat {args.repeat}`"
    text = f"""# Benchmarks

Measured by {command} ({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} \
CPUs, Python {platform.python_version()}). Median of {args.repeat} runs, wall clock, seconds.

- **run all**: the solution notebook executed top to bottom (nbclient, a fresh kernel,
  kernel start-up included), as a learner's "Run all".
- **check**: `python -m autograder check` on the solution notebook: nbgrader
  `generate_assignment` + `autograde` (hidden tests included) in a scratch course.

| lesson | run all (s) | check (s) | target (s) | within target |
|---|---|---|---|---|
""" + "\n".join(rows) + "\n"
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
