"""Attention Lab's autograder: reference kernels, checks, and the build/check/grade commands."""

__version__ = "0.1.0"
