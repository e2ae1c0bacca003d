"""What a grading run has finished, written down before it counts (resume after a kill).

One JSON line per finished step, appended and fsynced: ``executed`` (the sandboxed run's
result file is complete), ``graded`` (nbgrader autograde wrote every grade and the
autograded notebook), ``feedback`` (the feedback HTML is in place). A step is keyed by the
learner and the SHA-256 of the notebook that was graded, so a new submission is graded
anew and an old one never twice. A line cut short by a kill is ignored on reading.

``--regrade`` writes a ``regrade`` line first: everything before it is forgotten, on
reading too, so a regrade that is interrupted and run again (with or without the flag)
finishes it, regrading the learners it had not reached, instead of keeping their old
results. ``regrade_done`` closes it.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path


class Journal:
    def __init__(self, path: Path):
        self.path = path
        self.done: dict[tuple[str, str], set[str]] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self.regrade: dict | None = None  # an unfinished --regrade (its line), if any
        if path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    if entry.get("stage") == "regrade":
                        self.done, self.counts, self.regrade = {}, {}, entry
                        continue
                    if entry.get("stage") == "regrade_done":
                        self.regrade = None
                        continue
                    key = (entry["student"], entry["sha"])
                    self.done.setdefault(key, set()).add(entry["stage"])
                    if entry["stage"] == "executed":
                        self.counts[key] = self.counts.get(key, 0) + 1
                except (ValueError, KeyError, TypeError):
                    continue
        self._fh = open(path, "a", encoding="utf-8")

    def has(self, student: str, sha: str, stage: str) -> bool:
        return stage in self.done.get((student, sha), set())

    def record(self, student: str, sha: str, stage: str, **extra) -> None:
        self._write({"student": student, "sha": sha, "stage": stage,
                     "time": round(time.time(), 3), **extra})
        self.done.setdefault((student, sha), set()).add(stage)

    def start_regrade(self, **settings) -> None:
        """Forget every finished step, here and for any later run that reads this file."""
        self._write({"student": "", "sha": "", "stage": "regrade",
                     "time": round(time.time(), 3), **settings})
        self.done, self.counts = {}, {}
        self.regrade = {"stage": "regrade", **settings}

    def finish_regrade(self) -> None:
        if self.regrade is not None:
            self._write({"student": "", "sha": "", "stage": "regrade_done",
                         "time": round(time.time(), 3)})
            self.regrade = None

    def _write(self, entry: dict) -> None:
        self._fh.write(json.dumps(entry) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        self._fh.close()


class RunLock:
    """One grading run per course and lesson at a time."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self) -> RunLock:
        from ..course import CourseError

        self._fh = open(self.path, "w")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise CourseError(f"another grading run is using {self.path.parent}; wait for it "
                              "to finish") from None
        self._fh.write(str(os.getpid()))
        self._fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fh, fcntl.LOCK_UN)
        self._fh.close()
