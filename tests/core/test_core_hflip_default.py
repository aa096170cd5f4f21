"""Flips joined the improved detector (``hflip="auto"``, chosen on the development suite): the
default flips colour training images only, the paper's methods never flip, and models saved
before load and score as they did."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fgad
from fgad.core.config import IMPROVED, PAPER_SETTINGS, resolve_config
from fgad.core.training import hflip_on
from fgad.methods import create_method, get_method


def test_the_default_flips_colour_images_only():
    cfg = resolve_config("quick")
    assert cfg.hflip == "auto"
    assert hflip_on(cfg, 3) and not hflip_on(cfg, 1)
    assert not hflip_on(resolve_config("quick", PAPER_SETTINGS), 3)


@pytest.mark.parametrize("method", ["ours", "mhrot", "jigsaw", "rotation", "translation"])
def test_the_papers_methods_never_flip(method):
    assert create_method(method, preset="tiny").config.hflip == "off"


def test_the_improved_method_flips_colour_images():
    assert create_method("calibrated", preset="tiny").config.hflip == "auto"


def _saved(tmp_path, make_images, drop: str | None = None, **options) -> tuple:
    det = fgad.Detector(preset="tiny", device="cpu", steps=1, image_size=16, **options)
    det.fit(make_images(12, 16, 16, 3, seed=3), progress=False)
    path = det.save(tmp_path / "m")
    if drop is not None:  # as written before the option existed
        meta = json.loads((path / "config.json").read_text())
        del meta["config"][drop]
        (path / "config.json").write_text(json.dumps(meta))
    return det, path


def test_an_improved_model_saved_without_flips_still_loads_as_calibrated(tmp_path, make_images):
    det, path = _saved(tmp_path, make_images, **{**IMPROVED, "hflip": "off"})
    x = make_images(4, 16, 16, 3, seed=4)
    again = get_method("calibrated").loader(path)
    assert again.config.hflip == "off"
    np.testing.assert_array_equal(again.score(x), det.score(x))


def test_a_model_saved_before_the_option_loads_without_flips(tmp_path, make_images):
    det, path = _saved(tmp_path, make_images, drop="hflip", **PAPER_SETTINGS)
    again = get_method("ours").loader(path)
    assert again.config.hflip == "off"
    x = make_images(4, 16, 16, 3, seed=4)
    np.testing.assert_array_equal(again.score(x), det.score(x))
