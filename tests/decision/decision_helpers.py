"""Helpers of the decision suite (a module of its own: test folders' conftest modules would shadow
each other if tests imported from ``conftest``)."""

from __future__ import annotations

import numpy as np


def random_uint8(n: int, h: int = 28, w: int = 28, c: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)
