"""``python -m autograder insight --lesson NN``: what the class got wrong, in one page.

Reads any course gradebook (SQLite or PostgreSQL, through nbgrader's ``Gradebook`` API) and
the autograded notebooks next to it, and writes ``graded/NN_x/insight.html`` (one
self-contained file: plots are base64 PNGs, no network, no JavaScript) and
``insight.json`` (the same data). Conventions:

* A test *passes* when it earns its full points; shares are of the learners graded.
* A mistake is what a failing check's message names, not its exact text: numbers, shapes,
  quoted values and the case in parentheses are stripped from the message
  (:func:`mistake_key`), and the failing check's id (the first check of the test cell
  that did not print its ``✓`` line) is part of the key.
* An exercise is *untouched* when its answer cell still equals the release's (the stub that
  raises ``NotImplementedError``); failures of its tests are not counted as mistakes.
* A test that did not run (the kernel died, a time limit) is a problem of that learner's
  run, not a mistake; so are the notes ``grade`` wrote in ``report.json``.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from .course import ROOT, CourseError, Lesson, find_lesson, nbgrader_config

NOBODY, EVERYBODY = 0.10, 0.90  # a test "almost nobody" / "almost everybody" passes
UNTOUCHED_MOST = 0.5  # an exercise "most learners left untouched"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
DID_NOT_RUN = re.compile(r"^(not run:|stopped:|this cell ran past|the kernel died|"
                         r"this test did not run)", re.IGNORECASE)
HIDDEN = re.compile(r"^\s*#+\s*(BEGIN|END) HIDDEN TESTS\s*$", re.MULTILINE)
CHECK_CALL = re.compile(r"""^\s*check\(\s*["']([\w.]+)["']""", re.MULTILINE)


# ----------------------------------------------------------------------------- mistakes


def mistake_key(message: str) -> str:
    """The mistake a message names: its text without numbers, quoted values or the case."""
    text = ANSI.sub("", message)
    text = re.sub(r"'[^'\n]*'|\"[^\"\n]*\"", "'…'", text)  # the learner's values
    text = re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", text)
    previous = None
    while previous != text:  # the case, innermost first: "(a (#, #) matrix, axis=#)"
        previous = text
        text = re.sub(r"\s*\([^()]*#[^()]*\)", "", text)
    return re.sub(r"\s+", " ", text).strip()


# ----------------------------------------------------------------------------- the lesson


@dataclass
class Test:
    grade_id: str
    exercise: str
    points: float
    checks: list[str] = field(default_factory=list)


def lesson_tests(source: Path) -> tuple[list[Test], list[str]]:
    """The lesson's autograded tests in order, each with the exercise it follows, and the
    code exercises (answer cells), from the instructor's source notebook."""
    import nbformat  # here, not at import: every CLI command registers this one

    nb = nbformat.read(source, as_version=4)
    tests, exercises, current = [], [], ""
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not meta:
            continue
        if meta.get("solution"):
            current = meta["grade_id"]
            exercises.append(current)
        elif meta.get("grade"):
            tests.append(Test(meta["grade_id"], current, float(meta.get("points", 0)),
                              CHECK_CALL.findall(HIDDEN.sub("", cell.source))))
    return tests, exercises


@dataclass
class Failure:
    test: str
    check: str
    message: str


def read_learner(nb, tests: dict[str, Test], stubs: dict[str, str]):
    """(untouched exercises, failures) of one autograded notebook."""
    untouched, failures = set(), []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        gid = meta.get("grade_id")
        if cell.cell_type != "code" or not gid:
            continue
        if meta.get("solution") and gid in stubs and cell.source.strip() == stubs[gid]:
            untouched.add(gid)
        if gid not in tests:
            continue
        passed, error = 0, None
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                passed += sum(line.startswith("\u2713") for line in out.get("text",
                                                                            "").splitlines())
            elif out.get("output_type") == "error" and error is None:
                error = ANSI.sub("", str(out.get("evalue", ""))).strip() or \
                    str(out.get("ename", "error"))
        if error is not None:
            checks = tests[gid].checks
            check = checks[passed] if passed < len(checks) else gid
            failures.append(Failure(gid, check, error))
    return untouched, failures


# ----------------------------------------------------------------------------- gathering


def _report_notes(out: Path, lesson: Lesson, course: Path) -> dict[str, list[str]]:
    """Run notes per learner from ``grade``'s report.json (where it exists for this lesson)."""
    for path in (out / "report.json", course / "graded" / lesson.name / "report.json",
                 course / "graded" / "report.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("lesson") != lesson.name:
            continue
        notes = {s: [n for n in r.get("notes", []) if not n.startswith("marked late")]
                 for s, r in data.get("learner_results", {}).items()}
        for student, reason in data.get("failed", {}).items():
            notes.setdefault(student, []).append(f"failed to grade: {reason}")
        return {s: n for s, n in notes.items() if n}
    return {}


def _progress(gb) -> dict:
    """Each learner's share of the points in every lesson with a submission."""
    lessons, table = [], defaultdict(dict)
    for assignment in sorted(gb.assignments, key=lambda a: a.name):
        subs = {s.student.id: s for s in assignment.submissions}
        if not subs:
            continue
        lessons.append(assignment.name)
        top = float(assignment.max_score or 0)
        for student in gb.students:
            sub = subs.get(student.id)
            table[student.id][assignment.name] = (
                round(float(sub.score) / top, 4) if sub is not None and top else None)
    return {"lessons": lessons, "learners": dict(sorted(table.items()))}


def gather(lesson: Lesson, db_url: str, course: Path, out: Path,
           below: float = 50.0) -> dict:
    """Everything the report shows, as plain data (what insight.json holds)."""
    import nbformat
    from nbgrader.api import Gradebook, MissingEntry
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(course)
    config.CourseDirectory.db_url = db_url
    source = course / "solutions" / lesson.name / f"{lesson.name}.ipynb"
    if not source.exists():
        source = lesson.source
    tests, exercises = lesson_tests(source)
    by_id = {t.grade_id: t for t in tests}
    coursedir = CourseDirectory(config=config)
    with Gradebook(db_url, config.CourseDirectory.course_id) as gb:
        try:
            assignment = gb.find_assignment(lesson.name)
        except MissingEntry:
            raise CourseError(f"the gradebook has no lesson {lesson.name}; grade it first") \
                from None
        stubs = {c.name: c.source.strip() for nb in assignment.notebooks
                 for c in nb.source_cells if c.name in exercises}
        learners: dict[str, dict] = {}
        for sub in assignment.submissions:
            student = sub.student.id
            notebook = gb.find_submission_notebook(lesson.name, lesson.name, student)
            grades = {g.name: g for g in notebook.grades}
            path = Path(coursedir.format_path(coursedir.autograded_directory, student,
                                              lesson.name)) / f"{lesson.name}.ipynb"
            untouched, failures = (read_learner(nbformat.read(path, as_version=4), by_id,
                                                stubs) if path.exists() else (set(), []))
            learners[student] = {
                "score": float(sub.score), "max": float(sub.max_score),
                "needs_manual_grade": bool(sub.needs_manual_grade),
                "tests": {t.grade_id: float(grades[t.grade_id].score)
                          for t in tests if t.grade_id in grades},
                "untouched": sorted(untouched), "failures": failures,
                "autograded": path.exists()}
        progress = _progress(gb)
    if not learners:
        raise CourseError(f"no submissions of {lesson.name} in the gradebook")
    return _summarise(lesson, tests, exercises, learners, progress,
                      _report_notes(out, lesson, course), below)


def _share(n: int, total: int) -> float:
    return round(n / total, 4) if total else 0.0


def _summarise(lesson, tests, exercises, learners, progress, notes, below) -> dict:
    n = len(learners)
    max_score = max(r["max"] for r in learners.values())
    per_test = []
    for t in tests:
        scores = [r["tests"].get(t.grade_id, 0.0) for r in learners.values()]
        full = sum(s >= t.points for s in scores)
        zero = sum(s <= 0 for s in scores)
        per_test.append({"test": t.grade_id, "exercise": t.exercise, "points": t.points,
                         "mean": round(sum(scores) / n, 3), "full": full, "zero": zero,
                         "partial": n - full - zero, "pass_share": _share(full, n)})
    groups: dict[tuple[str, str], dict] = {}
    problems: dict[str, list[str]] = {s: list(v) for s, v in notes.items()}
    for student, r in sorted(learners.items()):
        if not r["autograded"]:
            problems.setdefault(student, []).append("no autograded notebook to read")
        not_run: dict[str, list[str]] = {}
        for f in r["failures"]:
            if DID_NOT_RUN.match(f.message):
                not_run.setdefault(f.message, []).append(f.test)
                continue
            if by_exercise(tests, f.test) in r["untouched"]:
                continue
            group = groups.setdefault((f.check, mistake_key(f.message)), {
                "check": f.check, "test": f.test, "exercise": by_exercise(tests, f.test),
                "mistake": mistake_key(f.message), "messages": Counter(), "learners": []})
            group["messages"][f.message] += 1
            if student not in group["learners"]:
                group["learners"].append(student)
        for message, names in not_run.items():
            problems.setdefault(student, []).append(f"{', '.join(names)}: {message}")
    mistakes = []
    for g in groups.values():
        message = sorted(g["messages"].items(), key=lambda kv: (-kv[1], kv[0]))[0][0]
        mistakes.append({"mistake": g["mistake"], "message": message, "check": g["check"],
                         "test": g["test"], "exercise": g["exercise"],
                         "count": len(g["learners"]), "share": _share(len(g["learners"]), n),
                         "learners": g["learners"]})
    mistakes.sort(key=lambda m: (-m["count"], m["exercise"], m["check"], m["mistake"]))
    untouched = []
    for ex in exercises:
        who = [s for s, r in sorted(learners.items()) if ex in r["untouched"]]
        untouched.append({"exercise": ex, "count": len(who), "share": _share(len(who), n),
                          "learners": who})
    cut = below / 100 * max_score
    totals = sorted(round(r["score"], 3) for r in learners.values())
    return {
        "lesson": lesson.name, "generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "learners": n, "max_score": max_score,
        "scores": {s: round(r["score"], 3) for s, r in sorted(learners.items())},
        "mean": round(sum(totals) / n, 3), "median": totals[n // 2] if n % 2 else
        round((totals[n // 2 - 1] + totals[n // 2]) / 2, 3),
        "written_answers_to_grade": sorted(s for s, r in learners.items()
                                           if r["needs_manual_grade"]),
        "tests": per_test,
        "almost_nobody_passes": [t["test"] for t in per_test if t["pass_share"] <= NOBODY],
        "almost_everybody_passes": [t["test"] for t in per_test
                                    if t["pass_share"] >= EVERYBODY],
        "mistakes": mistakes,
        "untouched": untouched,
        "mostly_untouched": [u["exercise"] for u in untouched if u["share"] > UNTOUCHED_MOST],
        "problems": [{"learner": s, "issues": v} for s, v in sorted(problems.items())],
        "below": {"percent": below, "points": round(cut, 3),
                  "learners": [{"learner": s, "score": round(r["score"], 3)}
                               for s, r in sorted(learners.items()) if r["score"] < cut]},
        "progress": progress,
    }


def by_exercise(tests: list[Test], grade_id: str) -> str:
    return next((t.exercise for t in tests if t.grade_id == grade_id), "")


# ----------------------------------------------------------------------------- figures


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _distribution_figure(data: dict) -> str:
    import matplotlib.pyplot as plt
    import numpy as np

    top = data["max_score"]
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    bins = np.arange(0, top + 1.0, 0.5 if top <= 12 else max(1.0, round(top / 20)))
    ax.hist(list(data["scores"].values()), bins=bins, color="#0072B2", edgecolor="white")
    ax.axvline(data["below"]["points"], color="#D55E00", linestyle="--",
               label=f"below {data['below']['percent']:g} %")
    ax.set(title=f"{data['lesson']}: total score ({data['learners']} learners)",
           xlabel=f"score (of {top:g}; written answers count once graded)",
           ylabel="learners")
    ax.legend(frameon=False)
    return _png(fig)


def _tests_figure(data: dict) -> str:
    import matplotlib.pyplot as plt

    rows = data["tests"][::-1]
    n = data["learners"]
    fig, ax = plt.subplots(figsize=(6.4, 0.35 * len(rows) + 1.2))
    names = [r["test"] for r in rows]
    left = [0.0] * len(rows)
    for key, colour, label in (("full", "#009E73", "full points"),
                               ("partial", "#E69F00", "some points"),
                               ("zero", "#CC79A7", "no points")):
        share = [r[key] / n for r in rows]
        ax.barh(names, share, left=left, color=colour, label=label)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax.set(title="Each test: share of the class by points earned", xlabel="share of learners",
           xlim=(0, 1))
    ax.legend(ncol=3, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return _png(fig)


def _progress_figure(data: dict) -> str | None:
    import matplotlib.pyplot as plt
    import numpy as np

    lessons, table = data["progress"]["lessons"], data["progress"]["learners"]
    if not lessons or not table:
        return None
    names = list(table)
    grid = np.array([[np.nan if table[s].get(les) is None else table[s][les]
                      for les in lessons] for s in names], dtype=float)
    fig, ax = plt.subplots(figsize=(1.1 * len(lessons) + 3.2, 0.22 * len(names) + 1.4))
    cmap = plt.get_cmap("cividis").copy()
    cmap.set_bad("#DDDDDD")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(lessons)), [les[:2] for les in lessons])
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set(title="Progress: share of each lesson's points (grey: no submission)",
           xlabel="lesson", ylabel="learner")
    fig.colorbar(image, ax=ax, label="share of points", shrink=0.6)
    return _png(fig)


# ----------------------------------------------------------------------------- HTML

CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222;padding:0 1em}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;width:100%;margin:.5em 0} td,th{padding:.3em .5em;
border-bottom:1px solid #eee;text-align:left;vertical-align:top} th{background:#f4f4f4}
td.n{text-align:right;white-space:nowrap} .bar{background:#0072B2;height:.8em;display:inline-block}
.msg{white-space:pre-wrap;overflow-wrap:anywhere} .who{font-size:.85em;color:#555}
.key{font-family:monospace;font-size:.85em;color:#555} img{max-width:100%}
.stat{display:inline-block;margin-right:2em} .stat b{font-size:1.4em;display:block}
"""


def _e(x) -> str:
    return html.escape(str(x))


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def _who(learners: list[str], limit: int = 12) -> str:
    more = f" and {len(learners) - limit} more" if len(learners) > limit else ""
    return _e(", ".join(learners[:limit]) + more)


def _table(head: list[str], rows: list[list[str]]) -> str:
    return ("<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>" +
            "".join("<tr>" + "".join(rows_) + "</tr>" for rows_ in rows) + "</table>")


def render_html(data: dict) -> str:
    """The report: one HTML file, figures inlined, nothing fetched, no scripts."""
    n = data["learners"]
    parts = [
        f"<h1>What the class got wrong: {_e(data['lesson'])}</h1>",
        f"<p class=who>Generated {_e(data['generated'])} from the gradebook and the "
        "autograded notebooks. The same data is in insight.json.</p>",
        f"<div><span class=stat><b>{n}</b>learners graded</span>"
        f"<span class=stat><b>{data['mean']:.2f} / {data['max_score']:g}</b>mean score</span>"
        f"<span class=stat><b>{data['median']:g}</b>median</span>"
        f"<span class=stat><b>{len(data['written_answers_to_grade'])}</b>written answers "
        "to grade</span></div>",
        "<h2>Score distribution</h2>",
        f"<img alt='histogram of total scores' src='data:image/png;base64,"
        f"{_distribution_figure(data)}'>",
        f"<img alt='points earned per test' src='data:image/png;base64,"
        f"{_tests_figure(data)}'>",
        _table(["test", "exercise", "mean", "points", "full", "some", "none"],
               [[f"<td>{_e(t['test'])}</td>", f"<td>{_e(t['exercise'])}</td>",
                 f"<td class=n>{t['mean']:g}</td>", f"<td class=n>{t['points']:g}</td>",
                 f"<td class=n>{t['full']}</td>", f"<td class=n>{t['partial']}</td>",
                 f"<td class=n>{t['zero']}</td>"] for t in data["tests"]]),
        f"<p><b>Almost nobody passes</b> (at most {_pct(NOBODY)}): "
        f"{_e(', '.join(data['almost_nobody_passes']) or 'none')}. "
        f"<b>Almost everybody passes</b> (at least {_pct(EVERYBODY)}): "
        f"{_e(', '.join(data['almost_everybody_passes']) or 'none')}.</p>",
        "<h2>Mistakes, most common first</h2>",
        "<p class=who>Grouped by the mistake a message names (numbers, values and the test "
        "case stripped); exercises left untouched are counted below, not here.</p>",
    ]
    top = max((m["count"] for m in data["mistakes"]), default=1)
    parts.append(_table(
        ["learners", "share", "exercise / check", "what the check said"],
        [[f"<td class=n>{m['count']} <span class=bar style='width:{3 * m['count'] / top:.2f}em'>"
          "</span></td>", f"<td class=n>{_pct(m['share'])}</td>",
          f"<td>{_e(m['exercise'])}<br><span class=key>{_e(m['check'])}</span></td>",
          f"<td><div class=msg>{_e(m['message'])}</div><div class=who>{_who(m['learners'])}"
          "</div></td>"] for m in data["mistakes"]]) if data["mistakes"] else
        "<p>No mistakes: every attempted test passed.</p>")
    parts += [
        "<h2>Exercises left untouched</h2>",
        f"<p>Most learners left untouched: "
        f"{_e(', '.join(data['mostly_untouched']) or 'none')}.</p>",
        _table(["exercise", "learners", "share", "who"],
               [[f"<td>{_e(u['exercise'])}</td>", f"<td class=n>{u['count']}</td>",
                 f"<td class=n>{_pct(u['share'])}</td>",
                 f"<td class=who>{_who(u['learners'])}</td>"] for u in data["untouched"]]),
        f"<h2>Learners to look at</h2><h3>Below {data['below']['percent']:g} % "
        f"({data['below']['points']:g} points)</h3>",
        _table(["learner", "score"],
               [[f"<td>{_e(b['learner'])}</td>", f"<td class=n>{b['score']:g}</td>"]
                for b in data["below"]["learners"]]) if data["below"]["learners"] else
        "<p>Nobody.</p>",
        "<h3>Problems while grading (timeouts, crashes, repaired files)</h3>",
        _table(["learner", "what happened"],
               [[f"<td>{_e(p['learner'])}</td>",
                 f"<td class=msg>{_e(chr(10).join(p['issues']))}</td>"]
                for p in data["problems"]]) if data["problems"] else "<p>None.</p>",
    ]
    progress = _progress_figure(data)
    if progress:
        parts += ["<h2>Progress across graded lessons</h2>",
                  f"<img alt='share of points per learner and lesson' "
                  f"src='data:image/png;base64,{progress}'>"]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
            "img-src data:; style-src 'unsafe-inline'\">"
            f"<title>Insight: {_e(data['lesson'])}</title><style>{CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


# ----------------------------------------------------------------------------- writing


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_insight(lesson: str | Lesson, db_url: str | None = None,
                  course: Path | None = None, out: Path | None = None,
                  below: float = 50.0) -> tuple[Path, Path]:
    """Write ``out/insight.html`` and ``out/insight.json`` (default out:
    ``<course>/graded/<lesson>``) and return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    course = (course or ROOT).resolve()
    lesson = lesson if isinstance(lesson, Lesson) else course_lesson(course, lesson)
    db_url = db_url or nbgrader_config(course).CourseDirectory.db_url
    from .export import require_gradebook

    require_gradebook(db_url)
    out = (out or course / "graded" / lesson.name).resolve()
    data = gather(lesson, db_url, course, out, below)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "insight.json", json.dumps(data, indent=1))
    _write(out / "insight.html", render_html(data))
    return out / "insight.html", out / "insight.json"


def course_lesson(course: Path, key: str) -> Lesson:
    """A lesson of this course folder (its own solutions/ first), by name or number."""
    own = course / "solutions"
    if own.is_dir():
        for path in sorted(own.iterdir()):
            if path.name == key or (key.isdigit() and path.name[:2].isdigit()
                                    and int(path.name[:2]) == int(key)):
                return Lesson(path.name)
    return find_lesson(key)


def add_parser(sub) -> None:
    p = sub.add_parser("insight", help="what the class got wrong: insight.html and .json",
                       description="Write graded/NN_x/insight.html (self-contained) and "
                                   "insight.json from the gradebook and the autograded "
                                   "notebooks: score distributions, the class's mistakes "
                                   "ranked, untouched exercises, learners to look at, "
                                   "progress across lessons.")
    p.add_argument("--lesson", required=True, help="the lesson's folder name or number")
    p.add_argument("--db", help="gradebook URL (default: the course's gradebook.db)")
    p.add_argument("--course", type=Path, help="the course folder (default: this repository)")
    p.add_argument("--out", type=Path, help="where to write (default: COURSE/graded/NN_x)")
    p.add_argument("--below", type=float, default=50.0,
                   help="list learners below this percentage of the points (default 50)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .grading.db import normalize_url

    html_path, json_path = write_insight(args.lesson, normalize_url(args.db) if args.db
                                         else None, args.course, args.out, args.below)
    print(f"Insight: {html_path}\nData:    {json_path}")
    return 0
