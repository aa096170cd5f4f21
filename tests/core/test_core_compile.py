"""``compile=True``: scoring runs a torch.compile'd network, compiled once, with the eager scores."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fgad import Detector

pytestmark = pytest.mark.slow  # torch.compile: about 30 s on two cores


def test_compiled_scoring_matches_eager_and_compiles_once():
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    test = rng.integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)  # batches of 2: the last one is padded
    det = Detector(preset="tiny", steps=2, image_size=16, score_batch_size=2, device="cpu").fit(train)
    eager = det.score_tasks(test)
    assert det.inference_network() is det.net  # eager: the network itself

    det.config = replace(det.config, compile=True)
    compiled = det.score_tasks(test)
    wrapper = det.inference_network()
    assert wrapper is not det.net
    for name in eager:
        assert compiled[name].shape == (5,)
        np.testing.assert_allclose(compiled[name], eager[name], rtol=1e-4, atol=1e-5)

    det.score_tasks(test[:3])
    assert det.inference_network() is wrapper  # the same network: no second compilation
