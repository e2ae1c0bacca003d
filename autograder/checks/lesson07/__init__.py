"""Lesson 07, decoders and training: ``DecoderLayer``, ``TinyGPT`` and ``generate``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
