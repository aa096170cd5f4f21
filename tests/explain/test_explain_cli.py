"""``fgad explain`` and ``fgad diagnose`` through ``fgad.cli.main`` (in-process)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from fgad.cli import main


@pytest.fixture(scope="module")
def model_dir(paper_det, tmp_path_factory):
    return paper_det.save(tmp_path_factory.mktemp("models") / "model")


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    np.savez(path, x_train=rng.integers(0, 256, (8, 16, 16), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 256, (6, 16, 16), dtype=np.uint8), y_test=np.arange(6) % 3)
    return path


@pytest.mark.slow
def test_explain_writes_png_beside_the_image_and_json(model_dir, grey28, tmp_path, capsys):
    img = tmp_path / "digit.png"
    Image.fromarray(np.stack([grey28[0]] * 3, -1)).save(img)  # colour file, grey model: converted
    assert main(["explain", str(model_dir), str(img), "--json", "--device", "cpu"]) == 0
    png = tmp_path / "digit.explain.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "digit.explain.json").read_text())
    assert set(record["tasks"]) == {"geometric", "jigsaw"}
    assert np.array(record["tasks"]["geometric"]["table"]).shape == (3, 3, 4)
    assert np.array(record["heatmap"]["cells"]).shape == (3, 3)
    out = capsys.readouterr().out
    assert "geometric/rotation" in out and "most anomalous cell" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.explain.json", "digit.explain.png", "digit.png"]


@pytest.mark.slow
def test_explain_out_and_npz_index(model_dir, tmp_path):
    npz = tmp_path / "imgs.npz"
    np.savez(npz, x_test=np.random.default_rng(1).integers(0, 256, (3, 28, 28), dtype=np.uint8))
    out = tmp_path / "sub" / "e.png"
    assert main(["explain", str(model_dir), str(npz), "--index", "2", "--out", str(out),
                 "--json", str(tmp_path / "e.json")]) == 0
    assert out.is_file() and (tmp_path / "e.json").is_file()
    assert main(["explain", str(model_dir), str(npz), "--index", "1"]) == 0
    assert (tmp_path / "imgs.x_test-1.explain.png").is_file()


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.png", "no such image file"),
    (lambda d: (d / "bad.png").write_bytes(b"not an image") and d / "bad.png", "not an image file"),
])
def test_explain_bad_input_is_one_line_and_status_2(model_dir, tmp_path, capsys, make, message):
    path = make(tmp_path)
    assert main(["explain", str(model_dir), str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgad: error:") and message in err[0]


@pytest.mark.slow
def test_explain_resizes_by_the_model_rule_unless_strict(model_dir, tmp_path, capsys):
    Image.new("L", (20, 20)).save(tmp_path / "big.png")
    assert main(["explain", str(model_dir), str(tmp_path / "big.png"), "--strict-size"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgad: error:") and "--strict-size" in err[0]
    assert main(["explain", str(model_dir), str(tmp_path / "big.png")]) == 0
    assert "resized 1 image(s) to 28x28" in capsys.readouterr().err


def test_explain_missing_model(tmp_path, capsys):
    assert main(["explain", str(tmp_path / "nomodel"), str(tmp_path / "x.png")]) == 2
    assert "not a saved fgad model" in capsys.readouterr().err


def test_diagnose_cli_writes_csv_and_png(npz_file, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", str(npz_file), "--normal-class", "1", "--anomalies", "2", "--tasks", "rotation",
                 "--preset", "tiny", "--steps", "2", "--eval-every", "1", "--max-eval", "1", "--device", "cpu",
                 "--set", "image_size=16", "--out", str(out), "--quiet"]) == 0
    rows = list(csv.reader(io.StringIO((out / "diagnose.csv").read_text())))
    assert rows[0] == ["task_set", "step", "epoch", "head", "split", "accuracy"]
    assert len(rows) == 1 + 3 * 2  # steps 0, 1, 2 × normal / anomaly
    assert all(0.0 <= float(r[5]) <= 1.0 for r in rows[1:])
    assert (out / "diagnose.png").read_bytes()[:4] == b"\x89PNG"
    captured = capsys.readouterr()
    assert "rotation/rotation" in captured.out
    assert "4 training, 1 held-out normal, 1 anomalous" in captured.err


@pytest.mark.parametrize("args, message", [
    (["--normal-class", "7"], "unknown class"),
    (["--normal-class", "1", "--tasks", "rotation+nope"], "unknown task"),
    (["--normal-class", "1", "--anomalies", "1"], "normal class"),
    (["--normal-class", "1", "--preset", "huge"], "unknown preset"),
])
def test_diagnose_cli_errors(npz_file, tmp_path, capsys, args, message):
    assert main(["diagnose", str(npz_file), *args, "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "d").exists()
