"""The last cell of every lesson: grade the saved notebook against the full tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _this_notebook(lesson: str | None) -> Path | None:
    """The notebook this kernel belongs to, as JupyterLab tells its kernels; else None.

    Kernels started by nbgrader (Validate, autograde) are not told, so the self-check never
    runs inside a grading run.
    """
    session = os.environ.get("JPY_SESSION_NAME", "")
    if not session:
        return None
    if session.endswith(".ipynb") and Path(session).is_file():
        return Path(session)
    for path in sorted(Path.cwd().glob("*.ipynb")):  # renamed since the kernel started
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        if lesson and meta.get("attnlab", {}).get("lesson") == lesson:
            return path
    return None


def self_check(lesson: str | None = None, notebook: str | None = None) -> None:
    """Run ``python -m autograder check`` on this lesson's saved notebook and show the report.

    Written answers the learner has written are shown beside the solution's model answer and
    rubric, for self-assessment (rendered as Markdown in a notebook).
    """
    if os.environ.get("ATTNLAB_GRADING"):
        print("Self-check skipped: this notebook is being graded right now.")
        return
    path = Path(notebook) if notebook else _this_notebook(lesson)
    if path is None:
        print("The self-check runs from JupyterLab. Elsewhere, save the notebook and run:\n"
              "    python -m autograder check PATH/TO/NOTEBOOK.ipynb")
        return
    print(f"Checking the saved copy of {path.name} (save with Ctrl+S first)... "
          "this runs the whole notebook, so it takes a little while.\n", flush=True)
    env = {**os.environ, "ATTNLAB_GRADING": "1"}
    result = subprocess.run([sys.executable, "-m", "autograder", "check", str(path), "--json"],
                            capture_output=True, text=True, env=env)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {"error": (result.stderr or result.stdout).strip()}
    show_report(report, str(path))


def show_report(report: dict, path: str) -> None:
    """Print a ``check --json`` report; written answers as Markdown beside the model answer."""
    from autograder.selfcheck import Report, TestResult, format_report

    if "error" in report:
        print(f"error: {report['error']}")
        return
    parsed = Report(**{**report, "tests": [TestResult(**t) for t in report["tests"]]})
    answered = [t for t in parsed.tests if t.answered]
    print(format_report(parsed, path, answers=False))
    if not answered:
        return
    from IPython.display import Markdown, display

    for t in answered:
        quote = "\n".join("> " + ln for ln in t.answer.splitlines())
        display(Markdown(f"#### {t.id}: your answer\n\n{quote}\n\n"
                         f"#### {t.id}: model answer and rubric (mark yourself against it)\n\n"
                         f"{t.model_answer or '(no model answer in the solution notebook)'}"))
