"""fgad calibrate, fgad score --decide, fgad export: round trips and one-line error exits."""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest

from fgad import Detector
from fgad.cli import main

from decision_helpers import random_uint8


@pytest.fixture(scope="module")
def npz(tmp_path_factory):
    """held-out normal images (x_test, label 0 = class 3) and anomalies (dark, label 1 = class 5)."""
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    normal = random_uint8(10, 16, 16, seed=31)
    dark = random_uint8(4, 16, 16, seed=32) // 5
    np.savez(path, x_test=np.concatenate([normal, dark]), y_test=np.r_[np.full(10, 3), np.full(4, 5)],
             x_dark=dark)
    return path


@pytest.fixture()
def model(small_detector, tmp_path):
    return small_detector.save(tmp_path / "model")


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgad: error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


def test_calibrate_writes_only_the_config(model, npz, capsys):
    weights = (model / "model.safetensors").read_bytes()
    log = (model / "training_log.json").read_text()
    assert main(["calibrate", str(model), str(npz), "--key", "x_test", "--label", "3", "--target-fpr", "0.1",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("threshold ") and "rule fpr, target 0.1" in out and "10.00% of 10 normal" in out
    assert (model / "model.safetensors").read_bytes() == weights
    assert (model / "training_log.json").read_text() == log
    assert sorted(p.name for p in model.iterdir()) == ["config.json", "model.safetensors", "training_log.json"]
    det = Detector.load(model)
    x = np.load(npz)["x_test"][:10]
    expected = det.calibrate(x, target_fpr=0.1)
    assert json.loads((model / "config.json").read_text())["decision"] == expected
    assert det.predict(x).sum() == 1


def test_calibrate_with_anomalies_and_a_rule(model, npz, capsys):
    assert main(["calibrate", str(model), str(npz), "--key", "x_test", "--label", "3", "--anomalous", str(npz),
                 "--anomalous-key", "x_test", "--anomalous-label", "5", "--rule", "apcer", "--target", "0.25",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "rule apcer, target 0.25" in out and "of 4 anomalous" in out and "F1 " in out
    d = Detector.load(model).decision
    assert (d["rule"], d["n_normal"], d["n_anomalous"]) == ("apcer", 10, 4) and d["apcer"] <= 0.25
    assert main(["calibrate", str(model), str(npz), "--key", "x_test", "--label", "3", "--anomalous", str(npz),
                 "--anomalous-key", "x_dark", "--rule", "f1", "--quiet"]) == 0
    assert Detector.load(model).decision["rule"] == "f1"


def test_score_decide_adds_is_anomaly(model, npz, capsys):
    assert main(["calibrate", str(model), str(npz), "--key", "x_test", "--label", "3", "--target-fpr", "0.2",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["score", str(model), str(npz), "--key", "x_test", "--decide", "--quiet"]) == 0
    captured = capsys.readouterr()
    rows = list(csv.reader(io.StringIO(captured.out)))
    assert rows[0] == ["id", "anomaly_score", "normality_geometric", "normality_jigsaw", "is_anomaly"]
    det = Detector.load(model)
    expected = det.predict(np.load(npz)["x_test"])
    assert [int(r[-1]) for r in rows[1:]] == expected.tolist()
    assert sum(expected[:10]) == 2  # 20% of the calibration images, as calibrated
    assert f"{expected.sum()} of 14 image(s) anomalous" in captured.err


def test_score_decide_needs_a_calibrated_model(model, npz, capsys):
    assert main(["score", str(model), str(npz), "--key", "x_test", "--decide", "--quiet"]) == 2
    one_error_line(capsys, "no decision threshold", "fgad calibrate")


def test_score_decide_refuses_another_fusion(model, npz, capsys):
    assert main(["calibrate", str(model), str(npz), "--key", "x_test", "--label", "3", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["score", str(model), str(npz), "--key", "x_test", "--decide", "--fusion", "mean"]) == 2
    one_error_line(capsys, "calibrated with --fusion sum")


@pytest.mark.parametrize("args, needles", [
    (["--target", "0.1"], ["--target goes with --rule"]),
    (["--rule", "f1", "--target-fpr", "0.1"], ["either --target-fpr or --rule"]),
    (["--target-fpr", "1.5"], ["--target-fpr expects a number in [0, 1]"]),
    (["--target-fpr", "abc"], ["--target-fpr expects a number"]),
    (["--rule", "youden"], ["unknown --rule 'youden'"]),
    (["--rule", "f1"], ["needs anomalous images"]),
    (["--key", "nope"], ["no array 'nope'"]),
])
def test_calibrate_errors_are_one_line(model, npz, capsys, args, needles):
    config = (model / "config.json").read_text()
    assert main(["calibrate", str(model), str(npz), "--quiet", *args]) == 2
    one_error_line(capsys, *needles)
    assert (model / "config.json").read_text() == config  # untouched


def test_calibrate_not_a_model(tmp_path, npz, capsys):
    assert main(["calibrate", str(tmp_path), str(npz)]) == 2
    one_error_line(capsys, "not a saved fgad model")


@pytest.mark.slow
def test_export_round_trip(model, npz, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    from fgad.tools.export import preprocess

    out = tmp_path / "m.onnx"
    assert main(["export", str(model), "--format", "onnx", "--out", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "verified with onnxruntime" in text and "views built inside the graph" in text
    side = json.loads((tmp_path / "m.onnx.json").read_text())
    assert side["views_in_graph"] is True and side["decision"] is None
    x = np.load(npz)["x_test"]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": preprocess(x, side)})
    np.testing.assert_allclose(got[0], Detector.load(model).score(x), rtol=1e-4)


@pytest.mark.parametrize("args, needles", [
    (["--format", "tflite"], ["unknown --format 'tflite'"]),
    (["--opset", "13"], ["opset >= 17"]),
])
def test_export_errors_are_one_line(model, tmp_path, capsys, args, needles):
    assert main(["export", str(model), "--out", str(tmp_path / "m.onnx"), *args]) == 2
    one_error_line(capsys, *needles)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("module, args", [("onnx", []), ("onnxruntime", ["--verify"])])
def test_export_without_onnx_says_what_to_install(model, tmp_path, capsys, monkeypatch, module, args):
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    assert main(["export", str(model), "--out", str(tmp_path / "m.onnx"), *args]) == 2
    one_error_line(capsys, f"pip install {module} ")
    assert not (tmp_path / "m.onnx").exists()
