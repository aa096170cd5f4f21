"""``fgad benchmark`` with no dataset: the embedded comparison runs the improved detector first,
beside the paper's method, MHRot and the floor, on the glyphs all 16 matplotlib faces share
(at least 300 train and 100 normal test glyphs per face), with the test split capped."""

from __future__ import annotations

import json

import pytest

from fgad.cli import main
from fgad.cli.benchmark import DEFAULT_DATA_OPTIONS, DEFAULT_MAX_TEST, DEFAULT_METHODS


def test_embedded_defaults_are_the_issue_s():
    assert DEFAULT_METHODS.split(",") == ["calibrated", "ours", "mhrot", "mean-distance"]
    assert DEFAULT_DATA_OPTIONS == {"charset": "european", "test_fraction": 0.25}
    assert DEFAULT_MAX_TEST >= 500


@pytest.mark.slow
def test_embedded_benchmark_runs_every_default_method(tmp_path, capsys):
    out = tmp_path / "runs"
    # The tiny preset and a small test cap keep it short; everything else is the embedded default.
    assert main(["benchmark", "--out", str(out), "--preset", "tiny", "--classes", "0", "--workers", "1",
                 "--max-test", "120", "--quiet", "--no-report"]) == 0
    records = {p.parent.name: json.loads(p.read_text()) for p in (out / "records").rglob("*.json")}
    assert sorted(records) == sorted(DEFAULT_METHODS.split(","))
    for rec in records.values():
        assert rec["data"]["ref"]["options"] == DEFAULT_DATA_OPTIONS and rec["data"]["ref"]["max_test"] == 120
        assert rec["data"]["n_train"] == 401  # 535 shared glyphs, a quarter of them test glyphs
        labels = rec["labels"]
        assert len(labels) == 134 + 60 and labels.count(0) == 134  # every normal test glyph, half-cap anomalies
    assert records["calibrated"]["config"]["feature_knn"] >= 1 and records["ours"]["config"]["task_score"] == "prob"
    assert "job(s) in the sweep" in capsys.readouterr().err
