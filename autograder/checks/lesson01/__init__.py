"""Lesson 01, attention as retrieval: ``softmax``, ``attend`` and the blanks.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
