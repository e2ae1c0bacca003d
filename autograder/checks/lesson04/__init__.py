"""Lesson 04, masking: ``causal_mask``, ``padding_mask``, ``masked_attention`` and
``leaks_future``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only. The
masks and the attention function are compared with the reference on fixed-seed cases.
``leaks_future`` is graded by running it: the record hands the learner's detector a panel of
small models (some leak the future, some do not, a few only barely) and keeps its verdicts;
the verdict knows by construction which models leak and names the likely mistake from the
pattern of wrong verdicts.
"""
