"""Test-time mirrors (``test_mirror``, chosen on the development suite): each component but the
pixel one is the mean over the image and its left-right mirror, and the kNN bank holds the training normals'
mirrors, where training flips the images; the paper's method and models saved before never
mirror."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import fgad
from fgad.core.config import IMPROVED, PAPER_SETTINGS, DetectorConfig, resolve_config
from fgad.core.scoring import knn_cosine_distance, l2_normalise
from fgad.errors import ConfigError
from fgad.methods import create_method, get_method


def _detector(make_images, n: int = 12, c: int | None = 3, **options) -> fgad.Detector:
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16, **options)
    return det.fit(make_images(n, 16, 16, c, seed=5), progress=False)


def test_the_default_mirrors_where_training_flips(make_images):
    assert resolve_config("quick").test_mirror == "auto"
    assert _detector(make_images).mirrors
    assert not _detector(make_images, c=None).mirrors  # a mirrored digit or glyph is another symbol
    assert not _detector(make_images, hflip="off").mirrors
    assert _detector(make_images, c=None, test_mirror="on").mirrors
    assert not create_method("ours", preset="tiny").config.test_mirror == "auto"
    assert create_method("calibrated", preset="tiny").config.test_mirror == "auto"
    assert DetectorConfig(test_mirror=True).test_mirror == "on"  # YAML's on
    with pytest.raises(ConfigError, match="test_mirror"):
        resolve_config("quick", {"test_mirror": "sometimes"})


def test_components_are_the_mean_over_the_image_and_its_numpy_mirror(make_images):
    det = _detector(make_images)
    plain = dataclasses.replace(det.config, test_mirror="off")
    off = fgad.Detector.from_config(plain)  # the same network and scoring state, no mirrors
    for key in ("tasks", "net", "input_shape", "feature_bank", "pixel_bank", "normal_stats", "dirichlet_alpha"):
        setattr(off, key, getattr(det, key))
    x = make_images(5, 16, 16, 3, seed=6)
    one, two = off.score_components(x), off.score_components(x[:, :, ::-1])
    got = det.score_components(x)
    assert list(got) == ["geometric", "jigsaw", "feature_knn", "pixel_knn"]
    for name in ("geometric", "jigsaw", "feature_knn"):
        np.testing.assert_allclose(got[name], (one[name] + two[name]) / 2, rtol=1e-6, atol=1e-9)
        assert not np.allclose(got[name], one[name])  # the mirrors change the value
    np.testing.assert_array_equal(got["pixel_knn"], one["pixel_knn"])  # the pixel component is not mirrored


def test_the_bank_holds_the_training_normals_and_their_mirrors(make_images):
    images = make_images(12, 16, 16, 3, seed=5)
    det = _detector(make_images)
    kept = np.setdiff1d(np.arange(12), det.heldout_indices)
    want = np.concatenate([det.features(images[kept]), det.features(images[kept][:, :, ::-1])])
    assert det.feature_bank.shape == (2 * len(kept), want.shape[1])
    np.testing.assert_allclose(det.feature_bank, want.astype(np.float32), rtol=1e-6, atol=1e-6)


def test_leave_one_out_leaves_out_the_image_and_its_mirror():
    rng = np.random.default_rng(0)
    bank = l2_normalise(torch.from_numpy(rng.normal(size=(6, 4))))
    queries = bank[:3] + 0.01
    exclude = torch.tensor([[0, 3], [1, 4], [-1, -1]])
    got = knn_cosine_distance(l2_normalise(queries), bank, 2, exclude).numpy()
    q, b = l2_normalise(queries).numpy(), bank.numpy()
    for i in range(3):  # per query, by hand
        dist = sorted(1 - q[i] @ b[j] for j in range(6) if j not in exclude[i].tolist())
        assert got[i] == pytest.approx(np.mean(dist[:2]), abs=1e-12)


def test_leave_one_out_statistics_with_mirrors(make_images):
    det = _detector(make_images, normal_stats="train")
    assert det.mirrors and det.feature_bank.shape[0] == 24 and det.normal_stats is not None
    # each training normal's feature component left out its own and its mirror's row: not ~0
    assert det.normal_stats.mean["feature_knn"] < -1e-6


def test_a_mirrored_model_saves_and_reloads_identically(make_images, tmp_path):
    det = _detector(make_images)
    again = fgad.Detector.load(det.save(tmp_path / "m"))
    assert again.mirrors
    x = make_images(4, 16, 16, 3, seed=7)
    np.testing.assert_array_equal(again.score(x), det.score(x))


@pytest.mark.parametrize("settings, method", [(IMPROVED, "calibrated"), (PAPER_SETTINGS, "ours")])
def test_a_model_saved_before_the_option_loads_and_scores_as_before(make_images, tmp_path, settings, method):
    det = _detector(make_images, **{**settings, "test_mirror": "off"})
    path = det.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    del meta["config"]["test_mirror"]  # as written before the option existed
    (path / "config.json").write_text(json.dumps(meta))
    again = get_method(method).loader(path)
    assert again.config.test_mirror == "off"
    x = make_images(4, 16, 16, 3, seed=8)
    np.testing.assert_array_equal(again.score(x), det.score(x))
