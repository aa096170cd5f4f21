"""Shared fixtures of the explain / diagnose suite: tiny fitted detectors (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fgad
from fgad.core.config import IMPROVED, PAPER_SETTINGS

torch.set_num_threads(1)  # two shared cores: one intra-op thread is faster and deterministic

TINY = dict(preset="tiny", device="cpu")
PAPER = dict(TINY, **PAPER_SETTINGS)  # the paper's score (the defaults are the improved detector's)


def random_uint8(n: int, h: int = 28, w: int = 28, c: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w) if c is None else (n, h, w, c), dtype=np.uint8)


@pytest.fixture(scope="session")
def grey28() -> np.ndarray:
    return random_uint8(8, seed=11)


@pytest.fixture(scope="session")
def paper_det(grey28) -> fgad.Detector:
    """The paper's task set (geometric + jigsaw), tiny, fitted on 8 grey 28×28 images."""
    return fgad.Detector(**PAPER, steps=2).fit(grey28, progress=False)


@pytest.fixture(scope="session")
def jigsaw_det(grey28) -> fgad.Detector:
    """Jigsaw only, one step: a fitted shell whose ``net`` the stub tests replace."""
    return fgad.Detector(**PAPER, tasks=("jigsaw",), steps=1).fit(grey28[:4], progress=False)


@pytest.fixture(scope="session")
def rotation_det(grey28) -> fgad.Detector:
    """No jigsaw task: no heat map."""
    return fgad.Detector(**PAPER, tasks=("rotation",), steps=1).fit(grey28[:4], progress=False)


@pytest.fixture(scope="session")
def calibrated_det() -> fgad.Detector:
    """The improved detector's scoring (``core.config.IMPROVED``: log-space task scores, kNN feature
    component, z-scores against held-out normals), tiny, on 15 grey 16×16 images (3 held out)."""
    return fgad.Detector(**TINY, steps=2, image_size=16, **IMPROVED).fit(random_uint8(15, 16, 16, seed=12),
                                                                         progress=False)
