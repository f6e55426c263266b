"""Seeding every random number generator from one integer, once."""

from __future__ import annotations

import random

import numpy as np
import torch

EVAL_SEED_OFFSET = 1_000_003  # the evaluation env must not replay training episodes


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch and return the generator used for action sampling.

    Action sampling draws from its own generator rather than the global ones so that
    nothing else in the process (a library that calls ``np.random``) can shift it.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)
