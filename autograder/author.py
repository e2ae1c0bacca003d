"""``python -m autograder.author``: edit a lesson as plain text, keep the notebook the source.

The solution notebooks in ``solutions/`` are the single source (nbgrader's formgrader and
create-assignment tools work on them directly). For authors who prefer a text editor this
tool converts a notebook to a percent-format script whose cell headers carry the nbgrader
role in a few words, and back:

    python -m autograder.author export solutions/01_x/01_x.ipynb > /tmp/01.py
    # ... edit /tmp/01.py ...
    python -m autograder.author import /tmp/01.py solutions/01_x/01_x.ipynb
    python -m autograder build

Cell headers::

    # %% [markdown]                      prose (every line starts with "# ")
    # %%                                 code the learner may run and edit
    # %% solution id=softmax             code with ### BEGIN/END SOLUTION regions
    # %% test id=softmax_values points=2 a locked, autograded test cell
    # %% [markdown] manual id=why_heads points=2   a free-text answer graded by hand
    # %% locked                          code the learner may run but not edit
    # %% [markdown] locked               prose nbgrader restores when grading
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat

HEADER = re.compile(r"^# %%(?: \[(markdown)\])?(.*)$")


def _nbgrader_meta(role: str, fields: dict) -> dict | None:
    base = {"schema_version": 3, "task": False}
    if role == "solution":
        return {**base, "grade": False, "locked": False, "solution": True,
                "grade_id": fields["id"]}
    if role == "test":
        return {**base, "grade": True, "locked": True, "solution": False,
                "grade_id": fields["id"], "points": float(fields.get("points", 1))}
    if role == "manual":
        return {**base, "grade": True, "locked": False, "solution": True,
                "grade_id": fields["id"], "points": float(fields.get("points", 1))}
    if role == "locked":
        return {**base, "grade": False, "locked": True, "solution": False,
                "grade_id": fields["id"]}
    return None


def from_script(text: str, template=None):
    """A notebook from the percent script; notebook-level metadata kept from ``template``."""
    nb = nbformat.v4.new_notebook()
    if template is not None:
        nb.metadata = template.metadata
    chunks: list[tuple[str, str, list[str]]] = []
    for line in text.splitlines():
        match = HEADER.match(line)
        if match:
            chunks.append((match.group(1) or "code", match.group(2).strip(), []))
        elif chunks:
            chunks[-1][2].append(line)
    for n, (kind, spec, lines) in enumerate(chunks):
        while lines and not lines[-1].strip():
            lines.pop()
        words = spec.split()
        role = words[0] if words and "=" not in words[0] else ""
        fields = dict(w.split("=", 1) for w in words if "=" in w)
        if role in ("locked",) and "id" not in fields:
            fields["id"] = f"locked_{n:03d}"
        if kind == "markdown":
            source = "\n".join(re.sub(r"^# ?", "", ln) for ln in lines)
            cell = nbformat.v4.new_markdown_cell(source)
        else:
            cell = nbformat.v4.new_code_cell("\n".join(lines))
        meta = _nbgrader_meta(role, fields)
        if meta:
            cell.metadata["nbgrader"] = meta
        nb.cells.append(cell)
    return nb


def to_script(nb) -> str:
    """The percent script of a notebook (inverse of :func:`from_script`)."""
    parts = []
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and meta.get("solution"):
            role = f"manual id={meta['grade_id']} points={meta['points']:g}"
        elif meta.get("grade"):
            role = f"test id={meta['grade_id']} points={meta['points']:g}"
        elif meta.get("solution"):
            role = f"solution id={meta['grade_id']}"
        elif meta.get("locked"):
            role = "locked"
        else:
            role = ""
        header = "# %%" + (" [markdown]" if cell.cell_type == "markdown" else "") + \
            (f" {role}" if role else "")
        body = cell.source
        if cell.cell_type == "markdown":
            body = "\n".join(f"# {ln}" if ln else "#" for ln in cell.source.splitlines())
        parts.append(f"{header}\n{body}\n")
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "export":
        sys.stdout.write(to_script(nbformat.read(argv[1], as_version=4)))
        return 0
    if len(argv) == 3 and argv[0] == "import":
        target = Path(argv[2])
        template = nbformat.read(target, as_version=4) if target.exists() else None
        nb = from_script(Path(argv[1]).read_text(encoding="utf-8"), template)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"wrote {target}; now run `python -m autograder build`")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
