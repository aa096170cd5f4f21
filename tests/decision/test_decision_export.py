"""ONNX export: views inside the graph equal eager views; onnxruntime scores equal PyTorch's, on the
paper's score and on the improved detector's (log-space, Dirichlet, kNN, z-score and rank fusions)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from fgad import Detector
from fgad.core.config import IMPROVED
from fgad.core.scoring import fuse, fuse_tensors
from fgad.io.preprocess import as_image_array, to_tensor
from fgad.tasks import build_task
from fgad.tools.export import (
    PARITY_RTOL,
    export_onnx,
    export_views,
    jigsaw_test_views,
    preprocess,
    sidecar_path,
    verify_onnx,
)

from decision_helpers import random_uint8

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("name, params, size, channels", [
    ("geometric", {}, 32, 1),
    ("geometric", {"shift_fraction": 0.2}, 20, 3),
    ("jigsaw", {"k": 3, "margin": 2, "seed": 0}, 32, 1),
    ("jigsaw", {"grid": (2, 3), "k": 4, "margin": 3, "seed": 5}, 17, 3),  # uneven grid, odd side
    ("rotation", {}, 16, 3),
    ("translation", {}, 16, 1),
    ("geom72", {}, 12, 1),
])
def test_export_views_equal_eager_test_views(name, params, size, channels):
    task = build_task(name, **params)
    x = torch.randn(3, channels, size, size)
    assert torch.equal(export_views(task, x, channels, size, size), task.views(x, train=False))


def run_onnx(path, x):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {"images": x})


def check_parity(det, images, path):
    """onnxruntime's outputs against Detector.score and Detector.score_components, within
    PARITY_RTOL of max(|value|, 1); for the paper's scoring, the components are score_tasks."""
    meta = export_onnx(det, path)
    x = preprocess(images, sidecar_path(path))
    np.testing.assert_array_equal(x, to_tensor(as_image_array(images), det.config.image_size).numpy())
    ref, comps = det.score(images), det.score_components(images)
    assert list(comps) == det.component_names
    if det.config.task_score == "prob" and not det.config.jigsaw_test_draws:
        assert all(np.array_equal(comps[n], v) for n, v in det.score_tasks(images).items())

    def close(got, want):
        np.testing.assert_allclose(got, want, rtol=PARITY_RTOL, atol=PARITY_RTOL)
        assert np.all(np.abs(got - want) <= PARITY_RTOL * np.maximum(np.abs(want), 1.0))

    for batch in (x, x[:1]):  # the batch axis is dynamic
        out = run_onnx(path, batch)
        n = len(batch)
        assert len(out) == 2 + len(comps)
        close(out[0], ref[:n])
        close(out[1], -ref[:n])
        for o, name in zip(out[2:], comps):
            close(o, comps[name][:n])
    assert verify_onnx(det, path, images) <= PARITY_RTOL
    return meta


@pytest.mark.slow
def test_grey_28_parity_and_sidecar(grey_detector, tmp_path):
    images = random_uint8(5, seed=41)
    meta = check_parity(grey_detector, images, tmp_path / "grey.onnx")
    side = json.loads(sidecar_path(tmp_path / "grey.onnx").read_text())
    assert side == json.loads(json.dumps(meta))
    assert side["views_in_graph"] is True and side["opset"] >= 17
    pre = side["preprocessing"]
    assert pre["input_shape"] == [28, 28, 1] and pre["image_size"] == 32
    assert {k: pre["pad"][k] for k in ("top", "bottom", "left", "right", "value")} == \
        {"top": 2, "bottom": 2, "left": 2, "right": 2, "value": -1.0}
    assert side["fusion"]["rule"] == "sum" and list(side["tasks"]) == ["geometric", "jigsaw"]
    assert side["tasks"]["geometric"]["n_views"] == 36 and side["tasks"]["jigsaw"]["n_views"] == 3
    model = onnx.load(str(tmp_path / "grey.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 32, 32]
    assert [o.name for o in model.graph.output] == ["anomaly_score", "normality", "normality_geometric",
                                                    "normality_jigsaw"]
    ops = {n.op_type for n in model.graph.node}
    assert {"Pad", "Conv"} <= ops  # the views are built inside the graph


@pytest.mark.slow
def test_colour_32_parity(colour_detector, tmp_path):
    meta = check_parity(colour_detector, random_uint8(4, 32, 32, 3, seed=42), tmp_path / "colour.onnx")
    assert "pad" not in meta["preprocessing"] and "resize" not in meta["preprocessing"]


@pytest.mark.slow
def test_mean_fusion_and_decision_are_exported(small_detector, tmp_path):
    det = copy.deepcopy(small_detector)
    det.config.score_fusion = "mean"
    images = random_uint8(4, 16, 16, seed=43)
    det.calibrate(images, target_fpr=0.25)
    meta = check_parity(det, images, tmp_path / "mean.onnx")
    assert meta["fusion"]["rule"] == "mean" and meta["decision"] == det.decision


@pytest.mark.slow
def test_larger_images_are_resized_outside_the_graph(tmp_path):
    det = Detector(preset="tiny", device="cpu", steps=1, image_size=16, tasks=("rotation", "jigsaw"))
    det.fit(random_uint8(4, 20, 20, seed=44), progress=False)
    meta = check_parity(det, random_uint8(3, 20, 20, seed=45), tmp_path / "big.onnx")
    assert "bilinear" in meta["preprocessing"]["resize"]["rule"]


def test_preprocess_checks_the_image_shape(grey_detector):
    from fgad.errors import InputError
    from fgad.tools.export import preprocessing_spec

    with pytest.raises(InputError, match="takes 28x28x1 images"):
        preprocess(random_uint8(2, 32, 32), {"preprocessing": preprocessing_spec(grey_detector)})


def test_unfitted_and_low_opset_are_refused(grey_detector, tmp_path):
    from fgad.errors import InputError

    with pytest.raises(InputError, match="not fitted"):
        export_onnx(Detector(preset="tiny"), tmp_path / "m.onnx")
    with pytest.raises(InputError, match="opset >= 17"):
        export_onnx(grey_detector, tmp_path / "m.onnx", opset=16)
    assert not (tmp_path / "m.onnx").exists()


def test_missing_onnx_is_one_clear_error(grey_detector, tmp_path, monkeypatch):
    import sys

    from fgad.tools.export import MissingDependencyError

    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(MissingDependencyError, match=r"pip install onnx \(or pip install 'fgad\[export\]'\)"):
        export_onnx(grey_detector, tmp_path / "m.onnx")


# ------------------------------------------------------------------------------ the improved score
@pytest.mark.parametrize("draw", [1, 2])
def test_jigsaw_draw_views_equal_eager(draw):
    task = build_task("jigsaw", k=4, margin=3, seed=7)
    x = torch.randn(2, 3, 20, 20)
    assert torch.equal(jigsaw_test_views(task, x, 20, 20, draw), task.test_views(x, draw))
    assert not torch.equal(task.test_views(x, draw), task.test_views(x, 0))  # the offsets moved


@pytest.mark.parametrize("fusion", ["sum", "mean", "zscore", "rank"])
def test_fuse_tensors_equals_fuse(calibrated_detector, fusion):
    det = calibrated_detector
    rng = np.random.default_rng(3)
    comps = {n: det.normal_stats.reference[n][rng.integers(0, 3, 7)] + rng.normal(0, 0.1, 7)
             for n in det.tasks}
    if fusion in ("zscore", "rank"):
        comps["feature_knn"] = rng.normal(-0.1, 0.05, 7)
    got = fuse_tensors({n: torch.from_numpy(v) for n, v in comps.items()}, fusion, det.task_terms, det.normal_stats)
    np.testing.assert_allclose(got.numpy(), fuse(comps, fusion, det.task_terms, det.normal_stats), rtol=0,
                               atol=1e-12)


@pytest.mark.slow
def test_calibrated_model_parity(calibrated_detector, tmp_path):
    """The improved detector's settings: float64 log-probabilities, the kNN bank and the z-score
    statistics as constants of the graph."""
    meta = check_parity(calibrated_detector, random_uint8(5, 16, 16, seed=46), tmp_path / "calibrated.onnx")
    assert meta["output_dtype"] == "float64" and meta["fusion"]["rule"] == "zscore"
    assert meta["scoring"]["task_score"] == "logprob" and meta["scoring"]["feature_knn"] == IMPROVED["feature_knn"]
    assert meta["scoring"]["normal_stats"] == calibrated_detector.normal_stats.summary()
    assert list(meta["outputs"]) == ["anomaly_score", "normality", "normality_geometric", "normality_jigsaw",
                                     "normality_feature_knn", "normality_pixel_knn"]
    model = onnx.load(str(tmp_path / "calibrated.onnx"))
    assert "TopK" in {n.op_type for n in model.graph.node}  # the kNN search is in the graph
    ref = np.asarray(meta["normal_percentile"]["heldout_anomaly_scores"])  # the percentile, outside the graph
    scores = calibrated_detector.score(random_uint8(5, 16, 16, seed=46))
    np.testing.assert_array_equal(100 * np.searchsorted(ref, scores, side="left") / len(ref),
                                  calibrated_detector.normal_percentile(scores))


@pytest.mark.slow
def test_weighted_feature_component_parity(tmp_path):
    det = Detector(preset="tiny", device="cpu", steps=2, image_size=16, **{**IMPROVED, "feature_weight": 3.0})
    det.fit(random_uint8(15, 16, 16, seed=14), progress=False)
    meta = check_parity(det, random_uint8(5, 16, 16, seed=46), tmp_path / "weighted.onnx")
    assert meta["scoring"]["weights"] == {"feature_knn": 3.0}


@pytest.mark.slow
def test_dirichlet_rank_and_jigsaw_draws_parity(tmp_path):
    det = Detector(preset="tiny", device="cpu", steps=2, image_size=16, task_score="dirichlet", score_fusion="rank",
                   normal_stats="train", feature_knn=2, jigsaw_test_draws=2)
    det.fit(random_uint8(10, 16, 16, seed=47), progress=False)
    meta = check_parity(det, random_uint8(4, 16, 16, seed=48), tmp_path / "dirichlet.onnx")
    assert meta["scoring"]["jigsaw_test_draws"] == 2 and "draws" in meta["outputs"]["normality_jigsaw"]
    assert meta["normal_percentile"] is None  # statistics of the training normals: no held-out images


@pytest.mark.slow
def test_mirrored_colour_model_parity(tmp_path):
    """The improved default on colour images: each component the mean over the image and its
    mirror, the bank holding the training normals' mirrors; also with leave-one-out statistics."""
    for options in ({}, {"normal_stats": "train"}):
        det = Detector(preset="tiny", device="cpu", steps=2, image_size=16, **{**IMPROVED, **options})
        det.fit(random_uint8(12, 16, 16, 3, seed=49), progress=False)
        assert det.mirrors
        meta = check_parity(det, random_uint8(4, 16, 16, 3, seed=50), tmp_path / "mirror.onnx")
        assert meta["scoring"]["test_mirror"] is True and "mirror" in meta["outputs"]["normality_feature_knn"]
        assert "not mirrored" in meta["outputs"]["normality_pixel_knn"] and meta["scoring"]["pixel_knn"] == 1
