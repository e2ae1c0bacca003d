"""Lesson 06, the Transformer block: ``LayerNorm``, ``FeedForward``, ``EncoderLayer``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""

# TRANSITION: checks/lesson07.py (not yet split) imports these from here; they live in the
# module toolkit now (autograder/checks/_modules.py). Remove once lesson 07 is converted.
from .._modules import ATTN_NAMES, LayerArgs  # noqa: F401
