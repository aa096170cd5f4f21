"""The method contract: options are checked, never dropped; what a fit cannot honour is refused."""

from __future__ import annotations

import numpy as np
import pytest

from fgad.core.config import check_config
from fgad.errors import ConfigError, ModelFileError
from fgad.methods import METHODS, AnomalyDetector, FitContext, create_method, get_method
from fgad.methods.deepgeo import DeepGEOConfig
from fgad.methods.selfsup import Ours

EXTRA = {"piad": {"allow_random_vgg": True}}  # no ImageNet weights in tests


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_meets_the_contract_and_refuses_unknown_options(name):
    det = create_method(name, "tiny", 0, **EXTRA.get(name, {}))
    assert isinstance(det, AnomalyDetector) and det.name == name and not det.is_fitted
    assert set(get_method(name).options) == set(det.options())
    with pytest.raises(ConfigError, match=rf"^{name}: unknown option\(s\) bogus"):
        create_method(name, "tiny", 0, bogus=1)
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        create_method(name, "huge", 0, **EXTRA.get(name, {}))


@pytest.mark.parametrize("name, option", [("ours", "tasks"), ("mhrot", "tasks"), ("deepsvdd", "known_fraction"),
                                          ("deepsad-10", "known_fraction")])
def test_an_option_the_method_fixes_is_an_error(name, option):
    assert option not in get_method(name).options
    with pytest.raises(ConfigError, match=f"{name}: option.*{option}.*set by the method"):
        create_method(name, "tiny", 0, **{option: None})


def test_a_fit_request_the_method_cannot_honour_is_an_error(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    with pytest.raises(ConfigError, match="mean-distance: cannot checkpoint"):
        create_method("mean-distance", "tiny").fit(x, FitContext(checkpoint_dir=tmp_path))
    with pytest.raises(ConfigError, match="deepgeo: cannot checkpoint"):
        create_method("deepgeo", "tiny").fit(x, FitContext(checkpoint_dir=tmp_path))
    with pytest.raises(ConfigError, match="iforest: a one-class method takes no labelled anomalies"):
        create_method("iforest", "tiny").fit(x, FitContext(labelled_anomalies=x))
    with pytest.raises(ConfigError, match="deepsvdd: a one-class method takes no labelled anomalies"):
        create_method("deepsvdd", "tiny").fit(x, FitContext(labelled_anomalies=x))
    with pytest.raises(ConfigError, match="deepsad-10: draws labelled anomalies .* dataset"):
        create_method("deepsad-10", "tiny").fit(x, FitContext(progress=False))
    with pytest.raises(TypeError):  # no keyword is silently dropped any more
        create_method("ocsvm", "tiny").fit(x, progress=False)
    assert get_method("ours").factory.resumable and not get_method("deepgeo").factory.resumable


def test_loading_with_a_device_needs_a_device_option(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (4, 8, 8), dtype=np.uint8)
    create_method("mean-distance", "tiny").fit(x).save(tmp_path / "m")
    with pytest.raises(ConfigError, match="mean-distance: runs on the CPU"):
        get_method("mean-distance").loader(tmp_path / "m", device="cpu")


def test_one_validator_for_the_baselines_options():
    cfg = check_config(DeepGEOConfig, {"steps": 3, "epochs": None, "scoring": "softmax"}, "deepgeo")
    assert (cfg.steps, cfg.epochs, cfg.scoring) == (3, None, "softmax")
    for bad, match in [({"steps": 2.5}, "'steps' must be an integer"), ({"lr": "fast"}, "'lr' must be a number"),
                       ({"depth": None}, "'depth' cannot be null"), ({"scoring": "max"}, "'scoring' must be one of"),
                       ({"depth": 11}, "'depth' must be 6n\\+4")]:
        with pytest.raises(ConfigError, match=f"^deepgeo: option {match}"):
            check_config(DeepGEOConfig, bad, "deepgeo")
    milestones = create_method("deepsvdd", "tiny", 0, milestones=[3, 4]).config.milestones
    assert milestones == (3, 4)
    with pytest.raises(ConfigError, match="deepsvdd: option 'milestones' must be a list of integers"):
        create_method("deepsvdd", "tiny", 0, milestones=[3, "x"])


def test_epochs_asked_for_beats_a_presets_steps():
    # quick sets steps=600: an 'epochs' asked for must not be silently overridden by it
    assert create_method("deepgeo", "quick", 0, epochs=1).config.steps is None
    assert create_method("deepgeo", "quick", 0).config.steps == 600
    assert create_method("ours", "quick", 0, epochs=1).config.steps is None


def test_selfsup_method_wraps_a_detector_of_its_tasks(tmp_path):
    det = create_method("mhrot", "tiny", 0, device="cpu", steps=1, image_size=16)
    assert det.detector.config.tasks == ("geometric",) and det.config is det.detector.config
    x = np.random.default_rng(0).integers(0, 256, (4, 16, 16), dtype=np.uint8)
    det.fit(x, FitContext(progress=False))
    parts = det.score_components(x)
    np.testing.assert_array_equal(parts.scores, det.score(x))
    assert list(parts.components) == ["geometric"] and det.config_dict()["task_terms"] == {"geometric": 108}
    det.save(tmp_path / "m")
    np.testing.assert_array_equal(get_method("mhrot").loader(tmp_path / "m").score(x), parts.scores)
    with pytest.raises(ModelFileError, match="not 'ours'"):
        Ours.load(tmp_path / "m")
