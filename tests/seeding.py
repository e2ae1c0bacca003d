"""Modules built from a fixed seed, for the reference tests."""

import torch


def seeded(seed, factory):
    """Build a module with torch's default init from a fixed seed, leaving the global stream."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()
