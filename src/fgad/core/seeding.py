"""One seed seeds everything; every random draw of a training step derives from (seed, step).

Deriving each step's randomness from the seed and the step number (not from a running RNG) makes
a resumed run draw exactly what an uninterrupted run would have drawn.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

_MIX = 0x9E3779B97F4A7C15


def derive_seed(seed: int, *keys: int) -> int:
    """A 63-bit seed from ``seed`` and integer keys (splitmix64 steps)."""
    z = seed & 0xFFFFFFFFFFFFFFFF
    for k in keys:
        z = (z + _MIX + (k & 0xFFFFFFFFFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        z ^= z >> 31
    return z & 0x7FFFFFFFFFFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def generator(seed: int, *keys: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *keys))
    return g


def enable_determinism() -> None:
    """Deterministic kernels on CUDA (cuDNN, cuBLAS); an op without one raises instead of varying."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True)
