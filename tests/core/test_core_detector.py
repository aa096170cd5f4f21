"""The public ``Detector``: fit, score, save/load, tampered files, input and config errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import fgad
from fgad import ConfigError, Detector, InputError, ModelFileError
from fgad.core.config import PAPER_SETTINGS

TINY = dict(preset="tiny", device="cpu", **PAPER_SETTINGS)


def test_fit_and_score_shapes(grey_detector, grey_images):
    scores = grey_detector.score(grey_images)
    assert isinstance(scores, np.ndarray) and scores.shape == (16,) and scores.dtype == np.float64
    assert np.isfinite(scores).all()
    sums = grey_detector.score_tasks(grey_images[:3])
    assert set(sums) == {"geometric", "jigsaw"}
    # Normality sums lie in [0, views × heads]: 108 for geometric, 3 for jigsaw.
    assert ((sums["geometric"] > 0) & (sums["geometric"] < 108)).all()
    assert ((sums["jigsaw"] > 0) & (sums["jigsaw"] < 3)).all()
    np.testing.assert_allclose(scores[:3], -(sums["geometric"] + sums["jigsaw"]) / 2, rtol=1e-12)
    assert grey_detector.task_terms == {"geometric": 108, "jigsaw": 3}
    assert grey_detector.input_shape == (28, 28, 1)


@pytest.mark.slow
def test_scores_do_not_depend_on_batching(grey_detector, grey_images, monkeypatch):
    full = grey_detector.score(grey_images)
    monkeypatch.setattr(grey_detector.config, "score_batch_size", 3)
    np.testing.assert_allclose(grey_detector.score(grey_images), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grey_detector.score(grey_images[5:6]), full[5:6], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_save_load_roundtrip_is_bit_identical(grey_detector, grey_images, tmp_path):
    path = grey_detector.save(tmp_path / "model")
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors", "training_log.json"]
    meta = json.loads((path / "config.json").read_text())
    assert meta["config"]["depth"] == 10 and meta["input_shape"] == [28, 28, 1]
    assert isinstance(json.loads((path / "training_log.json").read_text()), list)
    loaded = Detector.load(path)
    assert np.array_equal(loaded.score(grey_images), grey_detector.score(grey_images))
    sums_a, sums_b = loaded.score_tasks(grey_images), grey_detector.score_tasks(grey_images)
    for name in sums_a:
        assert np.array_equal(sums_a[name], sums_b[name])
    # Saving again over an existing folder replaces it.
    grey_detector.save(path)
    assert np.array_equal(Detector.load(path).score(grey_images[:2]), grey_detector.score(grey_images[:2]))


@pytest.fixture
def saved(grey_detector, tmp_path):
    return grey_detector.save(tmp_path / "model")


def test_truncated_weights_are_refused(saved):
    w = saved / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="model.safetensors"):
        Detector.load(saved)


def test_garbage_weights_are_refused(saved):
    (saved / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ModelFileError):
        Detector.load(saved)


def test_reshaped_tensor_is_refused(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    key = "heads.jigsaw.1.weight"
    assert tensors[key].shape[0] == 3
    tensors[key] = torch.zeros(4, tensors[key].shape[1])
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(ModelFileError, match="heads.jigsaw.1.weight"):
        Detector.load(saved)


def test_missing_or_extra_tensor_is_refused(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    tensors.pop("heads.geometric.1.bias")
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(ModelFileError, match="missing"):
        Detector.load(saved)


def test_wrong_dtype_tensor_is_refused(saved):
    tensors = load_file(str(saved / "model.safetensors"))
    tensors["heads.geometric.1.bias"] = tensors["heads.geometric.1.bias"].double()
    save_file(tensors, str(saved / "model.safetensors"))
    with pytest.raises(ModelFileError):
        Detector.load(saved)


@pytest.mark.parametrize("depth", [16, 11, "ten"])
def test_edited_config_depth_is_refused(saved, depth):
    meta = json.loads((saved / "config.json").read_text())
    meta["config"]["depth"] = depth
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="config.json|model.safetensors"):
        Detector.load(saved)


@pytest.mark.parametrize("edit", ["not json", "list", "format", "input_shape", "no_tasks", "unknown_key"])
def test_broken_config_is_refused(saved, edit):
    cfg = saved / "config.json"
    meta = json.loads(cfg.read_text())
    if edit == "not json":
        cfg.write_text("{ truncated")
    else:
        if edit == "list":
            meta = [meta]
        elif edit == "format":
            meta["format"] = "something-else"
        elif edit == "input_shape":
            meta["input_shape"] = [28, 28, 2]
        elif edit == "no_tasks":
            del meta["tasks"]
        elif edit == "unknown_key":
            meta["config"]["bogus"] = 1
        cfg.write_text(json.dumps(meta))
    with pytest.raises(ModelFileError):
        Detector.load(saved)


def test_missing_files_are_refused(saved, tmp_path):
    with pytest.raises(ModelFileError):
        Detector.load(tmp_path / "nowhere")
    (saved / "config.json").unlink()
    with pytest.raises(ModelFileError):
        Detector.load(saved)


@pytest.mark.slow
def test_grey_model_refuses_colour_images_and_reverse(grey_detector, colour_detector, grey_images, colour_images):
    with pytest.raises(InputError, match=r"grey images \(1 channel.*colour images \(3 channel"):
        grey_detector.score(colour_images)
    with pytest.raises(InputError, match=r"colour images \(3 channel.*grey images \(1 channel"):
        colour_detector.score(grey_images)
    scores = colour_detector.score(colour_images)
    assert scores.shape == (8,) and np.isfinite(scores).all()
    assert set(colour_detector.score_tasks(colour_images[:2])) == {"geometric"}


def test_wrong_size_images_are_refused(grey_detector, make_images):
    with pytest.raises(InputError, match="28x28"):
        grey_detector.score(make_images(2, 32, 32))


@pytest.mark.parametrize("scoring", [PAPER_SETTINGS, {}], ids=["paper", "improved"])
def test_unfitted_detector_refuses_to_score_or_save(tmp_path, grey_images, scoring):
    det = Detector(**{**TINY, **scoring}) if scoring else Detector(preset="tiny", device="cpu")
    with pytest.raises(InputError, match="not fitted"):
        det.score(grey_images)
    with pytest.raises(InputError, match="not fitted"):
        det.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("bad,match", [
    (np.random.default_rng(0).random((4, 28, 28)), "float"),
    (np.full((4, 28, 28), np.nan), "NaN"),
    (np.zeros((28, 28), np.uint8), "shape"),
    (np.zeros((0, 28, 28), np.uint8), "empty"),
    (np.zeros((4, 28, 28, 2), np.uint8), "channels"),
    (np.full((4, 28, 28), 300, np.int32), "0..255"),
    (np.zeros((4, 2, 2), np.uint8), "too small"),
    ("not images", "array"),
])
def test_bad_training_images_raise_input_error(bad, match):
    with pytest.raises(InputError, match=match):
        Detector(**TINY).fit(bad, progress=False)


def test_one_image_training_set_is_refused(grey_images):
    with pytest.raises(InputError, match="at least 2"):
        Detector(**TINY).fit(grey_images[:1], progress=False)


def test_bad_images_to_score_raise_input_error(grey_detector):
    with pytest.raises(InputError):
        grey_detector.score(np.random.default_rng(0).random((2, 28, 28)))
    with pytest.raises(InputError, match="NaN"):
        grey_detector.score(np.full((2, 28, 28), np.nan, np.float32))
    with pytest.raises(InputError):
        grey_detector.score(np.zeros((28, 28), np.uint8))
    with pytest.raises(InputError, match="empty"):
        grey_detector.score(np.zeros((0, 28, 28), np.uint8))


@pytest.mark.parametrize("kwargs,match", [
    ({"preset": "huge"}, "preset"),
    ({"preset": "tiny", "bogus": 1}, "bogus"),
    ({"preset": "tiny", "depth": "16"}, "integer"),
    ({"preset": "tiny", "depth": 16.0}, "integer"),
    ({"preset": "tiny", "lr": "fast"}, "number"),
    ({"preset": "tiny", "nesterov": 1}, "true or false"),
    ({"preset": "tiny", "tasks": []}, "tasks"),
    ({"preset": "tiny", "tasks": ("geometric", "geometric")}, "twice"),
    ({"preset": "tiny", "score_fusion": "max"}, "score_fusion"),
    ({"preset": "tiny", "steps": 0}, "steps"),
    ({"preset": "tiny", "head_dropout": 1.0}, "head_dropout"),
    ({"preset": "tiny", "lr": float("nan")}, "finite"),
    ({"preset": "tiny", "jigsaw_grid": (3, 0)}, "jigsaw_grid"),
    ({"preset": "tiny", "depth": None}, "null"),
])
def test_config_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        Detector(**kwargs)


def test_unknown_task_is_a_config_error(grey_images):
    with pytest.raises(ConfigError, match="unknown task"):
        Detector(**TINY, tasks=("geometric", "nope")).fit(grey_images[:2], progress=False)


@pytest.mark.slow
def test_same_seed_gives_identical_scores_and_other_seed_differs(grey_images):
    a = Detector(**TINY, steps=2).fit(grey_images[:8], progress=False).score(grey_images[:4])
    b = Detector(**TINY, steps=2).fit(grey_images[:8], progress=False).score(grey_images[:4])
    c = Detector(**TINY, steps=2, seed=1).fit(grey_images[:8], progress=False).score(grey_images[:4])
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.slow
@pytest.mark.parametrize("tasks", [("geometric",), ("jigsaw",)])
def test_single_task_detectors(tasks, grey_images, tmp_path):
    det = Detector(**TINY, tasks=tasks, steps=2).fit(grey_images[:6], progress=False)
    sums = det.score_tasks(grey_images[:4])
    assert list(sums) == list(tasks)
    assert sums[tasks[0]].shape == (4,) and np.isfinite(sums[tasks[0]]).all()
    np.testing.assert_allclose(det.score(grey_images[:4]), -sums[tasks[0]], rtol=1e-12)
    assert list(det.net.heads) == list(tasks)
    loaded = Detector.load(det.save(tmp_path / "m"))
    assert np.array_equal(loaded.score(grey_images[:4]), det.score(grey_images[:4]))


def test_accepts_lists_tensors_and_integer_arrays(grey_detector, grey_images):
    ref = grey_detector.score(grey_images[:3])
    np.testing.assert_array_equal(grey_detector.score(list(grey_images[:3])), ref)
    np.testing.assert_array_equal(grey_detector.score(torch.from_numpy(grey_images[:3])), ref)
    np.testing.assert_array_equal(grey_detector.score(grey_images[:3].astype(np.int64)), ref)
    np.testing.assert_array_equal(grey_detector.score(grey_images[:3, :, :, None]), ref)


def test_package_exports():
    assert issubclass(fgad.InputError, fgad.FgadError) and issubclass(fgad.ModelFileError, fgad.FgadError)
    assert issubclass(fgad.ConfigError, fgad.FgadError)


@pytest.mark.slow
def test_loaded_compiled_model_scores(tmp_path):
    # load() sets every attribute the constructor sets (the compiled network's cache included):
    # a model saved with compile=true scores after loading (torch.compile on a CPU: ~30 s).
    rng = np.random.default_rng(0)
    train = rng.integers(0, 256, (6, 16, 16, 1), dtype=np.uint8)
    test = rng.integers(0, 256, (3, 16, 16, 1), dtype=np.uint8)
    det = Detector(**TINY, steps=1, image_size=16, compile=True).fit(train, progress=False)
    loaded = Detector.load(det.save(tmp_path / "model"))
    assert loaded.config.compile
    np.testing.assert_allclose(loaded.score(test), det.score(test), rtol=1e-4, atol=1e-5)


def test_from_config_and_load_set_the_constructors_attributes(grey_detector, tmp_path):
    fresh = Detector(**TINY)
    built = Detector.from_config(fresh.config, "tiny")
    loaded = Detector.load(grey_detector.save(tmp_path / "model"))
    assert set(vars(built)) == set(vars(fresh)) == set(vars(loaded))
    assert built.config == fresh.config and built is not fresh and built.config is not fresh.config
