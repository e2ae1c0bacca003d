"""attnlab.warmup: what the class grader's fork server computes once for every kernel must
be what the lesson's cells ask for, with the values they would compute, and must leave the
random streams a learner's kernel starts with as they were."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from autograder.course import ROOT

LESSON_06 = """
import json, random, sys
import nbformat, numpy as np, torch
from attnlab import warmup
from attnlab.explore import norms

before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
warmup.lesson("06")
after = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
streams_kept = (torch.equal(before[0], after[0]) and (before[1] == after[1]).all()
                and before[2] == after[2])
warmed = norms.gradient_norms.cache_info()

# the lesson's own cells that use the module, as a learner runs them
nb = nbformat.read(sys.argv[1], as_version=4)
cells = [c.source for c in nb.cells if c.cell_type == "code" and "attnlab.explore.norms" in c.source
         and ("gradient_norms(" in c.source or "norm_placement_explorer(" in c.source)]
import matplotlib.pyplot as plt
namespace = {"torch": torch, "np": np, "plt": plt}
for source in cells:
    exec(compile(source, "<cell>", "exec"), namespace)
used = norms.gradient_norms.cache_info()

keys = [(d, p, r) for d in (norms.EXPLORER_DEPTH, norms.MAX_DEPTH)
        for p in norms.PLACEMENTS for r in (True, False)]
cached = [norms.gradient_norms(*k) for k in keys]
norms.gradient_norms.cache_clear()
norms.toy_stack.cache_clear()
torch.manual_seed(1234)  # a learner's kernel reaches these cells with other global streams
np.random.seed(1234)
random.seed(1234)
fresh = [norms.gradient_norms(*k) for k in keys]
print(json.dumps({"streams_kept": bool(streams_kept), "warmed": warmed.currsize,
                  "cells": len(cells), "new_misses": used.misses - warmed.misses,
                  "hits": used.hits - warmed.hits, "same_values": cached == fresh}))
"""


def test_lesson_06_warmup_is_what_its_cells_compute():
    """The lesson's explorer and its depth-48 table run on the warmed cache alone (no call
    computes anew), the cached values equal ones computed afresh from other global random
    streams (as in a learner's kernel), and torch's, numpy's and Python's global random
    streams are untouched by the warm-up."""
    source = ROOT / "solutions" / "06_transformer_block" / "06_transformer_block.ipynb"
    run = subprocess.run([sys.executable, "-c", LESSON_06, str(source)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, MPLBACKEND="Agg"))
    assert run.returncode == 0, run.stderr[-2000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["cells"] >= 2 and seen["hits"] > 0
    assert seen["new_misses"] == 0, "a lesson 06 cell computes what warm() does not cover"
    assert seen["streams_kept"] and seen["same_values"]
    assert seen["warmed"] == 12

