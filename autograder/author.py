"""``python -m autograder.author``: edit a lesson as plain text, keep the notebook the source.

The solution notebooks in ``solutions/`` are the single source (nbgrader's formgrader and
create-assignment tools work on them directly). For authors who prefer a text editor this
tool converts a notebook to jupytext's percent format and back, losslessly:

    python -m autograder.author export solutions/01_x/01_x.ipynb > /tmp/01.py
    # ... edit /tmp/01.py ...
    python -m autograder.author import /tmp/01.py solutions/01_x/01_x.ipynb
    python -m autograder build

Each cell starts with a header line; nbgrader's metadata is in it as JSON, so every cell keeps
its grade id however cells are inserted or moved::

    # %% [markdown]                      prose (every line starts with "# ")
    # %%                                 code the learner may run and edit
    # %% nbgrader={"grade": false, "grade_id": "softmax", "locked": false,
    #              "schema_version": 3, "solution": true, "task": false}   (on one line)

A new graded cell needs a header of its own: copy one of the same kind and give it a new
``grade_id``. A line inside a cell that would read as a header (``# %%``, ``# In[3]:``) is
written with the prefix ``#~ `` and restored on import.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat

from autograder.build import normalise
from autograder.course import LESSON_NAME, Lesson

FORMAT = "py:percent"
# no YAML header (the notebook's metadata stays in the notebook); cells keep nbgrader's
JUPYTEXT = {"notebook_metadata_filter": "-all", "cell_metadata_filter": "nbgrader"}
ESCAPE = "#~ "
# what jupytext's percent reader takes for the start of a cell, with or without the "# "
# jupytext puts before markdown and magics; and lines already starting with the escape
NEEDS_ESCAPE = re.compile(
    r"^(#~ |\s*(#\s*)?(%%+(\s|$)|(%%|<codecell>|In\[[0-9 ]*\]:?)\s*$))")


def _map_lines(nb, fn):
    for cell in nb.cells:
        cell.source = "\n".join(fn(line) for line in cell.source.split("\n"))
    return nb


def _escape(line: str) -> str:
    return ESCAPE + line if NEEDS_ESCAPE.match(line) else line


def _unescape(line: str) -> str:
    return line[len(ESCAPE):] if line.startswith(ESCAPE) else line


def to_script(nb) -> str:
    """The percent script of a notebook (inverse of :func:`from_script`)."""
    nb = nbformat.from_dict(nb)  # a copy: the caller's notebook is left as it was
    nb.metadata = nbformat.from_dict({"jupytext": JUPYTEXT})
    return jupytext.writes(_map_lines(nb, _escape), fmt=FORMAT)


def from_script(text: str, template=None, name: str | None = None):
    """A notebook from the percent script; notebook-level metadata kept from ``template``.

    ``name``, a lesson's folder name, gives the notebook the canonical form ``build`` stores
    (stable cell ids, only nbgrader's cell metadata).
    """
    nb = _map_lines(jupytext.reads(text, fmt=FORMAT), _unescape)
    nb.metadata = nbformat.from_dict(template.metadata if template is not None else {})
    if name and LESSON_NAME.match(name):
        return normalise(nb, Lesson(name))
    for cell in nb.cells:
        cell.metadata.pop("lines_to_next_cell", None)
    return nb


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "export":
        sys.stdout.write(to_script(nbformat.read(argv[1], as_version=4)))
        return 0
    if len(argv) == 3 and argv[0] == "import":
        source, target = Path(argv[1]), Path(argv[2])
        if not source.is_file():
            print(f"error: {source} does not exist", file=sys.stderr)
            return 2
        template = nbformat.read(target, as_version=4) if target.exists() else None
        nb = from_script(source.read_text(encoding="utf-8"), template, target.stem)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, target)
        print(f"wrote {target}; now run `python -m autograder build`")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
