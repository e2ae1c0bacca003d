"""Lesson 03, multi-head attention: ``split_heads``, ``merge_heads`` and
``MultiHeadAttention``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
