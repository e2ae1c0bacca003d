"""Submissions for the grading tests and benchmark (honest, wrong and hostile)."""
