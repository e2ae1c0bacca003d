"""Submissions for the grading tests and benchmark (honest, wrong and hostile)."""

from __future__ import annotations


def isolation_mode() -> str:
    """How ``grade`` will confine kernels here: root, userns or none."""
    from autograder.grading.sandbox import probe_mode

    return probe_mode()[0]


def isolation_flags() -> list[str]:
    """``grade``'s flags for this machine: none where no sandbox is possible (it would
    refuse to run unconfined learner code without being told)."""
    return [] if isolation_mode() != "none" else ["--isolation", "none"]
