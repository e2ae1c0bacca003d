"""``python -m autograder build | check | grade``: the command-line surface."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings

from .course import CourseError, without_iri_grammar


def _build(args) -> int:
    from .build import build
    from .course import find_lesson

    stale = build(check=args.check, only=[find_lesson(k) for k in args.lessons] or None)
    if args.check:
        if stale:
            print("lessons/ is stale; run `python -m autograder build` (or `make lessons`). "
                  "Differs:", *stale, sep="\n  ")
            return 1
        print("lessons/ matches solutions/.")
        return 0
    print(f"rebuilt {len(stale)} file(s)" + (":" if stale else "; lessons/ was up to date."),
          *stale, sep="\n  " if stale else "")
    return 0


def _check(args) -> int:
    from .selfcheck import format_report, grade_notebook

    report = grade_notebook(args.notebook, reference=args.nbgrader)
    if args.json:
        print(json.dumps(report.to_json()))
    else:
        print(format_report(report, args.notebook))
    return 0


_PARSED: argparse.Namespace | None = None


def parsed() -> argparse.Namespace | None:
    """The arguments main() last parsed (None before it has)."""
    return _PARSED


def main(argv: list[str] | None = None) -> int:
    without_iri_grammar()
    parser = argparse.ArgumentParser(prog="python -m autograder",
                                     description="Attention Lab's autograder.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="regenerate lessons/ from solutions/ with nbgrader")
    p.add_argument("lessons", nargs="*", help="only these lessons (folder name or number)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 and name the files if lessons/ is stale")
    p.set_defaults(func=_build)
    p = sub.add_parser("check", help="grade one notebook against its lesson's full tests")
    p.add_argument("notebook", help="path to a lesson notebook (.ipynb), anywhere")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--nbgrader", action="store_true",
                   help="grade with nbgrader's full generate_assignment + autograde in a "
                        "scratch course, as an instructor's run (slower; same result)")
    p.set_defaults(func=_check)
    from .grading.command import add_parser as add_grade_parser  # grading a class

    add_grade_parser(sub)
    from .insight import add_parser as add_insight_parser  # what the class got wrong

    add_insight_parser(sub)
    from .export import add_parser as add_export_parser  # grades an LMS imports

    add_export_parser(sub)
    args = parser.parse_args(argv)
    global _PARSED
    _PARSED = args
    # nbgrader and traitlets log to stderr; the user reads our summary instead
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    try:
        return args.func(args)
    except CourseError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"error": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
