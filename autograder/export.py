"""``python -m autograder export --format canvas|moodle|moodle-worksheet|csv``: grades an LMS
imports, read from any course gradebook (nbgrader's ``Gradebook`` API).

The layouts, from each LMS's own importer:

* **canvas**: Canvas's gradebook CSV (Grades > Import). Header ``Student, ID, SIS User ID,
  SIS Login ID, Section``, then one column per lesson named ``Name (assignment id)``; a
  second row ``Points Possible``. Canvas finds a learner by ``ID`` (the Canvas user id,
  which is the number in a Canvas submission download's file names), then SIS User ID,
  SIS Login ID, then the name; it finds an assignment by the id in parentheses, else by
  name, else creates one. An empty cell changes nothing: missing work is left empty, never 0
  (instructure/canvas-lms, app/models/gradebook_importer.rb).
* **moodle**: Moodle's gradebook import (Grades > Import > CSV file), keyed by a user field
  (``--moodle-key email|username|idnumber``, chosen again as "Map from" on import), one grade
  column per lesson. Moodle reads ``-`` or an empty cell as *no grade*; missing work is
  written ``-``. Every row must name a Moodle user (a row without one would be refused or,
  worse, credited to the row before: moodle/moodle grade/import/csv/classes/load_data.php),
  so learners without the field stop the export.
* **moodle-worksheet**: the assignment's offline grading worksheet (Assignment > Upload
  grading worksheet), keyed by ``Identifier`` = ``Participant N``, N being the number in a
  Moodle submission download's folder names; ``Grade`` and ``Last modified (grade)`` are
  the columns it reads. An empty grade is skipped (moodle/moodle
  mod/assign/feedback/offline/locallib.php), so missing work is left empty.
* **csv**: one row per learner and lesson, everything above and the late details.

Learners are matched by the ids the LMS zip carried (``grade`` keeps them as nbgrader
student ids) or through ``--roster``: a CSV whose rows name learners by any of ``student_id``,
``ID``, ``SIS User ID``, ``SIS Login ID``, ``Identifier``, ``Username``, ``Email address``,
``ID number`` (Canvas's gradebook export and Moodle's worksheet or participants export
work as they are). Roster learners without a submission are exported as missing. Scores
are nbgrader's: manual points once graded, minus nbgrader's late penalty.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .course import ROOT, CourseError, nbgrader_config

FORMATS = ("canvas", "moodle", "moodle-worksheet", "csv")
CANVAS_HEAD = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
WORKSHEET_HEAD = ["Identifier", "Full name", "Email address", "Status", "Grade",
                  "Maximum Grade", "Grade can be changed", "Last modified (submission)",
                  "Last modified (grade)"]
PARTICIPANT = "Participant "  # Moodle's 'hiddenuser' string, before the participant number
MOODLE_KEYS = {"email": ("email", "Email address"), "username": ("username", "Username"),
               "idnumber": ("idnumber", "ID number")}
# roster column (lower case) -> Learner field
ROSTER_FIELDS = {"student_id": "student", "student": "name", "full name": "name",
                 "id": "canvas_id", "sis user id": "sis_user_id",
                 "sis login id": "sis_login_id", "section": "section",
                 "identifier": "participant", "username": "username",
                 "email address": "email", "email": "email", "id number": "idnumber",
                 "idnumber": "idnumber", "first name": "first", "last name": "last"}
ID_FIELDS = ("student", "canvas_id", "sis_user_id", "sis_login_id", "participant",
             "username", "email", "idnumber")


@dataclass
class Learner:
    student: str = ""  # nbgrader's student id ("" for a roster learner never graded)
    first: str = ""
    last: str = ""
    name: str = ""
    email: str = ""
    canvas_id: str = ""
    sis_user_id: str = ""
    sis_login_id: str = ""
    section: str = ""
    participant: str = ""
    username: str = ""
    idnumber: str = ""
    lessons: dict[str, Result] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.student or self.name or next((getattr(self, f) for f in ID_FIELDS
                                                  if getattr(self, f)), "?")

    @property
    def full_name(self) -> str:
        return self.name or " ".join(p for p in (self.first, self.last) if p)

    @property
    def sortable_name(self) -> str:
        """Canvas's "Last, First"."""
        if self.first and self.last:
            return f"{self.last}, {self.first}"
        return self.full_name or self.label


@dataclass
class Result:
    score: float | None  # None: nothing submitted
    max_score: float
    auto: float = 0.0
    manual: float = 0.0
    penalty: float = 0.0
    ungraded: bool = False  # written answers still to grade
    timestamp: str = ""
    seconds_late: float = 0.0
    lms_late: bool = False


# ----------------------------------------------------------------------------- reading


def _iso(stamp) -> str:
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + "Z" if stamp is not None else ""


def _lms_late(course: Path, lesson: str) -> set[str]:
    """Learners an LMS zip marked late (``grade`` keeps that as a note in report.json)."""
    for path in (course / "graded" / lesson / "report.json", course / "graded" / "report.json"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if data.get("lesson") == lesson:
            return {s for s, r in data.get("learner_results", {}).items()
                    if "marked late by the LMS" in r.get("notes", [])}
    return set()


def require_gradebook(db_url: str) -> None:
    """Stop in one line when there is no gradebook to read (never create an empty one)."""
    from .grading.db import check_connection

    if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///"):]).is_file():
        raise CourseError(f"no gradebook at {db_url[len('sqlite:///'):]}: grade a lesson "
                          "first, or pass --course or --db")
    check_connection(db_url)


def read_gradebook(db_url: str, course_id: str, lessons: list[str] | None,
                   course: Path) -> tuple[list[str], dict[str, float], dict[str, Learner]]:
    """(lessons, their maximum scores, learners by student id) from the gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(db_url, course_id) as gb:
        known = sorted(a.name for a in gb.assignments if a.submissions)
        if lessons:
            unknown = [les for les in lessons if les not in {a.name for a in gb.assignments}]
            if unknown:
                raise CourseError(f"the gradebook has no lesson {', '.join(unknown)}; "
                                  f"it has: {', '.join(known) or 'none'}")
        lessons = lessons or known
        if not lessons:
            raise CourseError("the gradebook has no graded lessons yet: run grade first")
        maxima = {les: float(gb.find_assignment(les).max_score or 0) for les in lessons}
        learners = {}
        for student in gb.students:
            learner = Learner(student.id, student.first_name or "", student.last_name or "",
                              email=student.email or "", canvas_id=student.lms_user_id or "")
            for les in lessons:
                try:
                    sub = gb.find_submission(les, student.id)
                except MissingEntry:
                    learner.lessons[les] = Result(None, maxima[les])
                    continue
                penalty = float(sub.late_submission_penalty or 0)
                learner.lessons[les] = Result(
                    max(0.0, float(sub.score) - penalty), maxima[les], float(sub.code_score),
                    float(sub.written_score) + float(sub.task_score), penalty,
                    bool(sub.needs_manual_grade), _iso(sub.timestamp),
                    float(sub.total_seconds_late))
            learners[student.id] = learner
    for les in lessons:
        for student in _lms_late(course, les):
            if student in learners and learners[student].lessons[les].score is not None:
                learners[student].lessons[les].lms_late = True
    return lessons, maxima, learners


def read_roster(path: Path) -> list[Learner]:
    """Learners of a roster CSV (Canvas's gradebook export, Moodle's worksheet...)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CourseError(f"{path}: cannot read the roster ({type(exc).__name__})") from None
    reader = csv.DictReader(io.StringIO(text))
    columns = {c: ROSTER_FIELDS[c.strip().lower()] for c in reader.fieldnames or []
               if c and c.strip().lower() in ROSTER_FIELDS}
    if not set(columns.values()) & set(ID_FIELDS):
        raise CourseError(f"{path}: no column names a learner (student_id, ID, SIS User ID, "
                          "SIS Login ID, Identifier, Username, Email address, ID number)")
    learners = []
    for row in reader:
        if "Points Possible" in (row.get("Student") or "") or not any(row.values()):
            continue
        learner = Learner()
        for column, attr in columns.items():
            value = (row.get(column) or "").strip()
            if attr == "participant" and value.startswith(PARTICIPANT.strip()):
                value = value[len(PARTICIPANT.strip()):].strip()
            setattr(learner, attr, value)
        learners.append(learner)
    return learners


def roster_columns(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig") as fh:
        return next(csv.reader(fh), [])


def merge(graded: dict[str, Learner], roster: list[Learner], lessons: list[str],
          maxima: dict[str, float]) -> list[Learner]:
    """Roster learners with their results; graded learners the roster lacks, after them."""
    merged, claimed = [], {}
    for person in roster:
        ids = {getattr(person, f) for f in ID_FIELDS if getattr(person, f)}
        hits = [s for s in graded if s in ids]
        if len(hits) > 1:
            raise CourseError(f"roster row {person.label} matches several learners: "
                              f"{', '.join(hits)}")
        if hits:
            student = hits[0]
            if student in claimed:
                raise CourseError(f"learner {student} matches two roster rows")
            claimed[student] = person
            found = graded[student]
            for attr in ("first", "last", "email"):
                setattr(person, attr, getattr(person, attr) or getattr(found, attr))
            person.student, person.lessons = student, found.lessons
        else:
            person.lessons = {les: Result(None, maxima[les]) for les in lessons}
        merged.append(person)
    return merged + [lr for s, lr in sorted(graded.items()) if s not in claimed]


# ----------------------------------------------------------------------------- writing


def _names(labels: list[str]) -> str:
    more = f" and {len(labels) - 10} more" if len(labels) > 10 else ""
    return ", ".join(labels[:10]) + more


def _points(x: float) -> str:
    return f"{x:.4f}".rstrip("0").rstrip(".")


def _grade(result: Result, only_complete: bool) -> str:
    if result.score is None or (only_complete and result.ungraded):
        return ""
    return _points(result.score)


def canvas_rows(learners: list[Learner], columns: list[str], lessons: list[str],
                maxima: dict[str, float], only_complete: bool) -> list[list[str]]:
    for lr in learners:
        if not lr.canvas_id and lr.student.isdigit():
            lr.canvas_id = lr.student  # the user id a Canvas download's file names carry
    nameless = [lr.label for lr in learners if not (lr.canvas_id or lr.sis_user_id
                                                   or lr.sis_login_id)]
    if nameless:
        raise CourseError(f"no Canvas ID for {_names(nameless)}: pass --roster with "
                          "Canvas's gradebook export (Grades > Export)")
    rows = [CANVAS_HEAD + columns,
            ["    Points Possible", "", "", "", ""] + [_points(maxima[les]) for les in lessons]]
    for lr in learners:
        rows.append([lr.sortable_name, lr.canvas_id, lr.sis_user_id, lr.sis_login_id,
                     lr.section] + [_grade(lr.lessons[les], only_complete) for les in lessons])
    return rows


def moodle_rows(learners: list[Learner], columns: list[str], lessons: list[str], key: str,
                only_complete: bool) -> list[list[str]]:
    attr, label = MOODLE_KEYS[key]
    keyless = [lr.label for lr in learners if not getattr(lr, attr)]
    if keyless:
        raise CourseError(f"no {label} for {_names(keyless)}: pass --roster with "
                          f"Moodle's participants or grades export, or --moodle-key")
    rows = [[label, "First name", "Last name"] + columns]
    for lr in learners:
        rows.append([getattr(lr, attr), lr.first, lr.last] +
                    [_grade(lr.lessons[les], only_complete) or "-" for les in lessons])
    return rows


def worksheet_rows(learners: list[Learner], lesson: str, only_complete: bool,
                   now: str) -> list[list[str]]:
    for lr in learners:
        if not lr.participant and lr.student.isdigit():
            lr.participant = lr.student  # the number a Moodle download's folder names carry
    missing = [lr.label for lr in learners if not lr.participant]
    if missing:
        raise CourseError(f"no Moodle participant number for {_names(missing)}: "
                          "grade the Moodle zip, or pass --roster with the grading worksheet")
    rows = [WORKSHEET_HEAD]
    for lr in learners:
        result = lr.lessons[lesson]
        status = "No submission" if result.score is None else "Submitted for grading"
        rows.append([f"{PARTICIPANT}{lr.participant}", lr.full_name, lr.email, status,
                     _grade(result, only_complete), _points(result.max_score), "Yes",
                     result.timestamp, now])
    return rows


def csv_rows(learners: list[Learner], lessons: list[str]) -> list[list[str]]:
    rows = [["student_id", "first_name", "last_name", "email", "lesson", "status", "score",
             "max_score", "auto_score", "manual_score", "late_penalty", "timestamp", "late",
             "seconds_late"]]
    for lr in learners:
        for les in lessons:
            r = lr.lessons[les]
            status = ("missing" if r.score is None else
                      "written answers to grade" if r.ungraded else "graded")
            late = r.score is not None and (r.seconds_late > 0 or r.lms_late)
            rows.append([lr.label, lr.first, lr.last, lr.email, les, status,
                         "" if r.score is None else _points(r.score), _points(r.max_score),
                         _points(r.auto), _points(r.manual), _points(r.penalty), r.timestamp,
                         "yes" if late else "", _points(r.seconds_late)])
    return rows


def assignment_columns(lessons: list[str], assignment: str | None,
                       roster: Path | None) -> list[str]:
    """The LMS column for each lesson: --assignment, else a roster column naming it."""
    if assignment:
        if len(lessons) != 1:
            raise CourseError("--assignment names one lesson's column: pass --lesson too")
        return [assignment]
    names = roster_columns(roster) if roster else []
    columns = []
    for les in lessons:
        pattern = re.compile(rf"{re.escape(les)}|\blesson\s*0?{int(les[:2])}\b", re.I)
        columns.append(next((c for c in names if pattern.search(c)), les))
    return columns


def export(fmt: str, lessons: list[str] | None = None, db_url: str | None = None,
           course: Path | None = None, to: Path | None = None, roster: Path | None = None,
           assignment: str | None = None, moodle_key: str = "email",
           only_complete: bool = False, echo=print) -> Path:
    """Write the file ``fmt`` describes and return its path."""
    if fmt not in FORMATS:
        raise CourseError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    course = (course or ROOT).resolve()
    config = nbgrader_config(course)
    db_url = db_url or config.CourseDirectory.db_url
    require_gradebook(db_url)
    lessons, maxima, graded = read_gradebook(db_url, config.CourseDirectory.course_id,
                                             lessons, course)
    if fmt == "moodle-worksheet" and len(lessons) != 1:
        raise CourseError("a grading worksheet is one assignment's: pass --lesson")
    learners = merge(graded, read_roster(roster) if roster else [], lessons, maxima)
    columns = assignment_columns(lessons, assignment, roster)
    now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
    rows = {"canvas": lambda: canvas_rows(learners, columns, lessons, maxima, only_complete),
            "moodle": lambda: moodle_rows(learners, columns, lessons, moodle_key,
                                          only_complete),
            "moodle-worksheet": lambda: worksheet_rows(learners, lessons[0], only_complete,
                                                       now),
            "csv": lambda: csv_rows(learners, lessons)}[fmt]()
    where = course / "graded" / (lessons[0] if len(lessons) == 1 else "")
    target = (to or where / f"grades-{fmt}.csv").resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)
    os.replace(tmp, target)
    for line in summary(learners, lessons, columns, fmt, only_complete):
        echo(line)
    echo(f"Wrote {target}")
    return target


def summary(learners: list[Learner], lessons: list[str], columns: list[str], fmt: str,
            only_complete: bool) -> list[str]:
    """What the instructor should know before uploading."""
    lines = []
    for les in lessons:
        results = {lr.label: lr.lessons[les] for lr in learners}
        missing = [s for s, r in results.items() if r.score is None]
        ungraded = [s for s, r in results.items() if r.score is not None and r.ungraded]
        late = [(s, r) for s, r in results.items()
                if r.score is not None and (r.seconds_late > 0 or r.lms_late)]
        lines.append(f"{les}: {len(results) - len(missing)} graded, {len(missing)} missing "
                     "(exported empty" + (", '-' = no grade" if fmt == "moodle" else "") +
                     ")")
        if ungraded:
            lines.append(f"  written answers still to grade (formgrader) for {len(ungraded)}: "
                         f"{_names(ungraded)}" + (
                             " -- left empty (--only-complete)" if only_complete else
                             " -- exported without those points"))
        for student, r in late:
            when = r.timestamp or "time unknown"
            by = f", {r.seconds_late / 3600:.1f} h after the due date" if r.seconds_late else ""
            lines.append(f"  late: {student} (submitted {when}{by}"
                         f"{'; marked late by the LMS' if r.lms_late else ''})")
    if fmt == "canvas":
        for column in columns:
            if not re.search(r"\(\d+\)\s*$", column):
                lines.append(f"note: column {column!r} has no Canvas assignment id: Canvas "
                             "matches it by name or creates a new assignment (pass "
                             "--assignment 'Name (id)' or a roster with that column)")
    return lines


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="grades in the CSV your LMS imports (Canvas, Moodle)",
                       description="Write the gradebook's grades as the CSV an LMS imports: "
                                   "Canvas's gradebook import, Moodle's gradebook import "
                                   "(keyed by a user field) or an assignment's grading "
                                   "worksheet, or a plain CSV with the late details.")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("--lesson", action="append", dest="lessons",
                   help="a lesson's folder name or number (repeatable; default: all graded)")
    p.add_argument("--db", help="gradebook URL (default: the course's gradebook.db)")
    p.add_argument("--course", type=Path, help="the course folder (default: this repository)")
    p.add_argument("--to", type=Path, help="the file to write (default: "
                                           "COURSE/graded/[NN_x/]grades-FORMAT.csv)")
    p.add_argument("--roster", type=Path,
                   help="a CSV naming the class (Canvas's gradebook export, Moodle's "
                        "participants export or grading worksheet, or student_id,...)")
    p.add_argument("--assignment", help="the LMS column for the lesson, e.g. "
                                        "'Lesson 03 (4567)' for Canvas")
    p.add_argument("--moodle-key", choices=sorted(MOODLE_KEYS), default="email",
                   help="the Moodle user field that names learners (default email)")
    p.add_argument("--only-complete", action="store_true",
                   help="leave a learner's grade empty while written answers await grading")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from .grading.db import normalize_url
    from .insight import course_lesson

    course = (args.course or ROOT).resolve()
    lessons = [course_lesson(course, key).name for key in args.lessons] if args.lessons else None
    export(args.format, lessons, normalize_url(args.db) if args.db else None, course,
           args.to, args.roster, args.assignment, args.moodle_key, args.only_complete)
    return 0
