"""The explanation of the score the detector computes: every component (tasks and the feature
component), raw and as fused, the fused score, and the normal percentile beside the raw score;
``fgad explain`` and ``fgad diagnose`` on a model with the improved detector's settings."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.figure import Figure

from fgad.cli import main
from fgad.core.config import IMPROVED
from fgad.errors import InputError
from fgad.tools.diagnose import diagnose
from fgad.tools.explain import (
    PERCENTILE_RULE,
    breakdown,
    explain_image,
    format_breakdown,
    percentile_text,
    render_explanation,
)


def random_uint8(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


NEW = random_uint8(4, 16, 16, seed=21)


def test_components_are_the_detectors(calibrated_det):
    det = calibrated_det
    parts = breakdown(det, NEW)
    comps, scores = det.score_components(NEW), det.score(NEW)
    pct = det.normal_percentile(scores)
    stats = det.normal_stats
    for i, b in enumerate(parts):
        assert list(b["components"]) == ["geometric", "jigsaw", "feature_knn", "pixel_knn"] == det.component_names
        assert (b["fusion"], b["task_score"]) == ("zscore", "logprob")
        for n, c in b["components"].items():
            assert c["raw"] == comps[n][i]
            assert c["fused"] == pytest.approx((comps[n][i] - stats.mean[n]) / stats.std[n], abs=1e-12)
        w = {n: b["weights"].get(n, 1.0) for n in b["components"]}  # the default weighs the feature component
        assert w["feature_knn"] == det.config.feature_weight
        weighted = sum(w[n] * c["fused"] for n, c in b["components"].items()) / sum(w.values())
        assert b["normality"] == pytest.approx(weighted, abs=1e-12)
        assert b["anomaly_score"] == scores[i] == -b["normality"]
        assert b["normal_percentile"] == pct[i]
    assert json.loads(json.dumps(parts, allow_nan=False)) == parts
    assert not any(b["mirrored"] for b in parts)  # grey images: no test-time mirrors


def test_a_colour_models_breakdown_is_of_its_mirrored_components():
    import fgad

    rng = np.random.default_rng(22)
    det = fgad.Detector(preset="tiny", device="cpu", steps=2, image_size=16).fit(
        rng.integers(0, 256, (10, 16, 16, 3), dtype=np.uint8), progress=False)
    x = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    parts, comps = breakdown(det, x), det.score_components(x)
    assert det.mirrors and all(b["mirrored"] for b in parts)
    for i, b in enumerate(parts):
        assert {n: c["raw"] for n, c in b["components"].items()} == {n: comps[n][i] for n in comps}
        assert b["anomaly_score"] == det.score(x)[i]


def test_another_fusion_has_no_percentile(calibrated_det):
    b = breakdown(calibrated_det, NEW[:1], fusion="rank")[0]
    assert b["normal_percentile"] is None and b["fusion"] == "rank"
    assert b["anomaly_score"] == calibrated_det.score(NEW[:1], fusion="rank")[0]
    assert all(0.0 <= c["fused"] <= 1.0 for c in b["components"].values())
    assert "no normal percentile" in format_breakdown(b)


def test_paper_model_components_are_the_task_sums(paper_det, grey28):
    b = breakdown(paper_det, grey28[:1])[0]
    sums = paper_det.score_tasks(grey28[:1])
    assert list(b["components"]) == ["geometric", "jigsaw"]
    for n, c in b["components"].items():
        assert c["raw"] == c["fused"] == sums[n][0]
        assert c["raw"] == pytest.approx(b["tasks"][n]["score"], abs=1e-4)
    assert b["normal_percentile"] is None
    mean = breakdown(paper_det, grey28[:1], fusion="mean")[0]["components"]
    assert mean["geometric"]["fused"] == pytest.approx(sums["geometric"][0] / 108)
    with pytest.raises(InputError, match="needs statistics of normal images"):
        breakdown(paper_det, grey28[:1], fusion="zscore")


@pytest.mark.slow
def test_the_picture_shows_the_percentile_beside_the_raw_score(calibrated_det, monkeypatch):
    e = explain_image(calibrated_det, NEW[0])
    text = format_breakdown(e)
    assert f"anomaly score {e['anomaly_score']:.4f}" in text and percentile_text(e) in text
    assert percentile_text(e) == f"normal percentile {e['normal_percentile']:.1f}: {PERCENTILE_RULE}"
    assert "feature_knn" in text and "z-score vs normals" in text
    titles = []
    real = Figure.suptitle
    monkeypatch.setattr(Figure, "suptitle", lambda self, t, **kw: titles.append(t) or real(self, t, **kw))
    png = render_explanation(NEW[0], e, title="x.png: anomaly score -1.000")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert titles == [f"x.png: anomaly score -1.000\nnormal percentile {e['normal_percentile']:.1f}: "
                      "share of held-out normal images that score lower"]


@pytest.mark.slow
def test_cli_explain_on_a_calibrated_model(calibrated_det, tmp_path, capsys):
    model = calibrated_det.save(tmp_path / "model")
    npz = tmp_path / "imgs.npz"
    np.savez(npz, x_test=NEW)
    assert main(["explain", str(model), str(npz), "--index", "1", "--json", str(tmp_path / "e.json"),
                 "--out", str(tmp_path / "e.png"), "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "e.json").read_text())
    assert list(record["components"]) == ["geometric", "jigsaw", "feature_knn", "pixel_knn"]
    assert record["anomaly_score"] == pytest.approx(calibrated_det.score(NEW[1:2])[0], abs=1e-9)
    assert record["normal_percentile"] == pytest.approx(calibrated_det.normal_percentile([record["anomaly_score"]])[0])
    out = capsys.readouterr().out
    assert "normal percentile" in out and "feature_knn" in out


def test_diagnose_with_the_improved_settings():
    x = random_uint8(10, 16, 16, seed=22)
    res = diagnose(x, x[:3], 255 - x[:3], tasks=["geometric+jigsaw"], preset="tiny", steps=2, eval_every=1,
                   overrides={"device": "cpu", "image_size": 16, **IMPROVED}, progress=False, keep_detectors=True)
    assert {r["step"] for r in res.rows} == {0, 1, 2}
    assert {r["head"] for r in res.rows} >= {"geometric/rotation", "jigsaw/permutation"}
    det = res.detectors["geometric+jigsaw"]
    assert det.normal_stats is not None and det.feature_bank is not None and len(det.heldout_indices) == 2
    assert "jigsaw/permutation" in res.table()
