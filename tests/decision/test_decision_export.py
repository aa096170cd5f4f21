"""ONNX export: views inside the graph equal eager views; onnxruntime scores equal PyTorch's."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from fgad import Detector
from fgad.tools.export import export_onnx, export_views, preprocess, sidecar_path
from fgad.io.preprocess import as_image_array, to_tensor
from fgad.tasks import build_task

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
    meta = export_onnx(det, path)
    x = preprocess(images, sidecar_path(path))
    np.testing.assert_array_equal(x, to_tensor(as_image_array(images), det.config.image_size).numpy())
    ref, sums = det.score(images), det.score_tasks(images)
    for batch in (x, x[:1]):  # the batch axis is dynamic
        out = run_onnx(path, batch)
        n = len(batch)
        np.testing.assert_allclose(out[0], ref[:n], rtol=1e-4)
        np.testing.assert_allclose(out[1], -ref[:n], rtol=1e-4)
        for o, task in zip(out[2:], det.tasks):
            np.testing.assert_allclose(o, sums[task][:n], rtol=1e-4)
    return meta


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


def test_colour_32_parity(colour_detector, tmp_path):
    meta = check_parity(colour_detector, random_uint8(4, 32, 32, 3, seed=42), tmp_path / "colour.onnx")
    assert "pad" not in meta["preprocessing"] and "resize" not in meta["preprocessing"]


def test_mean_fusion_and_decision_are_exported(small_detector, tmp_path):
    det = copy.deepcopy(small_detector)
    det.config.score_fusion = "mean"
    images = random_uint8(4, 16, 16, seed=43)
    det.calibrate(images, target_fpr=0.25)
    meta = check_parity(det, images, tmp_path / "mean.onnx")
    assert meta["fusion"]["rule"] == "mean" and meta["decision"] == det.decision


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
