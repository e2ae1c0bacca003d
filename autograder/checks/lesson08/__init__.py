"""Lesson 08, efficient attention: ``tiled_attention``, ``sliding_window_mask`` and
``linear_attention``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only. The
functions are compared with the reference on fixed-seed cases; a catalogue of wrong variants,
rebuilt from the same cases, names the likely mistake. The record also runs tiled and linear
attention under ``ShapeRecorder``, which keeps the shape and dtype of every tensor the
learner's function creates, so the verdict can fail a function that formed a full (Lq, Lk)
matrix, however right its numbers.
"""
