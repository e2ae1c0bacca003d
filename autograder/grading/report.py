"""The closing summary: learners, graded, failed and why, mean score per test, one line per
learner whose run had something to say (``report.txt`` and ``report.json`` in --out)."""

from __future__ import annotations

import json
import os
import time

import nbformat

from .db import redact


def _tests_in_order(release_path) -> list[str]:
    nb = nbformat.read(release_path, as_version=4)
    return [c.metadata["nbgrader"]["grade_id"] for c in nb.cells
            if c.cell_type == "code" and c.get("metadata", {}).get("nbgrader", {}).get("grade")
            and not c.metadata["nbgrader"].get("solution")]


def write_report(run, echo=print) -> dict:
    outcomes = run.outcomes
    graded = {s: o for s, o in outcomes.items() if o.status == "graded"}
    failed = {s: o for s, o in outcomes.items() if o.status == "failed"}
    tests = _tests_in_order(run.release)
    means: dict[str, tuple[float, float]] = {}
    for test in tests:
        scores = [o.tests[test][0] or 0.0 for o in graded.values() if test in o.tests]
        maxima = [o.tests[test][1] for o in graded.values() if test in o.tests]
        if scores:
            means[test] = (sum(scores) / len(scores), maxima[0])
    totals = [o.score for o in graded.values() if o.score is not None]
    max_total = next((o.max_score for o in graded.values() if o.max_score), 0.0)
    elapsed = time.monotonic() - run.started
    lines = [
        f"Graded {run.lesson.name}: {len(outcomes)} learners, {len(graded)} graded, "
        f"{len(failed)} failed to grade ({elapsed:.1f} s, {len(run.workers)} workers, "
        f"sandbox: {run.mode})",
    ]
    if failed:
        lines.append("")
        lines.append("Failed to grade (nothing was written for them; re-run to retry):")
        lines += [f"  {o.learner.label}: {o.reason}" for o in failed.values()]
    if means:
        width = max(len(t) for t in [*means, "total"])
        lines += ["", "Mean score per test (autograded points):",
                  f"  {'test':<{width}}  {'mean':>6}  {'max':>5}"]
        for test, (mean, top) in means.items():
            lines.append(f"  {test:<{width}}  {mean:>6.2f}  {top:>5g}")
        if totals:
            lines.append(f"  {'total':<{width}}  {sum(totals) / len(totals):>6.2f}  "
                         f"{max_total:>5g}")
    notes = [(o.learner.label, o.learner.notes + o.events) for o in graded.values()
             if o.learner.notes or o.events]
    if notes:
        lines += ["", "Notes (one line per event):"]
        for label, items in notes:
            lines += [f"  {label}: {item}" for item in items]
    feedback = run.out / "feedback"
    lines += ["", f"Gradebook: {redact(run.db_url)}",
              f"Grades:    {run.out / 'grades.csv'}",
              f"Feedback:  {feedback}/<learner>/{run.lesson.name}/{run.lesson.name}.html",
              f"Report:    {run.out / 'report.txt'}",
              "Manual grading: open formgrader (make instructor) at the course root."]
    text = "\n".join(lines)
    data = {
        "lesson": run.lesson.name, "learners": len(outcomes), "graded": len(graded),
        "failed": {o.learner.student: o.reason for o in failed.values()},
        "sandbox": run.mode, "seconds": round(elapsed, 2),
        "mean_per_test": {t: m for t, (m, _) in means.items()},
        "learner_results": {
            s: {"status": o.status, "score": o.score, "max_score": o.max_score,
                "tests": {t: v[0] for t, v in o.tests.items()},
                "notes": o.learner.notes + o.events, "reason": o.reason}
            for s, o in sorted(outcomes.items())},
    }
    for name, content in (("report.txt", text + "\n"), ("report.json", json.dumps(data,
                                                                                indent=1))):
        tmp = run.out / f".{name}.tmp"
        tmp.write_text(content, encoding="utf-8")
        os.replace(tmp, run.out / name)
    echo(text)
    return data
