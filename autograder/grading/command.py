"""The ``grade`` and ``feedback`` subcommands' arguments (kept apart so ``cli.py`` stays
small)."""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser(
        "grade", help="grade a class's submissions (sandboxed, parallel, resumable)",
        description="Autograde a folder of submissions (<student>/<notebook>.ipynb or "
                    "<student>/<lesson>/<notebook>.ipynb) or an LMS zip (Canvas, Moodle) "
                    "with nbgrader, each learner in a fresh sandboxed kernel. Writes the "
                    "gradebook, graded/NN_lesson/grades.csv, report.txt and report.json, "
                    "and the feedback in graded/feedback/. Re-running resumes.")
    p.add_argument("submissions", type=Path, help="a folder of learners, or an LMS zip")
    p.add_argument("--lesson", help="the lesson's folder name (03_multi_head_attention) or "
                                    "number (03); default: read from the notebooks")
    p.add_argument("--workers", type=int, help="parallel kernels (default: one per core)")
    p.add_argument("--timeout", type=float, help="seconds each cell may run (default 120)")
    p.add_argument("--notebook-timeout", type=float,
                   help="seconds a whole notebook may run (default 900)")
    p.add_argument("--memory-mb", type=int, help="memory cap per kernel (default 2048)")
    p.add_argument("--db", help="gradebook URL (default: sqlite gradebook.db in the course "
                                "folder; e.g. postgresql://user:pass@host/db)")
    p.add_argument("--out", type=Path,
                   help="where grades.csv, report.txt and report.json go, with a copy of "
                        "the feedback in OUT/feedback (default: graded/NN_lesson in the "
                        "course folder)")
    p.add_argument("--course", type=Path,
                   help="the nbgrader course folder: its nbgrader_config.py, gradebook and "
                        "graded/ (default: this repository; `make hub-grade` passes the "
                        "hub's course)")
    p.add_argument("--pattern", help="regex for LMS file names with a (?P<student_id>...) "
                                     "group (default: Canvas and Moodle names)")
    p.add_argument("--isolation", choices=["auto", "root", "userns", "none"],
                   help="how to confine kernels (default auto: the strongest available)")
    p.add_argument("--due", help="the lesson's due date, e.g. '2026-03-01 23:59' (UTC unless "
                                 "it carries an offset): late submissions are flagged")
    p.add_argument("--regrade", action="store_true",
                   help="grade everyone again instead of resuming")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run, exit_at_once=True)
    add_feedback_parser(sub)


def run(args) -> int:
    from .pipeline import Options, grade

    summary = grade(Options(
        submissions=args.submissions, lesson=args.lesson, workers=args.workers,
        timeout=args.timeout, notebook_timeout=args.notebook_timeout,
        memory_mb=args.memory_mb, db=args.db, out=args.out, course=args.course,
        pattern=args.pattern, isolation=args.isolation, regrade=args.regrade,
        progress=not args.no_progress, due=args.due))
    return 3 if summary["failed"] else 0


def add_feedback_parser(sub) -> None:
    p = sub.add_parser(
        "feedback", help="refresh a lesson's feedback and grades.csv after manual grading",
        description="After formgrader's manual grading: render every learner's feedback "
                    "again from the gradebook (graded/feedback/, where grade and nbgrader "
                    "generate_feedback write it) and export graded/NN_lesson/grades.csv "
                    "with the manual points.")
    p.add_argument("--lesson", required=True, help="the lesson (03 or 03_multi_head_attention)")
    p.add_argument("--db", help="gradebook URL (default: the course's gradebook.db)")
    p.add_argument("--course", type=Path,
                   help="the nbgrader course folder (default: this repository)")
    p.set_defaults(func=run_feedback)


def run_feedback(args) -> int:
    from .pipeline import refresh_feedback

    refresh_feedback(args.lesson, course=args.course, db=args.db)
    return 0
