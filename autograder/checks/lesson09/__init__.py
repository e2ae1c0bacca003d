"""Lesson 09, interpreting attention: ``layer_from_bert`` (on a BERT-like layer and the real
all-MiniLM-L6-v2) and ``attention_to``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
