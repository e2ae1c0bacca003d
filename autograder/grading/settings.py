"""Grading settings: defaults here, the course's values in nbgrader_config.py, flags on top."""

from __future__ import annotations

import os

from traitlets import Enum, Float, Integer
from traitlets.config import Configurable


class Grading(Configurable):
    """``python -m autograder grade``: limits for each learner's sandboxed kernel."""

    workers = Integer(0, help="parallel workers (0: one per CPU core)").tag(config=True)
    cell_timeout = Float(120.0, help="seconds one cell may run").tag(config=True)
    notebook_timeout = Float(900.0, help="seconds a whole notebook may run").tag(config=True)
    memory_mb = Integer(2048, help="memory cap of a kernel (MB of data)").tag(config=True)
    processes = Integer(64, help="processes and threads a kernel may have").tag(config=True)
    output_mb = Float(8.0, help="output one cell may produce (MB)").tag(config=True)
    tmpfs_mb = Integer(256, help="size of the kernel's private /tmp and home (MB)").tag(
        config=True)
    isolation = Enum(["auto", "root", "userns", "none"], "auto",
                     help="how to confine kernels: auto picks the strongest available").tag(
        config=True)
    uid_base = Integer(1_000_000, help="first uid for sandboxed kernels (root mode)").tag(
        config=True)

    def resolved_workers(self) -> int:
        return self.workers if self.workers > 0 else max(1, os.cpu_count() or 1)
