"""Thresholds, ``fgad calibrate`` / ``fgad score --decide`` and the scikit-learn wrapper on the
improved detector's score (z-scored components with a kNN feature component), not only on the
paper's sums."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from fgad import Detector
from fgad.cli import main
from fgad.core.config import IMPROVED
from fgad.core.scoring import FUSIONS
from fgad.errors import InputError
from fgad.integrations.sklearn_estimator import FgadOutlierDetector
from fgad.tools.decision import check_calibration_args

from decision_helpers import random_uint8

HELD_OUT = random_uint8(10, 16, 16, seed=61)  # new normal-like images, never trained on


@pytest.mark.parametrize("fusion", FUSIONS)
def test_every_fusion_is_accepted_and_others_refused(fusion):
    check_calibration_args(fusion, None, 0.05, None)
    with pytest.raises(InputError, match="fusion must be one of sum, mean, zscore, rank"):
        check_calibration_args("max", None, 0.05, None)


@pytest.mark.parametrize("fusion", ["zscore", "rank"])
def test_calibrate_and_predict_on_a_standardised_score(calibrated_detector, fusion):
    det = calibrated_detector
    before = det.decision
    try:
        d = det.calibrate(HELD_OUT, target_fpr=0.2, fusion=fusion)
        scores = det.score(HELD_OUT, fusion=fusion)
        assert d["fusion"] == fusion and d["bpcer"] <= 0.2
        assert int((scores >= d["threshold"]).sum()) == round(d["bpcer"] * len(HELD_OUT))
        np.testing.assert_array_equal(det.predict(HELD_OUT), (scores >= d["threshold"]).astype(np.int64))
    finally:
        det.decision = before


def test_a_standardised_fusion_needs_normal_statistics(small_detector):
    with pytest.raises(InputError, match="needs statistics of normal images"):
        small_detector.calibrate(HELD_OUT, fusion="zscore")
    assert small_detector.decision is None


@pytest.fixture()
def calibrated_model(calibrated_detector, tmp_path):
    return calibrated_detector.save(tmp_path / "model")


@pytest.mark.slow
def test_cli_calibrate_then_score_decide(calibrated_model, tmp_path, capsys):
    npz = tmp_path / "held.npz"
    np.savez(npz, x_test=HELD_OUT)
    assert main(["calibrate", str(calibrated_model), str(npz), "--key", "x_test", "--target-fpr", "0.2",
                 "--quiet"]) == 0
    assert json.loads((calibrated_model / "config.json").read_text())["decision"]["fusion"] == "zscore"
    capsys.readouterr()
    assert main(["score", str(calibrated_model), str(npz), "--key", "x_test", "--decide", "--quiet"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    det = Detector.load(calibrated_model)
    scores = det.score(HELD_OUT)
    assert [float(r["anomaly_score"]) for r in rows] == pytest.approx(scores.tolist(), abs=1e-6)
    assert [int(r["is_anomaly"]) for r in rows] == det.predict(HELD_OUT).tolist()
    assert [float(r["normal_percentile"]) for r in rows] == pytest.approx(det.normal_percentile(scores).tolist(),
                                                                          abs=0.01)
    assert {"normality_geometric", "normality_jigsaw", "normality_feature_knn"} <= rows[0].keys()
    # --fusion rank is a choice of fgad calibrate too (this model has the normal statistics)
    assert main(["calibrate", str(calibrated_model), str(npz), "--key", "x_test", "--fusion", "rank",
                 "--quiet"]) == 0
    assert Detector.load(calibrated_model).decision["fusion"] == "rank"


@pytest.mark.slow
def test_sklearn_wrapper_follows_the_fused_score():
    x = random_uint8(15, 16, 16, seed=62)
    est = FgadOutlierDetector(preset="tiny", device="cpu", steps=2, image_size=16, contamination=0.2,
                              config=dict(IMPROVED)).fit(x)
    det = est.detector_
    assert det.config.score_fusion == "zscore" and det.normal_stats is not None
    want = det.fuse_components(det.score_components(HELD_OUT))  # higher = more normal
    np.testing.assert_allclose(est.score_samples(HELD_OUT), want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(est.decision_function(HELD_OUT), want - est.offset_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(est.predict(HELD_OUT), np.where(want - est.offset_ < 0, -1, 1))
    assert est.offset_ == pytest.approx(np.percentile(-det.score(x), 20.0))
