"""Our two nbgrader preprocessors: sandboxed execution for autograde, hidden tests for feedback.

* :class:`SandboxedExecute` takes the place of nbgrader's ``Execute`` in the autograde
  pipeline that ``grade`` runs. nbgrader itself still reads the submission, sanitises it
  (ClearOutput, DeduplicateIds, OverwriteKernelspec, OverwriteCells with
  ``add_missing_cells``, CheckCellMetadata), applies IgnorePattern, LimitOutput, saves the
  grades and late penalties and writes the autograded notebook. The execution itself was
  done ahead of time, in parallel, in sandboxed kernels, and the trusted verdicts written
  into the test cells; this step puts those outputs into nbgrader's notebook after checking
  that its cells are exactly the ones that were run (else it asks for a run now).
* :class:`HideHiddenTests` is added to ``generate_feedback`` (nbgrader_config.py): the
  source of hidden test regions is cut from test cells, tracebacks of test cells are
  reduced to their message, and any text of a hidden test that a learner's code managed to
  print anywhere in the notebook is redacted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from nbgrader.preprocessors import DeduplicateIds, Execute, NbGraderPreprocessor
from traitlets import Unicode

BEGIN = "BEGIN HIDDEN TESTS"
END = "END HIDDEN TESTS"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def fingerprint(nb) -> str:
    """What was run: every cell's type, grade id and source."""
    digest = hashlib.sha256()
    for cell in nb.cells:
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        digest.update(json.dumps([cell.cell_type, grade_id, cell.source]).encode())
    return digest.hexdigest()


class SandboxedExecute(Execute):
    """Splice in the outputs of the sandboxed run of this very notebook."""

    results_dir = Unicode("", help="where the worker pool left each learner's run").tag(
        config=True)

    # set by the grading pipeline: run this notebook now (student, nb) -> executed nb
    execute_now: Callable | None = None

    def preprocess(self, nb, resources):
        student = resources["nbgrader"]["student"]
        path = Path(self.results_dir) / f"{student}.json"
        executed = None
        if path.exists():
            data = json.loads(path.read_text(encoding="utf-8"))
            if data.get("fingerprint") == fingerprint(nb):
                import nbformat

                executed = nbformat.from_dict(data["notebook"])
        if executed is None:
            if SandboxedExecute.execute_now is None:
                raise RuntimeError(f"no sandboxed run of {student}'s notebook to use")
            executed = SandboxedExecute.execute_now(student, nb)
        for cell, done in zip(nb.cells, executed.cells, strict=True):
            if cell.cell_type == "code":
                cell.outputs = done.get("outputs", [])
                cell.execution_count = done.get("execution_count")
        widgets = executed.metadata.get("widgets")
        if widgets:
            nb.metadata["widgets"] = widgets
        return nb, resources


class DropDuplicateIds(DeduplicateIds):
    """nbgrader's DeduplicateIds (the last copy of a cell keeps its id), but the earlier
    copies lose their ``nbgrader`` metadata entirely instead of keeping an empty dict, which
    ``OverwriteCells(add_missing_cells=True)`` cannot read (KeyError 'grade_id')."""

    def preprocess(self, nb, resources):
        nb, resources = super().preprocess(nb, resources)
        for cell in nb.cells:
            if cell.get("metadata", {}).get("nbgrader", None) == {}:
                del cell.metadata["nbgrader"]
        return nb, resources


def _hidden_lines(source: str) -> tuple[str, list[str]]:
    """The source without its hidden regions, and the hidden lines."""
    kept, hidden, inside = [], [], False
    for line in source.splitlines():
        if BEGIN in line:
            inside = True
            continue
        if END in line:
            inside = False
            continue
        (hidden if inside else kept).append(line)
    return "\n".join(kept), hidden


class HideHiddenTests(NbGraderPreprocessor):
    """Feedback never shows hidden tests: neither their source nor their tracebacks."""

    placeholder = Unicode("# (hidden tests)", help="what replaces a hidden region").tag(
        config=True)

    def preprocess(self, nb, resources):
        secrets: set[str] = set()
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if not (meta.get("grade") and not meta.get("solution")):
                continue
            if BEGIN in cell.source:
                kept, hidden = _hidden_lines(cell.source)
                secrets |= {ln.strip() for ln in hidden if len(ln.strip()) >= 6
                            and not ln.strip().startswith("#")}
                cell.source = (kept.rstrip() + "\n" + self.placeholder).lstrip("\n")
            if cell.cell_type == "code":
                for out in cell.get("outputs", []):
                    if out.get("output_type") == "error":
                        text = ANSI.sub("", f"{out.get('ename', '')}: {out.get('evalue', '')}")
                        out["traceback"] = [text]
        if secrets:
            for cell in nb.cells:
                for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
                    _redact(out, secrets)
        return nb, resources


def _redact_text(text: str, secrets: set[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[hidden test]")
    return text


def _redact(out, secrets: set[str]) -> None:
    if "text" in out:
        out["text"] = _redact_text(str(out["text"]), secrets)
    for key in ("evalue",):
        if key in out:
            out[key] = _redact_text(str(out[key]), secrets)
    if "traceback" in out:
        out["traceback"] = [_redact_text(str(t), secrets) for t in out["traceback"]]
    data = out.get("data")
    if isinstance(data, dict):
        for mime, value in list(data.items()):
            if mime.startswith("text/") or mime.endswith("json"):
                if isinstance(value, list):
                    value = "".join(map(str, value))
                if isinstance(value, str):
                    data[mime] = _redact_text(value, secrets)
