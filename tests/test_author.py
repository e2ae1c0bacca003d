"""Is `python -m autograder.author` export-then-import lossless, also after cells move?"""

from __future__ import annotations

import re
import subprocess
import sys

import nbformat

from autograder.author import ESCAPE, from_script, to_script
from autograder.course import ROOT, lessons

HEADER = re.compile(r"(?m)^(?=# %%(?: |$))")  # as jupytext reads a header


def _cells(script: str) -> list[str]:
    """The script cut at its cell headers: one chunk per cell."""
    return [chunk for chunk in HEADER.split(script) if chunk]


def _join(chunks: list[str]) -> str:
    return "".join(chunk if chunk.endswith("\n\n") else chunk.rstrip("\n") + "\n\n"
                   for chunk in chunks)


def _roles(nb) -> list[tuple]:
    """What nbgrader keys on, per cell: type, source and its nbgrader metadata."""
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


def _import(script: str, lesson):
    return from_script(script, nbformat.read(lesson.source, as_version=4), lesson.name)


def test_export_then_import_is_the_identity(lesson):
    """Is importing the exported script byte for byte the committed solution notebook?"""
    nb = nbformat.read(lesson.source, as_version=4)
    back = _import(to_script(nb), lesson)
    assert nbformat.writes(back) + "\n" == lesson.source.read_text(encoding="utf-8")


def test_inserted_and_moved_cells_keep_their_grade_ids(lesson):
    """After inserting a cell and moving a graded one, does every cell keep its metadata?"""
    nb = nbformat.read(lesson.source, as_version=4)
    chunks = _cells(to_script(nb))
    assert len(chunks) == len(nb.cells)
    graded = [i for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader", {}).get("grade")]
    moved = graded[-1]
    chunks.insert(1, chunks.pop(moved))  # the last graded cell, right after the first cell
    chunks.insert(1, "# %%\nprint('a cell the author added')\n\n")
    back = _import(_join(chunks), lesson)
    roles = _roles(nb)
    want = [roles[0], ("code", "print('a cell the author added')", None), roles[moved],
            *[r for i, r in enumerate(roles[1:], 1) if i != moved]]
    assert _roles(back) == want
    ids = [c.metadata["nbgrader"]["grade_id"] for c in nb.cells if "nbgrader" in c.metadata]
    assert sorted(c.metadata["nbgrader"]["grade_id"] for c in back.cells
                  if "nbgrader" in c.metadata) == sorted(ids)


def test_cell_markers_inside_a_cell_do_not_split_it():
    """Do lines that read like cell headers (and the escape itself) survive inside cells?"""
    tricky = "x = 1\n# %%\n#%% not a cell\n# In[3]:\n# <codecell>\n  # %%% deep\n" \
             f"{ESCAPE}already escaped\n%%timeit\ny = 2"
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(tricky),
        nbformat.v4.new_markdown_cell("Prose\n%% a line of prose\nIn[2]:\n# %% a heading"),
        nbformat.v4.new_code_cell("")])
    script = to_script(nb)
    assert len(_cells(script)) == 3
    back = from_script(script)
    assert [(c.cell_type, c.source) for c in back.cells] == \
        [(c.cell_type, c.source) for c in nb.cells]


def test_cli_round_trip_and_a_missing_script(tmp_path):
    """Does the command line export and import a lesson unchanged, and name a missing file?"""
    lesson = lessons()[0]
    target = tmp_path / lesson.name / f"{lesson.name}.ipynb"
    target.parent.mkdir()
    target.write_bytes(lesson.source.read_bytes())
    script = tmp_path / "lesson.py"
    command = [sys.executable, "-m", "autograder.author"]
    exported = subprocess.run([*command, "export", str(target)], cwd=ROOT, check=True,
                              capture_output=True, text=True)
    script.write_text(exported.stdout)
    subprocess.run([*command, "import", str(script), str(target)], cwd=ROOT, check=True,
                   capture_output=True)
    assert target.read_bytes() == lesson.source.read_bytes()
    missing = subprocess.run([*command, "import", str(tmp_path / "nope.py"), str(target)],
                             cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nope.py'} does not exist"
    assert target.read_bytes() == lesson.source.read_bytes()
