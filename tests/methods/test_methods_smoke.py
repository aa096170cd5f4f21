"""Every registered method, tiny preset on CPU: fit, score, save, load, identical scores."""

from __future__ import annotations

import numpy as np
import pytest

from fgad.data import one_vs_all
from fgad.methods import METHODS, FitContext, create_method, get_method, list_methods

EXTRA = {"piad": {"allow_random_vgg": True}}  # no ImageNet weights in tests
SLOW = {"ours", "mhrot", "deepgeo", "goad", "piad", "calibrated"}  # over a second each on one CPU thread


def test_registry_lists_every_baseline():
    expected = {"ours", "mhrot", "jigsaw", "deepgeo", "deepsvdd", "deepsad-10", "deepsad-25", "deepsad-75", "piad",
                "ocsvm", "iforest", "mean-distance"}
    assert expected <= set(list_methods())
    for name, m in METHODS.items():
        assert m.summary and callable(m.factory) and callable(m.loader), name


@pytest.mark.parametrize("kind", ["grey", "colour"])
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_methods()])
def test_fit_score_save_load(name, kind, image_sets, make_dataset, tmp_path):
    det = create_method(name, "tiny", 0, **EXTRA.get(name, {}))
    if det.semi_supervised:
        ds = make_dataset(kind)
        det.fit(one_vs_all(ds, 0)[0], FitContext(dataset=ds, normal_class=0, progress=False))
        images = ds.x_test
        assert det.info["labelled_anomalies"]["count"] >= 1
    else:
        images = image_sets[kind]
        det.fit(images, FitContext(progress=False))
    scores = det.score(images)
    assert isinstance(scores, np.ndarray) and scores.shape == (len(images),)
    assert np.isfinite(scores).all()
    config = det.config_dict()
    assert isinstance(config, dict)
    det.save(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    again = get_method(name).loader(tmp_path / "model")
    np.testing.assert_array_equal(again.score(images), scores)
