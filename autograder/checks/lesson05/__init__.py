"""Lesson 05, positional encoding: ``sinusoidal_encoding``, ``LearnedPositionalEmbedding``,
``apply_rope`` and ``alibi_bias``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
