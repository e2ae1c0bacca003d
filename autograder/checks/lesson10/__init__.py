"""Lesson 10, today's decoder block: ``RMSNorm``, ``SwiGLU``, ``repeat_kv``,
``GroupedQueryAttention``, ``LlamaBlock``, ``TinyLlama``, ``kv_cache_bytes``, ``top_k_top_p``.

``cases.py`` runs in the learner's kernel, ``verdicts.py`` in the trusted grader only.
"""
