"""Lesson 06, the Transformer block: ``LayerNorm``, ``FeedForward``, ``EncoderLayer``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
