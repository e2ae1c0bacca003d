"""The closing summary of a grading run: ``report.txt`` (for a person) and ``report.json``
(for programs) in --out (default ``graded/NN_lesson/``).

``report.txt``: learners, graded, failed to grade and why; what the scores are out of; how
many written answers still wait for a manual grade; the mean score per test; one row per
learner (status, score, failed tests, notes); the notes themselves (a timeout, a crash,
an output flood, a renamed or broken file: cells are quoted by their first line and their
``In [n]``, as the feedback shows them).

``report.json`` (one object):

* ``lesson``, ``learners`` (count), ``graded`` (count), ``failed`` ({student: reason}),
  ``sandbox`` (root | userns | none), ``seconds``;
* ``mean_per_test``: {grade_id: mean autograded points}, in notebook order;
* ``autograded_max``: the autograded points a learner can get (the summary's "/N");
  ``manual_max``: points of written answers graded by hand (grades.csv's ``max_score`` is
  the sum of both); ``pending_manual``: how many written answers still await a grade;
* ``due``: the due date given with ``--due`` (ISO 8601, UTC) or null;
* ``learner_results``: {student: {``status`` (graded | failed), ``score`` (autograded
  points), ``max_score`` (autograded maximum), ``tests`` ({grade_id: points}),
  ``failed_tests`` ([grade_id]), ``pending_manual`` ([grade_id of written answers not
  graded yet]), ``timestamp`` (submission time, "" if unknown), ``late`` (past ``--due``,
  or marked late by the LMS), ``lms_name`` (the name an LMS zip's file name gave, as is),
  ``notes`` ([str]), ``reason`` (why grading failed, "")}}.
"""

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


def _failed_tests(outcome) -> list[str]:
    return [t for t, (got, top) in outcome.tests.items() if (got or 0.0) < top]


def _table(outcomes) -> list[str]:
    rows = [("learner", "status", "score", "failed tests", "notes")]
    for _, o in sorted(outcomes.items()):
        score = f"{o.score:g}/{o.max_score:g}" if o.score is not None else "-"
        failed = _failed_tests(o)
        failed = f"all {len(failed)}" if failed and len(failed) == len(o.tests) else \
            ", ".join(failed) or "-"
        notes = o.learner.notes + o.events
        extra = [f"{len(notes)} note(s)"] if notes else []
        if o.pending:
            extra.append(f"{len(o.pending)} written answer(s) to grade")
        if o.late:
            extra.append("late")
        if o.status == "failed":
            extra = [o.reason[:60]]
        rows.append((o.learner.label, o.status, score, failed, "; ".join(extra) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return ["  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(r[:4], widths, strict=True))
            + "  " + r[4] for r in rows]


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
    manual_max = next((o.manual_max for o in graded.values() if o.manual_max), 0.0)
    pending = sum(len(o.pending) for o in graded.values())
    waiting = sum(bool(o.pending) for o in graded.values())
    elapsed = time.monotonic() - run.started
    lines = [
        f"Graded {run.lesson.name}: {len(outcomes)} learners, {len(graded)} graded, "
        f"{len(failed)} failed to grade ({elapsed:.1f} s, {len(run.workers)} workers, "
        f"sandbox: {run.mode})",
        f"Scores below are autograded points out of {max_total:g}"
        + (f"; written answers add {manual_max:g} point(s), graded by hand in formgrader "
           f"(grades.csv's max_score, {max_total + manual_max:g}, counts both)."
           if manual_max else "."),
    ]
    if manual_max:
        lines.append(f"Written answers awaiting a manual grade: {pending} (from {waiting} "
                     "learners); grade them in formgrader, then run "
                     f"`python -m autograder feedback --lesson {run.lesson.name[:2]}`.")
    if run.due:
        late = [o.learner.label for o in graded.values() if o.late]
        lines.append(f"Due {run.due}: {len(late)} late" + (f" ({', '.join(late)})"
                                                           if late else ""))
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
    lines += ["", "Learners (autograded score):", *_table(outcomes)]
    notes = [(o.learner.label, o.learner.notes + o.events) for _, o in sorted(graded.items())
             if o.learner.notes or o.events]
    if notes:
        lines += ["", "Notes (one line per event):"]
        for label, items in notes:
            lines += [f"  {label}: {item}" for item in items]
    lines += ["", f"Gradebook: {redact(run.db_url)}",
              f"Grades:    {run.out / 'grades.csv'}",
              f"Feedback:  {run.feedback}/<learner>/{run.lesson.name}/{run.lesson.name}.html",
              f"Report:    {run.out / 'report.txt'} (and report.json)",
              "Manual grading: open formgrader (make instructor) at the course root, then "
              f"`python -m autograder feedback --lesson {run.lesson.name[:2]}`."]
    text = "\n".join(lines)
    data = {
        "lesson": run.lesson.name, "learners": len(outcomes), "graded": len(graded),
        "failed": {o.learner.student: o.reason for o in failed.values()},
        "sandbox": run.mode, "seconds": round(elapsed, 2),
        "mean_per_test": {t: m for t, (m, _) in means.items()},
        "autograded_max": max_total, "manual_max": manual_max, "pending_manual": pending,
        "due": run.due,
        "learner_results": {
            s: {"status": o.status, "score": o.score, "max_score": o.max_score,
                "tests": {t: v[0] for t, v in o.tests.items()},
                "failed_tests": _failed_tests(o), "pending_manual": o.pending,
                "timestamp": o.timestamp, "late": o.late, "lms_name": o.learner.lms_name,
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
