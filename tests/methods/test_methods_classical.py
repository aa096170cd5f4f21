"""OC-SVM and Isolation Forest: NumPy scoring of the saved arrays equals scikit-learn's."""

from __future__ import annotations

import numpy as np
import pytest

import fgad
from fgad.errors import ConfigError, ModelFileError
from fgad.methods.classical import OCSVM, IForest, average_path_length


@pytest.fixture(scope="module")
def pixels():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (1, 8, 8), dtype=np.uint8)
    train = np.clip(base + rng.normal(0, 25, (60, 8, 8)), 0, 255).astype(np.uint8)
    test = rng.integers(0, 256, (40, 8, 8), dtype=np.uint8)
    return train, np.concatenate([train[:10], test])


@pytest.mark.slow
def test_ocsvm_numpy_equals_sklearn(pixels, tmp_path):
    train, test = pixels
    det = OCSVM("quick", 0).fit(train)
    feats = test.reshape(len(test), -1) / 255.0
    want = det.sklearn_model.decision_function(feats)
    np.testing.assert_allclose(det.decision_function(feats), want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(det.score(test), -want, rtol=1e-10, atol=1e-12)
    assert det.sklearn_model.nu == 0.1 and det.sklearn_model.gamma == "scale"
    det.save(tmp_path / "m")
    np.testing.assert_allclose(OCSVM.load(tmp_path / "m").score(test), -want, rtol=1e-10, atol=1e-12)
    assert OCSVM("quick", 0, gamma=0.5).config.gamma == "0.5"


@pytest.mark.slow
def test_iforest_numpy_equals_sklearn(pixels, tmp_path):
    train, test = pixels
    det = IForest("quick", 7).fit(train)
    feats = test.reshape(len(test), -1) / 255.0
    want = -det.sklearn_model.score_samples(feats)
    assert det.sklearn_model.n_estimators == 100 and det.sklearn_model.random_state == 7
    np.testing.assert_allclose(det.score(test), want, rtol=0, atol=1e-9)
    det.save(tmp_path / "m")
    np.testing.assert_allclose(IForest.load(tmp_path / "m").score(test), want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(average_path_length(np.array([0, 1, 2, 256])),
                               [0, 0, 1, 2 * (np.log(255) + np.euler_gamma) - 2 * 255 / 256])
    sub = IForest("quick", 1, max_samples=20).fit(train)  # max_samples < N
    np.testing.assert_allclose(sub.score(test), -sub.sklearn_model.score_samples(feats), rtol=0, atol=1e-9)


@pytest.mark.slow
def test_backbone_features(tmp_path, image_sets):
    x = image_sets["grey"]
    backbone = fgad.Detector(preset="tiny", device="cpu", tasks=("rotation",), steps=1).fit(x, progress=False)
    backbone.save(tmp_path / "wrn")
    det = IForest("tiny", 0, features=f"wrn:{tmp_path / 'wrn'}").fit(x)
    assert det.info["n_features"] == 64  # WRN-10-1 penultimate features
    scores = det.score(x)
    det.save(tmp_path / "forest")
    np.testing.assert_allclose(IForest.load(tmp_path / "forest").score(x), scores, rtol=0, atol=1e-12)
    with pytest.raises(ModelFileError, match="features"):
        OCSVM("tiny", 0, features=f"wrn:{tmp_path / 'missing'}").fit(x)


def test_option_errors():
    with pytest.raises(ConfigError, match="unknown option"):
        OCSVM("quick", 0, n_estimators=10)
    with pytest.raises(ConfigError, match="features"):
        IForest("quick", 0, features="vgg")
    with pytest.raises(ConfigError, match="nu"):
        OCSVM("quick", 0, nu=0.0)
