"""What `python -m autograder check` costs beyond the notebook itself: benchmarks/CHECK.md.

    .venv/bin/python benchmarks/check_overhead.py              # every lesson
    .venv/bin/python benchmarks/check_overhead.py 01 06 --repeat 1

For every lesson's solution and untouched release:

* **plain run**: the notebook executed top to bottom in a warm kernel (an IPython kernel
  already started and answering; its start-up is not counted), with ``ATTNLAB_GRADING=1``
  so lesson 07 trains the same short budget as under ``check``. The notebook's own imports
  (torch and co.) are part of its run.
* **check cold**: ``python -m autograder check NB --json`` as a new process with an empty
  cache (``ATTNLAB_CACHE`` pointed at a fresh folder): the lesson's assignment and
  gradebook are built first.
* **check warm**: the same command again, the cache filled.
* **nbgrader path**: ``check --nbgrader``, nbgrader's full generate_assignment +
  autograde in a scratch course: what ``check`` did before this cache and kernel.

Overhead = check minus plain run. Then the two-at-once rows: the warm check of one
solution notebook alone, and of two copies started together (two learners of one lesson
on one machine), wall time until both are done. Each figure is the median of --repeat
runs, wall clock, seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
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
from autograder.kernels import KernelManager  # noqa: E402

CHECK = [sys.executable, "-m", "autograder", "check"]


def _cpu(pid: int) -> float:
    """CPU seconds (user + system) a live process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain_run(path: Path) -> tuple[float, float]:
    """Seconds (wall, CPU) to run every cell of the notebook in an already started kernel."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        client = NotebookClient(nb, timeout=600, allow_errors=True,
                                extra_arguments=["--IPKernelApp.log_level=ERROR"],
                                kernel_manager_class=KernelManager)  # check's client
        client.reset_execution_trackers()
        with client.setup_kernel(cwd=tmp, env={**os.environ, "ATTNLAB_GRADING": "1"}):
            pid = client.km.provisioner.process.pid
            cpu, start = _cpu(pid), time.perf_counter()  # the kernel has answered: warm
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)
            return time.perf_counter() - start, _cpu(pid) - cpu


def check_once(paths: list[Path], cache: Path, *flags: str) -> tuple[float, float]:
    """Seconds (wall, CPU of every process) until `check` has finished on every path (all
    started together)."""
    env = {**os.environ, "ATTNLAB_CACHE": str(cache)}
    cpu, start = _children_cpu(), time.perf_counter()
    procs = [subprocess.Popen([*CHECK, str(p), "--json", *flags], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for p in paths]
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"check failed: {err.decode()[-500:]}")
    return time.perf_counter() - start, _children_cpu() - cpu


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def measure(path: Path, repeat: int) -> dict[str, tuple[float, float]]:
    plain = _median([plain_run(path) for _ in range(repeat)])
    cold, warm = [], []
    for _ in range(repeat):
        cache = Path(tempfile.mkdtemp(prefix="attnlab-bench-cache-"))
        try:
            cold.append(check_once([path], cache))
            warm.append(check_once([path], cache))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
    with tempfile.TemporaryDirectory() as cache:
        before = _median([check_once([path], Path(cache), "--nbgrader") for _ in range(repeat)])
    return {"plain": plain, "cold": _median(cold), "warm": _median(warm), "before": before}


def two_at_once(path: Path, repeat: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        copies = [Path(tmp) / f"learner{i}" / path.name for i in (1, 2)]
        for copy in copies:
            copy.parent.mkdir()
            shutil.copyfile(path, copy)
        cache = Path(tmp) / "cache"
        check_once(copies[:1], cache)  # fill the cache
        one = statistics.median(check_once(copies[:1], cache)[0] for _ in range(repeat))
        two = statistics.median(check_once(copies, cache)[0] for _ in range(repeat))
    return one, two


PAIR_DEFAULT = ["01", "06"]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("lessons", nargs="*")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pair", nargs="*", default=PAIR_DEFAULT,
                        help="lessons for the two-at-once rows")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "CHECK.md"))
    args = parser.parse_args()
    chosen = [find_lesson(k) for k in args.lessons] or lessons()
    load_start = os.getloadavg()[0]
    rows: list[str] = []
    pairs: list[str] = []
    worst = {"cold": 0.0, "warm": 0.0}
    for key in args.pair:  # first: the row a lab session cares most about
        lesson = find_lesson(key)
        one, two = two_at_once(lesson.source, args.repeat)
        pairs.append(f"| {lesson.name} | {one:.1f} | {two:.1f} | {two / one:.2f}x |")
        print(pairs[-1], flush=True)
    for i, lesson in enumerate(chosen):
        for kind, path in (("solution", lesson.source), ("untouched", lesson.release)):
            m = measure(path, args.repeat)
            plain = m["plain"][0]
            for key in worst:
                worst[key] = max(worst[key], m[key][0] - plain)
            cells = " | ".join(f"{m[k][0]:.1f} ({m[k][0] - plain:+.1f})"
                               for k in ("cold", "warm", "before"))
            rows.append(f"| {lesson.name} | {kind} | {plain:.1f} | {cells} | "
                        f"{m['plain'][1]:.1f} / {m['warm'][1]:.1f} |")
            print(rows[-1], flush=True)
        unmeasured = [les.name for les in chosen[i + 1:]]
        write_section(args, rows, pairs, worst, load_start, unmeasured)
    from report import compose  # benchmarks/report.py, beside this script

    print(f"wrote {args.out} and {compose()}")
    return 0


def write_section(args, rows, pairs, worst, load_start, unmeasured) -> None:
    """The section as measured so far (rewritten after each lesson)."""
    command = "`.venv/bin/python benchmarks/check_overhead.py" + \
        (" " + " ".join(args.lessons) if args.lessons else "") + f" --repeat {args.repeat}" + \
        (" --pair " + " ".join(args.pair) if args.pair != PAIR_DEFAULT else "") + "`"
    load_end = os.getloadavg()[0]
    text = f"""# The self-check: overhead over the notebook's own run

Measured by {command} ({time.strftime('%Y-%m-%d')}; {platform.machine()}, {os.cpu_count()} \
CPUs, Python {platform.python_version()}; load average {load_start:.1f} when it started and \
{load_end:.1f} when this was written: other programs shared the machine, so single figures move \
by tens of percent). Median of {args.repeat} runs, wall clock, seconds.

- **plain run**: the notebook top to bottom in a warm kernel (already started; its own
  imports count), with `ATTNLAB_GRADING=1` as under check (lesson 07's short budget).
- **check cold**: `python -m autograder check NB --json`, a new process, empty cache
  (the lesson's nbgrader assignment and gradebook are built during the check).
- **check warm**: the same with the cache filled (the usual case: every check after a
  lesson's first).
- **nbgrader path**: `check --nbgrader`, nbgrader's full `generate_assignment` +
  `autograde` in a scratch course, which is what `check` did before.
- **overhead** (in brackets) = check minus plain run. Largest here: {worst['cold']:+.1f} s \
cold, {worst['warm']:+.1f} s warm.
- **CPU**: CPU seconds (user + system) of the plain run's kernel, and of every process of
  the warm check (its own, its kernel's start-up and run): less sensitive to the machine's
  load than wall time; the difference is the work two checks at once compete for.

| lesson | notebook | plain run | check cold | check warm | nbgrader path | CPU plain / warm |
|---|---|---:|---:|---:|---:|---:|
""" + "\n".join(rows) + """

Two learners at once: the warm check of a copy of the solution notebook alone, then of
two copies started together (wall time until both are done).

| lesson | one check | two at once | ratio |
|---|---:|---:|---:|
""" + "\n".join(pairs) + "\n" + (
        f"\nNot measured yet when this was written: {', '.join(unmeasured)}.\n"
        if unmeasured else "")
    Path(args.out).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
