"""Scores recorded before the restructure: a fixed-seed ``quick`` model and DeepGEO, bit-identical.

``fixtures/reference_scores.json`` was written by the code before the package was regrouped
(48 MNIST training images of class 3, 40 test images, seed 0). Any change to the arithmetic of
training or scoring shows here as a changed bit.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fgad import Detector
from fgad.core.config import PAPER_SETTINGS
from fgad.methods import FitContext, create_method

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def data():
    d = np.load(FIXTURES / "mnist_small.npz")
    return d["x_train"], d["x_test"]


@pytest.fixture(scope="module")
def reference():
    return json.loads((FIXTURES / "reference_scores.json").read_text())


def _hex(values):
    return [float(v).hex() for v in values]


@pytest.mark.slow
def test_quick_detector_scores_are_bit_identical(data, reference):
    x_train, x_test = data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference was recorded with one thread
    try:
        det = Detector(preset="quick", steps=12, seed=0, **PAPER_SETTINGS).fit(x_train, progress=False)
        sums = det.score_tasks(x_test)
        scores = det.score(x_test)
    finally:
        torch.set_num_threads(threads)
    assert _hex(scores) == reference["ours_quick_steps12"]
    assert {k: _hex(v) for k, v in sums.items()} == reference["ours_task_sums"]


@pytest.mark.slow
def test_deepgeo_scores_are_bit_identical(data, reference):
    x_train, x_test = data
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        geo = create_method("deepgeo", preset="quick", seed=0, steps=6, dirichlet_max_images=48)
        geo.fit(x_train, FitContext(progress=False))
        scores = geo.score(x_test)
    finally:
        torch.set_num_threads(threads)
    assert _hex(scores) == reference["deepgeo_quick_steps6"]
