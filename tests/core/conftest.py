"""Shared fixtures of the core suite: tiny image sets and tiny fitted detectors (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fgad
from fgad.core.config import PAPER_SETTINGS

# Two shared cores: one intra-op thread keeps runs fast, predictable and deterministic.
torch.set_num_threads(1)

# The paper's score unless a test asks for another (the improved defaults hold images out).
TINY = dict(preset="tiny", device="cpu", **PAPER_SETTINGS)


def random_uint8(n: int, h: int = 28, w: int = 28, c: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture(scope="session")
def make_images():
    """make_images(n, h=28, w=28, c=None, seed=0) -> random uint8 images."""
    return random_uint8


@pytest.fixture(scope="session")
def grey_images() -> np.ndarray:
    return random_uint8(16, seed=1)


@pytest.fixture(scope="session")
def colour_images() -> np.ndarray:
    return random_uint8(8, c=3, seed=2)


@pytest.fixture(scope="session")
def grey_detector(grey_images) -> fgad.Detector:
    """A tiny paper-method detector (geometric + jigsaw) fitted on 16 grey 28×28 images."""
    return fgad.Detector(**TINY).fit(grey_images, progress=False)


@pytest.fixture(scope="session")
def colour_detector(colour_images) -> fgad.Detector:
    return fgad.Detector(**TINY, tasks=("geometric",), steps=2).fit(colour_images, progress=False)
