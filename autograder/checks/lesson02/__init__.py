"""Lesson 02, scaled dot-product attention: ``scaled_dot_product_attention`` and one
``SelfAttention`` head.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
