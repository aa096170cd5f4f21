"""Detector.calibrate / predict, and the decision saved with the model."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from fgad import Detector
from fgad.errors import InputError, ModelFileError
from fgad.tools.decision import DECISION_KEYS, threshold_at_fpr, threshold_from_labels

from decision_helpers import random_uint8


@pytest.fixture()
def det(small_detector):
    return copy.deepcopy(small_detector)  # calibrate() mutates: keep the session fixture clean


@pytest.fixture(scope="module")
def held_out():
    return random_uint8(20, 16, 16, seed=21)


def test_predict_needs_a_threshold(det, held_out):
    with pytest.raises(InputError, match="calibrate"):
        det.predict(held_out)


@pytest.mark.slow
def test_calibrate_on_normal_images_then_predict(det, held_out):
    d = det.calibrate(held_out, target_fpr=0.1)
    assert d is det.decision
    assert list(d) == [*DECISION_KEYS, "fusion"]
    scores = det.score(held_out)
    assert {k: v for k, v in d.items() if k != "fusion"} == threshold_at_fpr(scores, 0.1)
    assert (d["rule"], d["target"], d["n_normal"], d["bpcer"], d["fusion"]) == ("fpr", 0.1, 20, 0.1, "sum")
    pred = det.predict(held_out)
    assert pred.dtype == np.int64 and pred.shape == (20,)
    assert pred.tolist() == (scores >= d["threshold"]).astype(int).tolist()
    assert pred.sum() == 2  # the achieved rate reproduces on the same images: 2 of 20 = 10%
    json.dumps(d, allow_nan=False)


@pytest.mark.slow
def test_calibrate_with_labels_uses_the_rule(det, held_out):
    anomalous = random_uint8(6, 16, 16, seed=22) // 4  # dark images: another distribution
    labels = np.r_[np.zeros(10), np.ones(6)].astype(int)
    both = np.concatenate([held_out[:10], anomalous])
    scores = det.score(both)
    for rule, target in [("f1", None), ("apcer", 0.2), ("bpcer", 0.1)]:
        d = det.calibrate(images=both, labels=labels, rule=rule, target=target)
        expected = threshold_from_labels(scores, labels, rule, target)
        assert d["threshold"] == pytest.approx(expected["threshold"], rel=1e-12)
        assert d["rule"] == rule and d["n_anomalous"] == 6
    # normal images given separately are added with label 0; no rule = bpcer at target_fpr
    d = det.calibrate(held_out[:10], images=anomalous, labels=np.ones(6), target_fpr=0.1)
    assert (d["rule"], d["target"], d["n_normal"], d["n_anomalous"]) == ("bpcer", 0.1, 10, 6)
    assert d["threshold"] == pytest.approx(threshold_from_labels(scores, labels, "bpcer", 0.1)["threshold"])


def test_calibrate_errors(det, held_out):
    with pytest.raises(InputError, match="needs anomalous images"):
        det.calibrate(held_out, rule="f1")
    with pytest.raises(InputError, match="need labels"):
        det.calibrate(images=held_out)
    with pytest.raises(InputError, match="held-out normal images"):
        det.calibrate()
    with pytest.raises(InputError, match="unknown threshold rule"):
        det.calibrate(held_out, rule="youden")
    with pytest.raises(InputError, match=r"20 images but 3 labels"):
        det.calibrate(images=held_out, labels=[0, 1, 0])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        det.calibrate(held_out, target_fpr=5)
    assert det.decision is None
    with pytest.raises(InputError, match="not fitted"):
        Detector(preset="tiny").calibrate(held_out)


@pytest.mark.slow
def test_mean_fusion_is_stored_and_used(det, held_out):
    d = det.calibrate(held_out, target_fpr=0.2, fusion="mean")
    assert d["fusion"] == "mean"
    scores = det.score(held_out, fusion="mean")
    assert det.predict(held_out).tolist() == (scores >= d["threshold"]).astype(int).tolist()


@pytest.mark.slow
def test_decision_saved_and_loaded_identical(det, held_out, tmp_path):
    det.calibrate(held_out, target_fpr=0.15)
    det.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["decision"] == det.decision
    back = Detector.load(tmp_path / "m")
    assert back.decision == det.decision
    x = random_uint8(12, 16, 16, seed=23)
    assert np.array_equal(back.predict(x), det.predict(x))
    assert np.array_equal(back.predict(held_out), det.predict(held_out))


def test_uncalibrated_model_saves_no_decision(det, tmp_path):
    det.save(tmp_path / "m")
    assert "decision" not in json.loads((tmp_path / "m" / "config.json").read_text())
    assert Detector.load(tmp_path / "m").decision is None


@pytest.mark.parametrize(
    "bad", [{"threshold": "high"}, {"threshold": None}, [1, 2], {"threshold": 1.0, "fusion": "max"}]
)
def test_load_rejects_a_bad_decision(det, tmp_path, bad):
    det.save(tmp_path / "m")
    cfg = tmp_path / "m" / "config.json"
    meta = json.loads(cfg.read_text())
    meta["decision"] = bad
    cfg.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="invalid model config"):
        Detector.load(tmp_path / "m")


def test_refitting_drops_the_threshold(held_out):
    det = Detector(preset="tiny", device="cpu", steps=1, tasks=("rotation",), image_size=16)
    x = random_uint8(4, 16, 16, seed=24)
    det.fit(x, progress=False).calibrate(x, target_fpr=0.5)
    assert det.decision is not None
    det.fit(x, progress=False)
    assert det.decision is None
