"""Submissions in: a folder of learners, or the zip an LMS gives, into nbgrader's submitted/.

A zip goes through nbgrader's own ``zip_collect`` (its extractor, its transfer into
``submitted/<student>/<lesson>/``) with a file-name collector that knows Canvas and Moodle
downloads (or any regex with a ``student_id`` group). A folder is
``<student>/<notebook>.ipynb`` or ``<student>/<lesson>/<notebook>.ipynb``.

Then each learner's folder is repaired so that nbgrader always has one notebook to grade,
under the lesson's name: a renamed notebook is renamed back, the right one of several is
picked, and a file that is empty, not JSON or not a notebook is replaced by the blank
lesson (a zero, explained at the top of the feedback). Every repair is a report line.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..course import CourseError, Lesson

CANVAS = (r".*/(?P<name>[^/_]+)(?P<late>_LATE)?_(?P<student_id>\d+)_\d+_"
          r"(?P<file_id>[^/]+)$")
MOODLE_FOLDER = (r".*/(?P<name>[^/]+?)_(?P<student_id>\d+)_assignsubmission_[a-z]+_/"
                 r"(?:.*/)?(?P<file_id>[^/]+)$")
MOODLE_FLAT = (r".*/(?P<name>[^/]+?)_(?P<student_id>\d+)_assignsubmission_[a-z]+_"
               r"(?P<file_id>[^/]+)$")
MAX_NOTEBOOK_BYTES = 100 << 20
SAFE_ID = re.compile(r"^[A-Za-z0-9@._+-]{1,100}$")


@dataclass
class Learner:
    student: str
    first_name: str = ""
    last_name: str = ""
    notes: list[str] = field(default_factory=list)
    blank: bool = False
    lms_name: str = ""  # the name the LMS put in the file name, as it wrote it

    @property
    def label(self) -> str:
        name = " ".join(p for p in (self.first_name, self.last_name) if p) or self.lms_name
        return f"{self.student} ({name})" if name and name != self.student else self.student


def _split_name(name: str) -> tuple[str, str]:
    """(first, last) from a full name ("Jane Doe", Moodle); a single word (Canvas's
    "doejohn", its sortable name run together) is no first or last name at all."""
    parts = name.replace("_", " ").split()
    if len(parts) >= 2:
        return " ".join(parts[:-1]), parts[-1]
    return "", ""


# ----------------------------------------------------------------------------- zip


def _collector_class(patterns: list[str], names: dict, stamps: dict[str, str]):
    from nbgrader.plugins import FileNameCollectorPlugin

    class LMSCollector(FileNameCollectorPlugin):
        """Canvas and Moodle file names (or the instructor's regex)."""

        def collect(self, submitted_file: str):
            # every file: a learner who handed in no notebook is graded blank, not skipped
            path = submitted_file.replace("\\", "/")
            for pattern in patterns:
                match = re.match(pattern, path)
                if match and match.groupdict().get("student_id"):
                    groups = match.groupdict()
                    student = groups["student_id"]
                    lms_name = groups.get("name") or ""
                    first, last = _split_name(lms_name)
                    names.setdefault(student, (first, last, bool(groups.get("late")),
                                               lms_name))
                    found = {"student_id": student,
                             "file_id": groups.get("file_id") or Path(path).name}
                    stamp = next((t for member, t in stamps.items()
                                  if path == member or path.endswith("/" + member)), "")
                    if stamp:
                        found["timestamp"] = stamp
                    return found
            self.log.warning("no learner found in the file name %s", submitted_file)
            return None

    return LMSCollector


def collect_zip(archive: Path, lesson: Lesson, course: Path, config,
                pattern: str | None = None) -> dict[str, Learner]:
    from nbgrader.apps import ZipCollectApp
    from nbgrader.coursedir import CourseDirectory

    downloaded = course / "downloaded" / lesson.name
    shutil.rmtree(downloaded, ignore_errors=True)
    (downloaded / "archive").mkdir(parents=True)
    shutil.copyfile(archive, downloaded / "archive" / archive.name)
    names: dict[str, tuple[str, str, bool, str]] = {}
    patterns = ([pattern] if pattern else []) + [CANVAS, MOODLE_FOLDER, MOODLE_FLAT]
    app = ZipCollectApp(config=config)
    app.coursedir = CourseDirectory(config=config)
    app.coursedir.assignment_id = lesson.name
    app.collector_plugin = _collector_class(patterns, names, _zip_times(archive))
    app.force = True
    app.strict = False
    previous = {p.name for p in (course / "submitted").glob("*")}
    try:
        app.init_plugins()
        app.extract_archive_files()
        app.process_extracted_files()
    except SystemExit:
        raise CourseError(f"nbgrader zip_collect could not collect {archive.name}") from None
    learners = {}
    for student, (first, last, late, lms_name) in sorted(names.items()):
        if not (course / "submitted" / student / lesson.name).is_dir():
            continue
        learner = Learner(student, first, last, lms_name=lms_name)
        if late:
            learner.notes.append("marked late by the LMS")
        learners[student] = learner
    del previous
    return learners


def _zip_times(archive: Path) -> dict[str, str]:
    """Each file's time as the LMS wrote it into the zip (its submission time; no time zone
    is stored, nbgrader reads it as UTC). Zips without times (1980-01-01) give none."""
    import zipfile

    with zipfile.ZipFile(archive) as zf:
        return {info.filename: "{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}".format(
                    *info.date_time)
                for info in zf.infolist() if not info.is_dir() and info.date_time[0] > 1980}


# ----------------------------------------------------------------------------- folder


def collect_folder(folder: Path, lesson: Lesson, course: Path) -> dict[str, Learner]:
    submitted = course / "submitted"
    same = folder.resolve() == submitted.resolve()
    learners: dict[str, Learner] = {}
    for entry in sorted(folder.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        student = entry.name
        if not SAFE_ID.match(student):
            raise CourseError(f"{entry}: a learner's folder name must be a plain id "
                              "(letters, digits, . _ - + @)")
        learners[student] = Learner(student)
        if same:
            continue
        inner = entry / lesson.name
        src = inner if inner.is_dir() else entry
        dest = submitted / student / lesson.name
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for item in sorted(src.iterdir()):
            if item.name.startswith(".") or item.is_symlink() or (
                    src is entry and item.is_dir() and item.name != lesson.name and
                    not any(item.rglob("*.ipynb"))):
                continue  # a symlink could point at anything the grader may read
            target = dest / item.name
            if item.is_dir():
                shutil.copytree(item, target, ignore=_no_links)
            else:
                shutil.copy2(item, target)
    return learners


def _no_links(folder: str, names: list[str]) -> list[str]:
    skip = {".ipynb_checkpoints", "__pycache__"}
    return [n for n in names if n in skip or Path(folder, n).is_symlink()]


# ----------------------------------------------------------------------------- repair


def _read(path: Path) -> tuple[dict | None, str]:
    """(notebook, "") or (None, why it is not one)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, f"cannot be read ({exc.__class__.__name__})"
    if size == 0:
        return None, "the file is empty"
    if size > MAX_NOTEBOOK_BYTES:
        return None, f"the file is too large ({size >> 20} MB)"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read as text ({exc.__class__.__name__})"
    if not text.strip():
        return None, "the file is empty"
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"not a notebook (invalid JSON at line {exc.lineno})"
    if not isinstance(raw, dict) or not isinstance(raw.get("cells"), list):
        return None, "not a notebook (no list of cells)"
    if not raw["cells"]:
        return None, "the notebook has no cells"
    try:
        nb = nbformat.reads(text, as_version=4)
        for cell in nb.cells:
            if not isinstance(cell.get("source"), str):
                cell["source"] = "".join(cell.get("source") or [])
            cell.setdefault("metadata", {})
            if cell.get("cell_type") == "code":
                cell.setdefault("outputs", [])
                cell.setdefault("execution_count", None)
            elif cell.get("cell_type") not in ("markdown", "raw"):
                raise ValueError(f"unknown cell type {cell.get('cell_type')!r}")
        nbformat.validator.normalize(nb)
        nb.nbformat, nb.nbformat_minor = 4, max(nb.get("nbformat_minor", 5), 5)
        for i, cell in enumerate(nb.cells):
            if not isinstance(cell.get("id"), str) or not cell["id"]:
                cell["id"] = f"cell-{i}"
    except Exception as exc:  # nbformat raises many types for malformed notebooks
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        return None, f"not a valid notebook ({first[:120]})"
    return nb, ""


def _lesson_meta(nb) -> str | None:
    meta = nb.get("metadata", {}).get("attnlab", {})
    return meta.get("lesson") if isinstance(meta, dict) else None


def _release_cells(release) -> dict[str, object]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in release.cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")}


def _restore_metadata(nb, release) -> list[str]:
    """A learner cannot turn a test cell into an answer cell (or change its points)."""
    want = _release_cells(release)
    changed, broken = [], 0
    keys = ("grade", "solution", "locked", "points", "task")
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if "nbgrader" not in meta:
            continue
        ours = meta["nbgrader"]
        if not isinstance(ours, dict) or not isinstance(ours.get("grade_id", ""), str):
            del meta["nbgrader"]
            broken += 1
            continue
        ref = want.get(ours.get("grade_id"))
        if ref is None:
            continue
        theirs = ref.metadata["nbgrader"]
        if any(ours.get(k) != theirs.get(k) for k in keys):
            changed.append(ours["grade_id"])
        meta["nbgrader"] = json.loads(json.dumps(theirs))
    notes = []
    if changed:
        notes.append("cell metadata restored from the lesson: " + ", ".join(changed))
    if broken:
        notes.append(f"{broken} cell(s) with broken nbgrader metadata treated as plain cells")
    return notes


def _locked_changes(nb, release) -> list[str]:
    """Report lines for deleted, duplicated or edited locked cells."""
    want = {gid: c for gid, c in _release_cells(release).items()
            if c.metadata["nbgrader"].get("locked") or c.metadata["nbgrader"].get("grade")}
    seen: dict[str, int] = {}
    edited = []
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if not gid:
            continue
        seen[gid] = seen.get(gid, 0) + 1
        ref = want.get(gid)
        if ref is not None and ref.metadata["nbgrader"].get("locked") and \
                cell.source.strip() != ref.source.strip():
            edited.append(gid)
    notes = []
    missing = [gid for gid in want if gid not in seen]
    if missing:
        notes.append("deleted cells restored from the lesson: " + ", ".join(missing))
    dup = [gid for gid, n in seen.items() if n > 1]
    if dup:
        notes.append("duplicated cells (the last copy is graded): " + ", ".join(dup))
    if edited:
        notes.append("edited locked cells restored from the lesson: " + ", ".join(
            sorted(set(edited))))
    return notes


def repair(learner: Learner, lesson: Lesson, course: Path, release_path: Path,
           originals: Path) -> None:
    """Leave exactly one readable notebook named after the lesson in the learner's folder."""
    folder = course / "submitted" / learner.student / lesson.name
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{lesson.name}.ipynb"
    candidates = sorted(p for p in folder.rglob("*.ipynb")
                        if ".ipynb_checkpoints" not in p.parts)
    release = nbformat.read(release_path, as_version=4)
    read = {p: _read(p) for p in candidates}
    good = [p for p in candidates if read[p][0] is not None]
    chosen: Path | None = None
    if target in good:
        chosen = target
    elif good:
        by_meta = [p for p in good if _lesson_meta(read[p][0]) == lesson.name]
        pool = by_meta or good
        chosen = max(pool, key=lambda p: (p.stat().st_mtime, p.name))
    if len(candidates) > 1:
        learner.notes.append(f"{len(candidates)} notebooks submitted; graded "
                             f"{chosen.relative_to(folder) if chosen else 'none of them'}")
    why = ""
    if chosen is None:
        if candidates:
            why = read[candidates[0]][1]
            learner.notes.append(f"{candidates[0].name}: {why}; graded as a blank lesson")
        else:
            why = "no notebook was submitted"
            learner.notes.append("no notebook submitted; graded as a blank lesson")
        nb = nbformat.from_dict(json.loads(json.dumps(release)))
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"**Grading note.** {why[0].upper() + why[1:]}, so this lesson was graded as "
            "blank (zero autograded points). Ask your instructor if this is a mistake.",
            id="attnlab-grading-note"))
        learner.blank = True
    else:
        nb = read[chosen][0]
        if chosen != target:
            learner.notes.append(f"renamed {chosen.relative_to(folder)} to {target.name}")
        other = _lesson_meta(nb)
        if other and other != lesson.name:
            learner.notes.append(f"the notebook says it is lesson {other}")
        learner.notes += _restore_metadata(nb, release)
        learner.notes += _locked_changes(nb, release)
    # keep the originals aside, out of nbgrader's way
    keep = originals / learner.student
    for path in candidates:
        if path != target or chosen != target:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, keep / path.name)
            path.unlink()
    text = nbformat.writes(nb)
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
