"""``python -m autograder grade``: nbgrader autograding at class scale, sandboxed.

Design in one page (details in each module):

* **Real nbgrader underneath.** zip_collect collects an LMS zip; nbgrader's autograde
  (sanitising, OverwriteCells with add_missing_cells, DeduplicateIds, IgnorePattern,
  LimitOutput, SaveAutoGrades, late penalties) writes the gradebook (SQLite in the course
  folder, or PostgreSQL); generate_feedback renders the feedback; the CSV export is
  nbgrader's. Formgrader works on the result. Only the *execution* step is ours
  (nbgrader_hooks.SandboxedExecute).
* **Isolation** (sandbox.py, executor.py): every submission runs in a fresh kernel forked
  from a fork server (zygote.py) that has numpy, torch, matplotlib and ipykernel imported
  but has never run learner code (one for the run: after its imports it forks a copy of
  itself per further worker, each serving one worker over its own pipes); the fork enters
  new mount/PID/network/IPC namespaces, a minimal read-only root, a private tmpfs home
  holding only that submission, an unprivileged uid, rlimits; the executor outside enforces
  timeouts and output caps.
* **Unforgeable verdicts** (image.py, verdict.py, codec.py, trusted.py): the kernel sees
  only the *record* half of each check and the building blocks of earlier lessons; it emits
  records (plain data, JSON) and the trusted grader compares them with the reference and
  replaces the test cell's outputs with the verdict. Patched asserts, numpy, torch or
  checks change nothing; tampering with the recorder is detected; forbidden built-ins are
  caught in Python, torch-function and aten-operator dispatch.
* **Fast**: the fork server makes each kernel without importing numpy, torch,
  matplotlib, ipykernel and its debugger again (BENCHMARKS.md has the class-scale timing);
  N workers run kernels in parallel while this process, the only gradebook writer, runs
  nbgrader's autograde (db.share_engines: one SQLAlchemy engine per database, nbgrader's
  schema set-up, alembic stamp and metadata-schema check done once, not at every
  ``Gradebook()``); each worker builds nbgrader's feedback exporter once (and highlights a
  cell every learner has once), runs torch on one thread and skips jsonschema's RFC 3987
  grammar. Every stage of
  every learner is timed into the journal, the run's phases into ``timings.json``
  (``benchmarks/grading.py`` prints the breakdown).
* **Always a grade, nothing lost** (collect.py, journal.py): broken submissions are
  repaired or graded blank with a reason; every finished step is journalled so a killed
  run resumes without grading anyone twice.
"""
