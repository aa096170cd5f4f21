"""Fixtures of the decision / estimator / export suite: tiny fitted detectors (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import fgad
from fgad.core.config import IMPROVED, PAPER_SETTINGS

from decision_helpers import random_uint8

# Two shared cores: one intra-op thread keeps runs fast, predictable and deterministic.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def grey_train() -> np.ndarray:
    return random_uint8(8, seed=11)


@pytest.fixture(scope="session")
def grey_detector(grey_train) -> fgad.Detector:
    """The paper's method (geometric + jigsaw), tiny, fitted on 8 grey 28×28 images (padded to 32)."""
    return fgad.Detector(preset="tiny", device="cpu", steps=2, **PAPER_SETTINGS).fit(grey_train, progress=False)


@pytest.fixture(scope="session")
def colour_detector() -> fgad.Detector:
    """Geometric + jigsaw, tiny, fitted on 6 colour 32×32 images."""
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, **PAPER_SETTINGS)
    return det.fit(random_uint8(6, 32, 32, 3, seed=12), progress=False)


@pytest.fixture(scope="session")
def small_detector() -> fgad.Detector:
    """The paper's method on 16×16 grey images with image_size 16: the cheapest to score."""
    return fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16, **PAPER_SETTINGS).fit(
        random_uint8(6, 16, 16, seed=13), progress=False)


@pytest.fixture(scope="session")
def calibrated_detector() -> fgad.Detector:
    """The improved detector's scoring (``core.config.IMPROVED``: log-space task scores, a kNN
    feature component, z-scores against held-out normals), tiny, on 15 grey 16×16 images (3 held out)."""
    return fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16, **IMPROVED).fit(
        random_uint8(15, 16, 16, seed=14), progress=False)
