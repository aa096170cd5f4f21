"""Output that cannot be written: a full disk, a path that cannot be a folder. Nothing
half-written is left behind, and the user gets one line."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import torch

from fgad import Detector
from fgad.cli import main
from fgad.io.fileio import OutputError, atomic_directory, atomic_write_bytes, atomic_write_json


def _disk_full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_while_writing_a_file_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out" / "scores.csv"
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OutputError, match="No space left"):
        atomic_write_bytes(target, b"x" * 1000)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_disk_full_keeps_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "record.json"
    atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OutputError):
        atomic_write_json(target, {"v": 2})
    assert target.read_text().strip().replace(" ", "").replace("\n", "") == '{"v":1}'


@pytest.mark.slow
def test_disk_full_while_saving_a_model_leaves_no_folder(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    det = Detector(preset="tiny", steps=1, image_size=16)
    det.fit(np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8), progress=False)
    monkeypatch.setattr(os, "fsync", _disk_full)
    with pytest.raises(OutputError, match="No space left"):
        det.save(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_error_inside_removes_the_temporary_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_directory(tmp_path / "m") as tmp:
            (tmp / "a").write_text("half")
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []


def test_output_under_a_file_is_one_error_line(tmp_path, capsys):
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    rc = main(["train", str(data), "--out", str(blocker / "model"), "--preset", "tiny", "--quiet",
               "--set", "steps=1", "--set", "image_size=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("fgad: error: ") and "not-a-folder" in err[0]


def test_score_csv_into_an_unwritable_place_is_one_error_line(tmp_path, capsys):
    torch.set_num_threads(1)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8))
    assert main(["train", str(data), "--out", str(tmp_path / "m"), "--preset", "tiny", "--quiet",
                 "--set", "steps=1", "--set", "image_size=16"]) == 0
    capsys.readouterr()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["score", str(tmp_path / "m"), str(data), "--out", str(blocker / "s.csv"), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("fgad: error: cannot write")
