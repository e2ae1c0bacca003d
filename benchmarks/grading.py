"""Plain `nbgrader autograde` against `python -m autograder grade`, same class, same window.

    .venv/bin/python benchmarks/grading.py                  # 40 learners of lesson 01
    .venv/bin/python benchmarks/grading.py --lesson 01 --lesson 06:20 --repeat 2 \
        --growth 160,640                                    # what BENCHMARKS.md shows

For each lesson a class is generated from its release: lesson 01 from the honest variants
of tests/grading_fixtures/submissions.py (correct and typically wrong answers, with their
expected scores); any other lesson cycles through correct (every solution cell as in the
source), half done (the first half of them) and untouched. Then, ``--repeat`` times, in
scratch course folders and one right after the other (so both see the same load):

* **nbgrader**: `nbgrader generate_assignment` (not timed), the notebooks copied into
  `submitted/`, `nbgrader autograde LESSON` timed; `generate_feedback` + `export` timed
  separately (work `grade` also does);
* **grade**: `python -m autograder grade CLASS --lesson NN` timed as a whole (registering
  the lesson, the sandbox image, starting workers, collecting, sandboxed execution,
  verdicts, nbgrader autograde, feedback, export, report, insight).

Both gradebooks are read: every learner's score on every test cell must be equal (and on
lesson 01 equal to the expected score). The per-learner breakdown comes from the run itself:
each grading worker reports its stages per learner and the main process its autograde into
the journal (`.grading/NN_x/journal.jsonl`), the run's phases are in `timings.json`. Peak
memory is sampled every 0.2 s over the command's whole process tree (PSS: pages shared by a
fork server and its kernels counted once). ``--growth`` grades larger classes of the first
lesson with `grade` only (plain nbgrader is run at the smallest size; see the text).
Writes benchmarks/GRADING.md, a section of BENCHMARKS.md (benchmarks/report.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from grading_fixtures.submissions import HONEST, LESSON, honest_class  # noqa: E402

STAGES = ("sanitise", "fork", "execute", "teardown", "verdicts", "write", "autograde",
          "feedback")


def _env() -> dict:
    # plain nbgrader's kernels import this checkout's checks (not another installed copy)
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                  f"{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT)}


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree(pid: int) -> list[int]:
    """pid and its descendants (by /proc/*/stat parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(parents.get(p, []))
    return out


def _timed(command: list[str], cwd: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run ``command``; wall seconds and peak PSS (MiB) of its process tree."""
    peak = [0]
    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(_pss_kb(p) for p in _tree(proc.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    sampler.join()
    return elapsed, peak[0] / 1024, subprocess.CompletedProcess(command, proc.returncode,
                                                                out, err)


def _nbgrader(course: Path, *args: str) -> tuple[float, float]:
    seconds, peak, done = _timed([str(Path(sys.executable).parent / "nbgrader"), *args],
                                 course)
    if done.returncode != 0:
        raise SystemExit(f"nbgrader {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, peak


def _scores(db: Path, lesson: str) -> dict[str, dict[str, float]]:
    from nbgrader.api import Gradebook

    out: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{db}", "attention-lab") as gb:
        for sub in gb.find_assignment(lesson).submissions:
            nb = gb.find_submission_notebook(lesson, lesson, sub.student.id)
            out[sub.student.id] = {g.name: float(g.auto_score or 0.0) for g in nb.grades
                                   if g.cell.cell_type == "code"}
    return out


def _preflight() -> None:
    done = subprocess.run([sys.executable, "-c", "import autograder.checks"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit("autograder.checks does not import (a lesson's checks are broken), so "
                         "plain nbgrader would grade every learner zero:\n" + done.stderr[-800:])


def _solution_class(lesson, folder: Path, n: int) -> dict[str, float | None]:
    """``n`` learners of any lesson: correct, half done, untouched (no expected scores)."""
    import nbformat

    source = nbformat.read(lesson.source, as_version=4)
    answers = {}
    for cell in source.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and meta.get("grade_id"):
            lines = [ln for ln in cell.source.splitlines()
                     if "BEGIN SOLUTION" not in ln and "END SOLUTION" not in ln]
            answers[meta["grade_id"]] = "\n".join(lines)
    ids = list(answers)
    variants = {"correct": ids, "half-done": ids[:len(ids) // 2], "untouched": []}
    names = list(variants)
    for i in range(n):
        variant = names[i % len(names)]
        nb = nbformat.read(lesson.release, as_version=4)
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in variants[variant]:
                cell.source = answers[gid]
        student = f"s{i:03d}-{variant}"
        (folder / student).mkdir(parents=True)
        nbformat.write(nb, folder / student / f"{lesson.name}.ipynb")
    return {}


def _class(lesson, folder: Path, n: int) -> dict[str, float]:
    if lesson.name == LESSON:
        return honest_class(folder, n)
    return _solution_class(lesson, folder, n)


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def _breakdown(course: Path, lesson: str) -> dict:
    """Per learner, from the run's journal and timings.json: seconds of each stage."""
    state = course / ".grading" / lesson
    stages: dict[str, list[float]] = {k: [] for k in STAGES}
    for line in (state / "journal.jsonl").read_text().splitlines():
        entry = json.loads(line)
        for key, value in (entry.get("timings") or {}).items():
            stages.setdefault(key, []).append(float(value))
    timings = json.loads((state / "timings.json").read_text())
    return {"stages": stages, "phases": timings["phases"], "workers": timings["workers"]}


def _grade(lesson, folder: Path, course: Path, workers: int) -> dict:
    command = [sys.executable, "-m", "autograder", "grade", str(folder), "--lesson",
               lesson.number, "--course", str(course), "--out", str(course / "graded"),
               "--no-progress"]
    if workers:
        command += ["--workers", str(workers)]
    seconds, peak, done = _timed(command, ROOT)
    if done.returncode != 0:
        raise SystemExit(f"grade failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    sandbox = next((ln.split("sandbox: ")[1].rstrip(")") for ln in done.stdout.splitlines()
                    if "sandbox: " in ln), "?")
    return {"seconds": seconds, "peak": peak, "sandbox": sandbox,
            **_breakdown(course, lesson.name)}


def _one(lesson, n: int, workers: int, with_nbgrader: bool, keep: bool) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="attnlab-bench-grading-"))
    try:
        folder = tmp / "class"
        expected = _class(lesson, folder, n)
        row: dict = {"lesson": lesson.name, "learners": n, "load_before": _load()}
        if with_nbgrader:
            plain = tmp / "nbgrader"
            (plain / "solutions").mkdir(parents=True)
            shutil.copytree(lesson.source_dir, plain / "solutions" / lesson.name)
            shutil.copy(ROOT / "nbgrader_config.py", plain)
            _nbgrader(plain, "generate_assignment", lesson.name, "--force")
            for student_dir in sorted(folder.iterdir()):
                dest = plain / "submitted" / student_dir.name / lesson.name
                dest.mkdir(parents=True)
                shutil.copy(student_dir / f"{lesson.name}.ipynb", dest)
            print(f"  nbgrader autograde, {lesson.name}, {n} learners...", flush=True)
            row["nbgrader"], row["nbgrader_peak"] = _nbgrader(plain, "autograde", lesson.name)
            row["nbgrader_feedback"] = _nbgrader(plain, "generate_feedback", lesson.name)[0] \
                + _nbgrader(plain, "export")[0]
        ours = tmp / "grade"
        ours.mkdir()
        print(f"  python -m autograder grade, {lesson.name}, {n} learners...", flush=True)
        row.update(_grade(lesson, folder, ours, workers))
        row["load_after"] = _load()
        mine = _scores(ours / "gradebook.db", lesson.name)
        students = sorted(p.name for p in folder.iterdir())
        if with_nbgrader:
            theirs = _scores(plain / "gradebook.db", lesson.name)
            row["differ"] = sorted(s for s in students if theirs.get(s) != mine.get(s))
        row["wrong"] = sorted(s for s in expected if sum(mine.get(s, {}).values())
                              != expected[s])
        row["missing"] = sorted(s for s in students if s not in mine)
        print(f"  -> {json.dumps({k: v for k, v in row.items() if k not in ('stages',)})}",
              flush=True)
        return row
    finally:
        if keep:
            print(f"  kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _table(rows: list[dict]) -> str:
    out = ["| lesson | learners | `nbgrader autograde` s | `grade` s | speed-up (median, "
           "all runs) | + feedback & export: speed-up | load avg (1/5/15 min) before "
           "-> after | same scores |",
           "|---|---:|---:|---:|---|---:|---|---|"]
    keyed: dict[tuple, list[dict]] = {}
    for row in rows:
        if "nbgrader" in row:
            keyed.setdefault((row["lesson"], row["learners"]), []).append(row)
    for (lesson, n), runs in keyed.items():
        ratios = [r["nbgrader"] / r["seconds"] for r in runs]
        ratios_all = [(r["nbgrader"] + r["nbgrader_feedback"]) / r["seconds"] for r in runs]
        same = all(not r["differ"] and not r["wrong"] and not r["missing"] for r in runs)
        out.append(
            f"| {lesson[:2]} | {n} | {_median([r['nbgrader'] for r in runs]):.1f} | "
            f"{_median([r['seconds'] for r in runs]):.1f} | **{_median(ratios):.2f}x** "
            f"({', '.join(f'{x:.2f}' for x in ratios)}) | {_median(ratios_all):.2f}x | "
            + "; ".join(f"{r['load_before']} -> {r['load_after']}" for r in runs)
            + f" | {'yes' if same else '**no**'} |")
    return "\n".join(out)


def _breakdown_table(row: dict) -> str:
    n = row["learners"]
    stages, phases = row["stages"], row["phases"]
    labels = {
        "sanitise": "sanitise (nbgrader's sanitising preprocessors, in the worker)",
        "fork": "kernel fork (fork server -> confined kernel answering)",
        "execute": "execution (the notebook's cells in the sandbox)",
        "teardown": "kernel teardown (kill, strays)",
        "verdicts": "verdicts (trusted compare of the records)",
        "write": "result file",
        "autograde": "autograde bookkeeping (nbgrader autograde, main process)",
        "feedback": "feedback (nbgrader generate_feedback HTML, in the worker)",
    }
    out = ["| stage, per learner | median s | mean s | total s (all learners) |",
           "|---|---:|---:|---:|"]
    busy = 0.0
    for key in STAGES:
        values = stages.get(key) or []
        if not values:
            continue
        busy += sum(values)
        out.append(f"| {labels[key]} | {statistics.median(values):.3f} | "
                   f"{sum(values) / len(values):.3f} | {sum(values):.1f} |")
    once = {k: v for k, v in phases.items() if k != "grading"}
    out.append(f"| **sum of the stages** (CPU-bound work shared by {row['workers']} workers "
               f"and the main process) | | {busy / n:.3f} | {busy:.1f} |")
    out.append("")
    out.append("Once per run (seconds): " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}"
                                                      for k, v in once.items())
               + f"; the grading loop itself {phases.get('grading', 0):.1f} s of the "
               f"{row['seconds']:.1f} s wall clock ({row['seconds'] / n:.3f} s per learner).")
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lesson", action="append", default=None,
                        help="lesson to compare with nbgrader, NN or NN:LEARNERS (repeatable; "
                             "default 01 with --learners)")
    parser.add_argument("--learners", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=1, help="runs per lesson (median)")
    parser.add_argument("--growth", default="",
                        help="larger classes of the first lesson, `grade` only: 160,640")
    parser.add_argument("--no-nbgrader", action="store_true",
                        help="`grade` only (cost growth without the comparison)")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "GRADING.md"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch folders")
    parser.add_argument("--solutions", action="store_true",
                        help="also grade every lesson's solution notebook (full marks?)")
    args = parser.parse_args()
    from autograder.course import find_lesson

    _preflight()
    lessons = []
    for key in args.lesson or ["01"]:
        number, _, count = key.partition(":")
        lessons.append((find_lesson(number), int(count) if count else args.learners))
    rows: list[dict] = []
    growth: list[dict] = []
    for rep in range(args.repeat):
        for lesson, n in lessons:
            print(f"run {rep + 1}/{args.repeat}", flush=True)
            rows.append(_one(lesson, n, args.workers, not args.no_nbgrader, args.keep))
            Path(args.out).write_text(_report(args, rows, rows[:1]))  # so far
    growth = rows[:1]
    for n in [int(n) for n in args.growth.split(",") if n.strip()]:
        growth.append(_one(lessons[0][0], n, args.workers, False, args.keep))
        Path(args.out).write_text(_report(args, rows, growth))  # so far
    text = _report(args, rows, growth)
    failures = []
    if args.solutions:
        table, failures = _solutions()
        text += table
    Path(args.out).write_text(text)
    print(text)
    from report import compose  # benchmarks/report.py, beside this script

    print(f"wrote {args.out} and {compose()}")
    bad = any(r.get("differ") or r.get("wrong") or r.get("missing") for r in rows + growth)
    return 0 if not bad and not failures else 1


def _report(args, rows: list[dict], growth: list[dict]) -> str:
    first = rows[0]
    command = (".venv/bin/python benchmarks/grading.py"
               + "".join(f" --lesson {k}" for k in (args.lesson or []))
               + (f" --learners {args.learners}" if args.learners != 40 else "")
               + (f" --repeat {args.repeat}" if args.repeat != 1 else "")
               + (f" --growth {args.growth}" if args.growth else "")
               + (f" --workers {args.workers}" if args.workers else "")
               + (" --no-nbgrader" if args.no_nbgrader else "")
               + (" --solutions" if args.solutions else ""))
    loads = [float(r["load_before"].split("/")[0]) for r in rows + growth] + \
        [float(r["load_after"].split("/")[0]) for r in rows + growth]
    loaded = max(loads) >= 1.0
    lines = [
        "# Grading a class: `grade` against `nbgrader autograde`",
        "",
        f"Measured by `{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
        f"`grade` with {first['workers']} workers, sandbox mode `{first['sandbox']}`). Wall "
        "clock seconds; each `grade` run right after the `nbgrader autograde` run it is "
        "compared with, in fresh course folders. Lesson 01's class cycles through "
        f"{len(HONEST)} honest variants (correct, or one typical mistake), other lessons' "
        "through correct, half done and untouched.",
        "",
    ]
    if loaded:
        lines += [f"**Taken under load**: other work shared the machine (1-minute load "
                  f"average {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs, "
                  "column below); `grade` uses every core and plain nbgrader one, so load "
                  "costs `grade` more: on an idle machine the ratios are higher. Ratios are "
                  "the median of the runs.", ""]
    lines += [_table(rows), "",
              "- **Same scores** means every learner's score on every test cell is equal in "
              "the two gradebooks (and, on lesson 01, equal to the variant's expected "
              "score).",
              "- `grade` includes its fixed start-up (registering the lesson, building the "
              "sandbox image, the pre-imported fork server, the workers), its feedback, "
              "export, report and insight; `nbgrader autograde` writes none of these "
              "(the next column adds its `generate_feedback` + `export`).", ""]
    for lesson in dict.fromkeys(r["lesson"] for r in rows):
        row = next(r for r in rows if r["lesson"] == lesson)
        lines += [f"Where a learner's time goes in `grade` (lesson {lesson[:2]}, "
                  f"{row['learners']} learners, first run; from the run's journal):", "",
                  _breakdown_table(row), ""]
    plain = (f"plain nbgrader is run at {first['learners']} learners only: at its measured "
             "seconds per learner, 640 learners would take about "
             f"{first['nbgrader'] / first['learners'] * 640 / 60:.0f} minutes per run"
             ) if "nbgrader" in first else "plain nbgrader not run (--no-nbgrader)"
    lines += [f"Cost growth (`grade` only, lesson {growth[0]['lesson'][:2]}; {plain}):", "",
              "| learners | `grade` s | s per learner | peak memory, whole tree (PSS MiB) | "
              "load avg before -> after | same scores |", "|---:|---:|---:|---:|---|---|"]
    for row in growth:
        ok = not row.get("differ") and not row.get("wrong") and not row.get("missing")
        lines.append(f"| {row['learners']} | {row['seconds']:.1f} | "
                     f"{row['seconds'] / row['learners']:.3f} | {row['peak']:.0f} | "
                     f"{row['load_before']} -> {row['load_after']} | "
                     f"{'yes' if ok else '**no**'} |")
    if len(growth) >= 2:
        a, b = growth[-2], growth[-1]
        slope = (b["seconds"] - a["seconds"]) / (b["learners"] - a["learners"])
        fixed = b["seconds"] - slope * b["learners"]
        # below a second the fixed part is within the rows' noise (it can come out < 0)
        cost = (f"{fixed:.0f} s + {slope:.3f} s per learner" if fixed >= 1 else
                f"{slope:.3f} s per learner (no fixed part above the noise)")
        lines += ["", f"Predicting a class: about {cost} on this machine (the last two "
                  f"rows), so 600 learners in about {(max(fixed, 0) + slope * 600) / 60:.1f} "
                  "minutes. Peak memory went from "
                  f"{growth[0]['peak']:.0f} MiB ({growth[0]['learners']} learners) to "
                  f"{b['peak']:.0f} MiB ({b['learners']}): one kernel per worker at a time, "
                  "the gradebook on disk."]
        if "nbgrader_peak" in first:
            lines[-1] += (" Plain nbgrader's autograde peaked at "
                          f"{first['nbgrader_peak']:.0f} MiB (one kernel at a time).")
    return "\n".join(lines) + "\n"


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
