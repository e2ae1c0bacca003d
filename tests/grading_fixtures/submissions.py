"""Lesson 01 notebooks as learners hand them in: the release with answers filled in.

Honest variants (correct and typically wrong) are what the benchmark grades; the hostile
ones (tests/test_grading_adversarial.py) are written there, next to their expectations.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

LESSON = "01_attention_as_retrieval"

CORRECT = {
    "softmax": "def softmax(x, axis=-1):\n"
               "    z = x - x.max(axis=axis, keepdims=True)\n"
               "    e = np.exp(z)\n"
               "    return e / e.sum(axis=axis, keepdims=True)\n",
    "attend": "def attend(query, keys, values):\n"
              "    w = softmax(keys @ query)\n"
              "    return w @ values, w\n",
    "blanks": 'blank_projection = "Value"\nblank_normaliser = "softmax"\n',
}

# name -> (answers replacing the correct ones, expected autograded score out of 8)
HONEST = {
    "correct": ({}, 8.0),
    "softmax_overflows": ({"softmax": "def softmax(x, axis=-1):\n    e = np.exp(x)\n"
                                      "    return e / e.sum(axis=axis, keepdims=True)\n"},
                          7.0),
    "softmax_last_axis": ({"softmax": "def softmax(x, axis=-1):\n"
                                      "    z = x - x.max(axis=-1, keepdims=True)\n"
                                      "    e = np.exp(z)\n"
                                      "    return e / e.sum(axis=-1, keepdims=True)\n"}, 6.0),
    "attend_scaled": ({"attend": "def attend(query, keys, values):\n"
                                 "    w = softmax(keys @ query / np.sqrt(len(query)))\n"
                                 "    return w @ values, w\n"}, 6.0),
    "attend_swapped": ({"attend": "def attend(query, keys, values):\n"
                                  "    w = softmax(keys @ query)\n"
                                  "    return w, w @ values\n"}, 5.0),
    "blanks_wrong": ({"blanks": 'blank_projection = "key"\nblank_normaliser = "sigmoid"\n'},
                     6.5),
    "untouched": (None, 0.0),
}


def release(root: Path | None = None) -> nbformat.NotebookNode:
    root = root or Path(__file__).resolve().parents[2]
    return nbformat.read(root / "lessons" / LESSON / f"{LESSON}.ipynb", as_version=4)


def notebook(answers: dict[str, str] | None, extra_cells: dict[str, list[str]] | None = None,
             root: Path | None = None) -> nbformat.NotebookNode:
    """The release with ``answers`` (grade_id -> source) over the correct ones; ``None``
    leaves it untouched. ``extra_cells`` inserts code cells after a cell (by grade_id)."""
    nb = release(root)
    if answers is not None:
        filled = {**CORRECT, **answers}
        for cell in nb.cells:
            gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in filled:
                cell.source = filled[gid]
    for after, sources in (extra_cells or {}).items():
        index = next(i for i, c in enumerate(nb.cells)
                     if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == after)
        for offset, source in enumerate(sources, start=1):
            nb.cells.insert(index + offset, nbformat.v4.new_code_cell(
                source, id=f"extra-{after}-{offset}"))
    return nb


def honest_class(folder: Path, n: int, root: Path | None = None) -> dict[str, float]:
    """``n`` learners cycling through the honest variants; returns student -> expected."""
    expected = {}
    names = sorted(HONEST)
    for i in range(n):
        variant = names[i % len(names)]
        answers, score = HONEST[variant]
        student = f"s{i:03d}-{variant.replace('_', '-')}"
        (folder / student).mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook(answers, root=root), folder / student / f"{LESSON}.ipynb")
        expected[student] = score
    return expected
