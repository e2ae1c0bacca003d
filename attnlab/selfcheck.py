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
    """Run ``python -m autograder check`` on this lesson's saved notebook and print the report."""
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
    result = subprocess.run([sys.executable, "-m", "autograder", "check", str(path)],
                            capture_output=True, text=True, env=env)
    print(result.stdout or result.stderr)
