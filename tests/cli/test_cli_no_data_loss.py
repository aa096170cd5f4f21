"""Nothing the user owns is deleted or overwritten by surprise.

Every command that writes a folder or a file refuses a path that holds something it did not
write (one ``fgad: error:`` line, status 2, the user's file untouched), with or without
``--overwrite``; an earlier output of its own kind is replaced only with ``--overwrite`` (or
resumed, for ``fgad benchmark``). Checkpoint clean-up removes only fgad's files.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fgad import Detector
from fgad.cli import main
from fgad.io.fileio import CHECKPOINT_MARKER, OutputError, atomic_directory, checkpoint_folder, remove_checkpoints

torch.set_num_threads(1)
FAST = ["--preset", "tiny", "--quiet", "--set", "steps=2", "--set", "image_size=16", "--device", "cpu"]
NOTE = "my own notes\n"


def user_folder(path):
    path.mkdir(parents=True, exist_ok=True)
    (path / "notes.txt").write_text(NOTE)
    return path


def one_error_line(capsys, *needles):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgad: error: "), err
    for n in needles:
        assert n in err[0], err[0]
    return err[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (8, 16, 16), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 256, (6, 16, 16), dtype=np.uint8), y_test=np.arange(6) % 3)
    return path


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["train", str(data), "--out", str(out), *FAST]) == 0
    return out


# ------------------------------------------------------------------------------ library
def test_atomic_directory_keeps_a_folder_with_foreign_files(tmp_path):
    target = user_folder(tmp_path / "project")
    with pytest.raises(OutputError, match="notes.txt"), atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("{}")
    assert (target / "notes.txt").read_text() == NOTE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no temporary left


def test_atomic_directory_replaces_an_earlier_version_of_itself(tmp_path):
    for version in ("1", "2"):
        with atomic_directory(tmp_path / "m") as tmp:
            (tmp / "config.json").write_text(version)
    assert (tmp_path / "m" / "config.json").read_text() == "2"


def test_detector_save_refuses_a_user_folder_and_replaces_its_own(model, tmp_path):
    det = Detector.load(model)
    target = user_folder(tmp_path / "project")
    with pytest.raises(OutputError, match="notes.txt"):
        det.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["notes.txt"]
    det.save(tmp_path / "again")
    det.save(tmp_path / "again")  # an earlier save is replaced
    assert Detector.load(tmp_path / "again").input_shape == det.input_shape


def _fake_checkpoint(folder):
    (folder / "last").mkdir(parents=True)
    (folder / "last" / "state.json").write_text("{}")
    (folder / "last" / "state.safetensors").write_bytes(b"x")


def test_remove_checkpoints_keeps_a_folder_the_user_named(tmp_path):
    ck = user_folder(tmp_path / "ck")
    _fake_checkpoint(ck)
    (ck / ".last.abc.tmp").mkdir()  # an interrupted checkpoint write
    remove_checkpoints(ck)
    assert sorted(p.name for p in ck.iterdir()) == ["notes.txt"]


def test_remove_checkpoints_keeps_an_empty_folder_fgad_did_not_create(tmp_path):
    ck = tmp_path / "ck"
    _fake_checkpoint(ck)
    remove_checkpoints(ck)
    assert ck.is_dir() and list(ck.iterdir()) == []


def test_remove_checkpoints_removes_the_folder_fgad_created(tmp_path):
    ck = checkpoint_folder(tmp_path / "a" / "ck")
    assert (ck / CHECKPOINT_MARKER).is_file()
    _fake_checkpoint(ck)
    remove_checkpoints(ck)
    assert not ck.exists() and (tmp_path / "a").is_dir()


def test_remove_checkpoints_keeps_user_files_in_a_folder_fgad_created(tmp_path):
    ck = checkpoint_folder(tmp_path / "ck")
    _fake_checkpoint(ck)
    (ck / "notes.txt").write_text(NOTE)
    remove_checkpoints(ck)
    assert (ck / "notes.txt").read_text() == NOTE and not (ck / "last").exists()


def test_checkpoint_folder_leaves_an_existing_folder_as_it_is(tmp_path):
    ck = user_folder(tmp_path / "ck")
    assert checkpoint_folder(ck) == ck
    assert sorted(p.name for p in ck.iterdir()) == ["notes.txt"]
    assert checkpoint_folder(None) is None


# ------------------------------------------------------------------------------ train
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_train_refuses_a_user_folder(data, tmp_path, capsys, overwrite):
    out = user_folder(tmp_path / "myproject")
    assert main(["train", str(data), "--out", str(out), *FAST, *overwrite]) == 2
    one_error_line(capsys, "myproject", "not an fgad model")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myproject"]  # no checkpoint folder either


def test_train_replaces_its_own_model_only_with_overwrite(data, model, tmp_path, capsys):
    out = tmp_path / "m"
    Detector.load(model).save(out)
    before = (out / "config.json").read_text()
    assert main(["train", str(data), "--out", str(out), *FAST]) == 2
    one_error_line(capsys, "--overwrite")
    assert (out / "config.json").read_text() == before
    assert main(["train", str(data), "--out", str(out), *FAST, "--overwrite", "--seed", "5"]) == 0
    assert Detector.load(out).config.seed == 5


def test_train_refuses_a_model_folder_holding_a_user_file(data, model, tmp_path, capsys):
    out = tmp_path / "m"
    Detector.load(model).save(out)
    (out / "notes.txt").write_text(NOTE)
    assert main(["train", str(data), "--out", str(out), *FAST, "--overwrite"]) == 2
    one_error_line(capsys, "notes.txt")
    assert (out / "notes.txt").read_text() == NOTE


def test_train_into_an_empty_folder(data, tmp_path):
    (tmp_path / "m").mkdir()
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *FAST]) == 0
    assert Detector.load(tmp_path / "m").is_fitted


def test_train_keeps_the_users_checkpoint_folder(data, tmp_path):
    ck = user_folder(tmp_path / "ck")
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *FAST, "--set", "checkpoint_every=1",
                 "--checkpoint-dir", str(ck)]) == 0
    assert sorted(p.name for p in ck.iterdir()) == ["notes.txt"]


def test_train_removes_the_checkpoint_folder_it_created(data, tmp_path):
    ck = tmp_path / "ck"
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *FAST, "--set", "checkpoint_every=1",
                 "--checkpoint-dir", str(ck)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_torchrun_entry_refuses_a_user_folder_before_starting(data, tmp_path, monkeypatch, capsys):
    from fgad.cli.distributed import main as torchrun_main

    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = user_folder(tmp_path / "myproject")
    assert torchrun_main([str(data), "--out", str(out), "--preset", "tiny", "--quiet"]) == 2
    assert "not an fgad model" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ------------------------------------------------------------------------------ benchmark, report
def test_benchmark_refuses_a_user_folder(data, tmp_path, capsys):
    out = user_folder(tmp_path / "myproject")
    assert main(["benchmark", "--dataset", "npz", "--data-root", str(data), "--method", "mean-distance",
                 "--classes", "0", "--out", str(out), "--quiet"]) == 2
    one_error_line(capsys, "not a benchmark results folder")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_benchmark_resumes_its_own_folder_and_report_refuses_a_user_folder(data, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = ["benchmark", "--dataset", "npz", "--data-root", str(data), "--method", "mean-distance",
            "--classes", "0", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert main(argv) == 0  # resumed: nothing to redo
    assert "1 already done" in capsys.readouterr().err
    rep = user_folder(tmp_path / "tables")
    assert main(["report", str(out), "--out", str(rep)]) == 2
    one_error_line(capsys, "not an fgad report")
    assert sorted(p.name for p in rep.iterdir()) == ["notes.txt"]
    assert main(["report", str(out)]) == 0  # its own report folder is rebuilt


# ------------------------------------------------------------------------------ diagnose
DIAG = ["--normal-class", "1", "--anomalies", "2", "--tasks", "rotation", "--preset", "tiny", "--steps", "1",
        "--max-eval", "1", "--device", "cpu", "--set", "image_size=16", "--quiet"]


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_diagnose_refuses_a_user_folder(data, tmp_path, capsys, overwrite):
    out = user_folder(tmp_path / "myproject")
    assert main(["diagnose", str(data), *DIAG, "--out", str(out), *overwrite]) == 2
    one_error_line(capsys, "not an fgad diagnosis")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_diagnose_replaces_its_own_output_only_with_overwrite(data, tmp_path, capsys):
    out = tmp_path / "diag"
    assert main(["diagnose", str(data), *DIAG, "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["diagnose", str(data), *DIAG, "--out", str(out)]) == 2
    one_error_line(capsys, "--overwrite")
    assert main(["diagnose", str(data), *DIAG, "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["diagnose.csv", "diagnose.png"]


# ------------------------------------------------------------------------------ explain
@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_explain_refuses_a_user_file(model, data, tmp_path, capsys, overwrite):
    mine = tmp_path / "notes.txt"
    mine.write_text(NOTE)
    assert main(["explain", str(model), str(data), "--out", str(mine), "--device", "cpu", *overwrite]) == 2
    one_error_line(capsys, "not a PNG")
    assert main(["explain", str(model), str(data), "--out", str(tmp_path / "e.png"), "--json", str(mine),
                 "--device", "cpu", *overwrite]) == 2
    one_error_line(capsys, "not an fgad explanation")
    assert mine.read_text() == NOTE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
def test_explain_replaces_its_own_output_only_with_overwrite(model, data, tmp_path, capsys):
    npz = tmp_path / "imgs.npz"
    np.savez(npz, x_test=np.load(data)["x_test"])
    argv = ["explain", str(model), str(npz), "--json", "--device", "cpu"]
    assert main(argv) == 0
    png = tmp_path / "imgs.x_test-0.explain.png"
    first = png.read_bytes()
    capsys.readouterr()
    assert main(argv) == 2
    one_error_line(capsys, "--overwrite")
    assert main([*argv, "--overwrite"]) == 0
    assert png.read_bytes()[:8] == first[:8]
    assert json.loads((tmp_path / "imgs.x_test-0.explain.json").read_text())["model"] == str(model)


# ------------------------------------------------------------------------------ export
@pytest.mark.slow
def test_export_refuses_a_user_file_and_replaces_its_own_only_with_overwrite(model, tmp_path, capsys):
    pytest.importorskip("onnx")
    mine = tmp_path / "model.onnx"
    mine.write_bytes(b"my own graph")
    for extra in ([], ["--overwrite"]):
        assert main(["export", str(model), "--out", str(mine), *extra]) == 2
        one_error_line(capsys, "not an ONNX export of fgad")
    assert mine.read_bytes() == b"my own graph"
    out = tmp_path / "fgad.onnx"
    assert main(["export", str(model), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(model), "--out", str(out)]) == 2
    one_error_line(capsys, "--overwrite")
    assert main(["export", str(model), "--out", str(out), "--overwrite"]) == 0
    assert json.loads((tmp_path / "fgad.onnx.json").read_text())["format"] == "fgad-onnx"


# ------------------------------------------------------------------------------ calibrate
def test_calibrate_rewrites_only_the_config_and_keeps_user_files(model, data, tmp_path):
    folder = tmp_path / "m"
    Detector.load(model).save(folder)
    (folder / "notes.txt").write_text(NOTE)
    weights = (folder / "model.safetensors").read_bytes()
    assert main(["calibrate", str(folder), str(data), "--key", "x_test", "--quiet"]) == 0
    assert (folder / "notes.txt").read_text() == NOTE
    assert (folder / "model.safetensors").read_bytes() == weights
    assert Detector.load(folder).decision is not None


def test_calibrate_refuses_a_user_folder(data, tmp_path, capsys):
    out = user_folder(tmp_path / "myproject")
    assert main(["calibrate", str(out), str(data)]) == 2
    one_error_line(capsys, "not a saved fgad model")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
