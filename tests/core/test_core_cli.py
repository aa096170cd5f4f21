"""The command line, in-process through ``fgad.cli.main`` and once as a real subprocess."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from fgad import Detector
from fgad.cli import main

FAST = ["--preset", "tiny", "--quiet", "--set", "steps=2", "--set", "image_size=16", "--device", "cpu"]
PAPER = ["--method", "ours"]  # the paper's score: task sums, nothing held out


@pytest.fixture(scope="module")
def npz_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("npz") / "data.npz"
    y = np.array([0, 1, 1, 0, 1, 1, 0, 1, 1, 0])
    np.savez(path, x_train=rng.integers(0, 256, (10, 16, 16), dtype=np.uint8), y_train=y)
    return path


@pytest.fixture(scope="module")
def npz_model(npz_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "model"
    assert main(["train", str(npz_file), "--out", str(out), "--label", "1", *FAST, *PAPER]) == 0
    return out


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_train_on_npz_writes_a_model_and_no_checkpoints(npz_model):
    assert sorted(p.name for p in npz_model.iterdir()) == ["config.json", "model.safetensors", "training_log.json"]
    assert not npz_model.with_name("model.checkpoints").exists()
    det = Detector.load(npz_model)
    assert det.info["n_train"] == 6  # the class-1 images only
    assert det.config.steps == 2 and det.config.image_size == 16


def test_default_train_is_the_improved_detector(npz_file, tmp_path, capsys):
    from fgad.core.config import IMPROVED

    out = tmp_path / "m"
    assert main(["train", str(npz_file), "--out", str(out), "--label", "1", *FAST]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "scoring.safetensors",
                                                     "training_log.json"]
    det = Detector.load(out)
    n, held = det.info["n_train"] + det.info["n_heldout"], det.info["n_heldout"]
    assert held > 0 and f"trained on {n - held} of {n} images ({held} held out" in capsys.readouterr().out
    assert {k: getattr(det.config, k) for k in IMPROVED} == IMPROVED
    capsys.readouterr()
    assert main(["score", str(out), str(npz_file), "--quiet"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert rows[0] == ["id", "anomaly_score", "normal_percentile", "normality_geometric", "normality_jigsaw",
                       "normality_feature_knn", "normality_pixel_knn"]
    np.testing.assert_allclose([float(r[1]) for r in rows[1:]], det.score(np.load(npz_file)["x_train"]), atol=2e-6)


def test_train_method_refuses_what_it_cannot_train_or_contradicts(npz_file, tmp_path, capsys):
    out = str(tmp_path / "m")
    assert main(["train", str(npz_file), "--out", out, *FAST, "--method", "deepgeo"]) == 2
    assert_one_error_line(capsys.readouterr().err, "--method 'deepgeo'")
    assert main(["train", str(npz_file), "--out", out, *FAST, *PAPER, "--set", "task_score=logprob"]) == 2
    assert_one_error_line(capsys.readouterr().err, "task_score")
    assert not (tmp_path / "m").exists()


def test_score_npz_to_csv(npz_model, npz_file, tmp_path, capsys):
    out = tmp_path / "scores.csv"
    assert main(["score", str(npz_model), str(npz_file), "--out", str(out), "--label", "1", "--quiet"]) == 0
    rows = read_csv(out.read_text())
    assert rows[0] == ["id", "anomaly_score", "normality_geometric", "normality_jigsaw"]
    assert len(rows) == 1 + 6
    assert [r[0] for r in rows[1:]] == ["1", "2", "4", "5", "7", "8"]  # original indices of class 1
    vals = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(vals[:, 0], -(vals[:, 1] + vals[:, 2]) / 2, atol=2e-6)
    x = np.load(npz_file)["x_train"][[1, 2, 4, 5, 7, 8]]
    np.testing.assert_allclose(vals[:, 0], Detector.load(npz_model).score(x), atol=2e-6)
    assert "scored 6 images" in capsys.readouterr().err


def test_score_all_images_to_stdout_with_mean_fusion(npz_model, npz_file, capsys):
    assert main(["score", str(npz_model), str(npz_file), "--fusion", "mean", "--quiet"]) == 0
    rows = read_csv(capsys.readouterr().out)
    assert len(rows) == 1 + 10 and rows[1][0] == "0"
    vals = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    np.testing.assert_allclose(vals[:, 0], -(vals[:, 1] / 108 + vals[:, 2] / 3) / 2, atol=2e-6)


def write_pngs(folder, n=6, size=16, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L").save(folder / f"img{i}.png")
    return folder


def test_train_and_score_png_folder(tmp_path, capsys):
    folder = write_pngs(tmp_path / "imgs")
    model = tmp_path / "m"
    assert main(["train", str(folder), "--out", str(model), *FAST, "--method", "mhrot"]) == 0
    assert "model written to" in capsys.readouterr().out
    assert Detector.load(model).input_shape == (16, 16, 1)
    assert main(["score", str(model), str(folder), "--out", str(tmp_path / "s.csv"), "--quiet"]) == 0
    rows = read_csv((tmp_path / "s.csv").read_text())
    assert rows[0] == ["id", "anomaly_score", "normality_geometric"]
    assert [r[0] for r in rows[1:]] == [f"img{i}.png" for i in range(6)]


def assert_one_error_line(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fgad: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], err


def test_missing_file_is_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.npz"
    assert main(["train", str(missing), "--out", str(tmp_path / "m"), *FAST]) == 2
    assert_one_error_line(capsys.readouterr().err, "nope.npz")
    assert sorted(os.listdir(tmp_path)) == []


def test_corrupt_png_is_exit_2_and_leaves_nothing(tmp_path, capsys):
    folder = write_pngs(tmp_path / "imgs", n=3)
    (folder / "broken.png").write_bytes(b"not an image")
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), *FAST]) == 2
    assert_one_error_line(capsys.readouterr().err, "broken.png")
    assert sorted(os.listdir(tmp_path)) == ["imgs"]  # no model, no checkpoint folder, no temporary


def test_skip_unreadable_trains_on_the_rest(tmp_path, capsys):
    folder = write_pngs(tmp_path / "imgs", n=3)
    (folder / "broken.png").write_bytes(b"not an image")
    assert main(["train", str(folder), "--out", str(tmp_path / "m"), *FAST, *PAPER, "--skip-unreadable"]) == 0
    assert "skipped 1 unreadable" in capsys.readouterr().err
    assert Detector.load(tmp_path / "m").info["n_train"] == 3


@pytest.mark.parametrize("extra,needle", [(["--set", "foo=1"], "foo"), (["--set", "steps"], "key=value"),
                                          (["--set", "depth=abc"], "depth"), (["--preset", "huge"], "huge"),
                                          (["--tasks", "geometric,nope"], "nope")])
def test_bad_config_is_exit_2(npz_file, tmp_path, capsys, extra, needle):
    assert main(["train", str(npz_file), "--out", str(tmp_path / "m"), *FAST, *extra]) == 2
    assert_one_error_line(capsys.readouterr().err, needle)
    assert not (tmp_path / "m").exists()


def test_score_errors_are_exit_2(npz_model, tmp_path, capsys):
    assert main(["score", str(tmp_path / "nomodel"), str(tmp_path), "--quiet"]) == 2
    assert_one_error_line(capsys.readouterr().err, "nomodel")
    rgb = tmp_path / "rgb.npz"
    np.savez(rgb, x_train=np.zeros((2, 20, 20, 3), np.uint8))
    assert main(["score", str(npz_model), str(rgb), "--quiet", "--strict-size"]) == 2
    assert_one_error_line(capsys.readouterr().err, "20x20", "16x16", "--strict-size")
    # Without --strict-size the model's rule converts them, and says so (tests/io/test_photos.py).
    assert main(["score", str(npz_model), str(rgb), "--quiet"]) == 0
    assert "converted 2 colour image(s) to grey, resized 2 image(s) to 16x16" in capsys.readouterr().err
    assert main(["score", str(npz_model), str(rgb), "--label", "1", "--quiet"]) == 2
    assert_one_error_line(capsys.readouterr().err, "y_train")


@pytest.mark.subprocess
def test_subprocess_exit_code_and_single_error_line(tmp_path):
    folder = write_pngs(tmp_path / "imgs", n=2)
    (folder / "corrupt.png").write_bytes(b"not an image")
    proc = subprocess.run([sys.executable, "-m", "fgad.cli", "train", str(folder), "--out", str(tmp_path / "m"),
                           "--preset", "tiny", "--quiet"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert_one_error_line(proc.stderr, "corrupt.png")
    assert proc.stdout == ""
    assert sorted(os.listdir(tmp_path)) == ["imgs"]


def test_corrupt_checkpoint_is_exit_2(npz_file, tmp_path, capsys):
    last = tmp_path / "m.checkpoints" / "last"
    last.mkdir(parents=True)
    (last / "state.json").write_text("{}")
    (last / "state.safetensors").write_bytes(b"garbage")
    assert main(["train", str(npz_file), "--out", str(tmp_path / "m"), *FAST]) == 2
    assert_one_error_line(capsys.readouterr().err, "state.safetensors")
