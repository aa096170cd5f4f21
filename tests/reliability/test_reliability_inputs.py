"""Bad input gets one clear answer: mixed images, grey/colour mismatches, config files, folders
of corrupt images; and what a model records about where it came from."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fgad import Detector, InputError
from fgad.cli import main
from fgad.core.config import PAPER_SETTINGS


@pytest.fixture(scope="module")
def grey_model(tmp_path_factory):
    torch.set_num_threads(1)
    det = Detector(preset="tiny", steps=1, image_size=16, **PAPER_SETTINGS)
    det.fit(np.random.default_rng(0).integers(0, 256, (6, 12, 12), dtype=np.uint8), progress=False)
    path = tmp_path_factory.mktemp("m") / "model"
    det.save(path)
    return det, path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fgad: error: "), err
    return err[0]


def test_colour_images_for_a_grey_model_are_refused_or_conformed(grey_model):
    det, _ = grey_model
    colour = np.random.default_rng(1).integers(0, 256, (3, 20, 20, 3), dtype=np.uint8)
    with pytest.raises(InputError, match="grey images"):
        det.score(colour)
    s = det.score(colour, conform=True)
    # The documented rule: luma, then a bilinear resize to the training size.
    luma = (colour[..., 0] * 0.299 + colour[..., 1] * 0.587 + colour[..., 2] * 0.114 + 0.5).astype(np.uint8)
    resized = np.stack([np.asarray(Image.fromarray(g).resize((12, 12), Image.BILINEAR)) for g in luma])
    assert np.array_equal(s, det.score(resized))


def test_grey_images_for_a_colour_model_are_refused_or_conformed():
    torch.set_num_threads(1)
    det = Detector(preset="tiny", steps=1, image_size=16, tasks=("geometric",))
    det.fit(np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3), dtype=np.uint8), progress=False)
    grey = np.random.default_rng(2).integers(0, 256, (2, 12, 12), dtype=np.uint8)
    with pytest.raises(InputError, match="colour images"):
        det.score(grey)
    assert np.array_equal(det.score(grey, conform=True), det.score(np.repeat(grey[..., None], 3, -1)))


def test_folder_of_mixed_sizes_is_refused_naming_the_file(tmp_path, capsys):
    # Only when asked: by default images of several sizes go in by the resize rule (tests/io/test_photos.py).
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((14, 12), np.uint8)).save(folder / "b.png")
    rc = main(["train", str(folder), "--out", str(tmp_path / "m"), "--preset", "tiny", "--quiet", "--strict-size"])
    assert rc == 2 and "b.png" in _one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_folder_of_corrupt_images_skip_and_count(tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(4):
        Image.fromarray(np.full((12, 12), 40 * i, np.uint8)).save(folder / f"ok{i}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (folder / "notes.jpg").write_text("not an image at all")
    rc = main(["train", str(folder), "--out", str(tmp_path / "m"), "--preset", "tiny", "--quiet",
               "--set", "steps=1", "--set", "image_size=16"])
    assert rc == 2 and "broken.png" in _one_error_line(capsys)
    rc = main(["train", str(folder), "--out", str(tmp_path / "m"), "--preset", "tiny", "--quiet",
               "--set", "steps=1", "--set", "image_size=16", "--skip-unreadable"])
    captured = capsys.readouterr()
    assert rc == 0 and "skipped 2 unreadable file(s)" in captured.err
    # the improved detector holds 2 of the 4 out of training, for its normal statistics
    info = json.loads((tmp_path / "m" / "config.json").read_text())["info"]
    assert info["n_train"] + info["n_heldout"] == 4


@pytest.mark.parametrize("text, needle", [
    ("stepz: 3\n", "unknown config key(s): stepz"),
    ("steps: many\n", "'steps' must be an integer"),
    ("lr: .nan\n", "'lr' must be finite"),
    ("- a\n- b\n", "must hold a mapping"),
    ("steps: [1\n", "not valid YAML"),
])
def test_bad_config_file_is_one_error_line(tmp_path, capsys, text, needle):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(text)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 12, 12), np.uint8))
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "--config", str(cfg), "--quiet"])
    line = _one_error_line(capsys)
    assert rc == 2 and needle in line


@pytest.mark.parametrize("argv_tail, needle", [
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["--tasks", "geometric,colour"], "unknown task 'colour'"),
    (["--label", "7"], "no image of class 7"),
])
def test_unknown_names_are_one_error_line(tmp_path, capsys, argv_tail, needle):
    data = tmp_path / "d.npz"
    np.savez(data, x_train=np.zeros((4, 12, 12), np.uint8), y_train=np.zeros(4, np.int64))
    rc = main(["train", str(data), "--out", str(tmp_path / "m"), "--quiet", "--set", "steps=1", *argv_tail])
    assert rc == 2 and needle in _one_error_line(capsys)


def test_model_records_seed_versions_and_revision(grey_model):
    _, path = grey_model
    meta = json.loads((path / "config.json").read_text())
    assert meta["config"]["seed"] == 0
    assert {"fgad", "torch", "numpy", "python", "torch_cpu"} <= set(meta["versions"])
    assert "git_revision" in meta  # None outside a git checkout


@pytest.mark.slow
def test_deterministic_switch_is_accepted_and_recorded(tmp_path):
    torch.set_num_threads(1)
    x = np.random.default_rng(0).integers(0, 256, (4, 12, 12), dtype=np.uint8)
    try:
        a = Detector(preset="tiny", steps=2, image_size=16, deterministic=True).fit(x, progress=False)
    finally:
        torch.use_deterministic_algorithms(False)
    b = Detector(preset="tiny", steps=2, image_size=16).fit(x, progress=False)
    assert a.config.deterministic and np.array_equal(a.score(x), b.score(x))
