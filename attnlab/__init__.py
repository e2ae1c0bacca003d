"""Attention Lab's lesson-side package: the course's building blocks, plots and explorers.

The building blocks are the course's reference implementations, with the very API each
lesson asks you to write, so a later lesson can stand on an earlier one without importing
your notebook (paste your own class in instead, if you prefer):

    from attnlab import MultiHeadAttention, causal_mask
"""

from autograder.reference import *  # noqa: F403  (the building blocks, one implementation)
from autograder.reference import __all__ as _blocks

from .selfcheck import self_check

__all__ = [*_blocks, "self_check"]
