"""The pixel component (``pixel_knn``, chosen on the development suite with the test-time mirrors):
minus the cosine distance of the network's input pixels to the nearest training normals', checked
image by image against NumPy; never mirrored; saved with the model; absent from the paper's
methods and from models saved before it existed."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fgad
from fgad.core.config import IMPROVED, PAPER_SETTINGS, resolve_config
from fgad.errors import ConfigError, ModelFileError
from fgad.methods import create_method, get_method


def _detector(make_images, c: int | None = 3, **options) -> fgad.Detector:
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16, **options)
    return det.fit(make_images(12, 16, 16, c, seed=5), progress=False)


def numpy_pixel_distance(train: np.ndarray, image: np.ndarray, k: int = 1) -> float:
    """By hand: pixels in [-1, 1], flattened; mean of the k smallest cosine distances."""
    q = image.ravel() / 127.5 - 1.0
    dist = sorted(1 - q @ (b := t.ravel() / 127.5 - 1.0) / (np.linalg.norm(q) * np.linalg.norm(b)) for t in train)
    return float(np.mean(dist[:k]))


@pytest.mark.parametrize("c", [None, 3])
def test_the_pixel_component_matches_a_per_image_numpy_reference(make_images, c):
    images = make_images(12, 16, 16, c, seed=5)
    det = _detector(make_images, c=c)
    assert det.component_names[-1] == "pixel_knn" and det.mirrors == (c == 3)
    train = images[np.setdiff1d(np.arange(12), det.heldout_indices)]
    x = make_images(4, 16, 16, c, seed=6)
    got = det.score_components(x)["pixel_knn"]  # not mirrored, also where the others are
    for value, image in zip(got, x):
        assert -value == pytest.approx(numpy_pixel_distance(train, image), abs=1e-6)  # a float32 bank


def test_smaller_images_are_compared_as_the_network_sees_them(make_images):
    """Padded to ``image_size`` with -1, as the network's input."""
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16).fit(
        make_images(12, 12, 12, seed=7), progress=False)
    assert det.pixel_bank.shape[1] == 16 * 16
    x = make_images(3, 12, 12, seed=8)
    padded = np.pad(x, ((0, 0), (2, 2), (2, 2)), constant_values=0)  # 0 → -1 after scaling
    train = np.pad(make_images(12, 12, 12, seed=7), ((0, 0), (2, 2), (2, 2)), constant_values=0)
    train = train[np.setdiff1d(np.arange(12), det.heldout_indices)]
    for value, image in zip(det.score_components(x)["pixel_knn"], padded):
        assert -value == pytest.approx(numpy_pixel_distance(train, image), abs=1e-6)  # a float32 bank


def test_leave_one_out_statistics_leave_out_the_images_own_pixels(make_images):
    det = _detector(make_images, normal_stats="train")
    assert det.normal_stats.mean["pixel_knn"] < -1e-3  # its own row would give distance 0


def test_the_pixel_bank_is_saved_and_checked(make_images, tmp_path):
    det = _detector(make_images)
    path = det.save(tmp_path / "m")
    x = make_images(4, 16, 16, 3, seed=9)
    np.testing.assert_array_equal(fgad.Detector.load(path).score(x), det.score(x))
    from safetensors.numpy import load_file, save_file

    scoring = load_file(path / "scoring.safetensors")
    scoring["pixel_bank"] = scoring["pixel_bank"][:, :10].copy()
    save_file(scoring, path / "scoring.safetensors")
    with pytest.raises(ModelFileError, match="pixel bank"):
        fgad.Detector.load(path)


def test_the_defaults_and_the_papers_methods():
    assert resolve_config("quick").pixel_knn == 1
    assert create_method("ours", preset="tiny").config.pixel_knn == 0
    assert create_method("calibrated", preset="tiny").config.pixel_knn == 1
    with pytest.raises(ConfigError, match="pixel_knn"):
        resolve_config("quick", {"score_fusion": "sum", "feature_knn": 0})


@pytest.mark.parametrize("settings, method", [(IMPROVED, "calibrated"), (PAPER_SETTINGS, "ours")])
def test_a_model_saved_before_the_option_loads_and_scores_as_before(make_images, tmp_path, settings, method):
    det = _detector(make_images, c=None, **{**settings, "pixel_knn": 0})
    path = det.save(tmp_path / "m")
    meta = json.loads((path / "config.json").read_text())
    del meta["config"]["pixel_knn"]  # as written before the option existed
    (path / "config.json").write_text(json.dumps(meta))
    again = get_method(method).loader(path)
    assert again.config.pixel_knn == 0 and "pixel_knn" not in again.detector.component_names
    x = make_images(4, 16, 16, seed=8)
    np.testing.assert_array_equal(again.score(x), det.score(x))
