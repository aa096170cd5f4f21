"""ONNX export of a fitted :class:`~fgad.Detector`: views, network, scoring and fusion in one graph.

    >>> from fgad.tools.export import export_onnx, preprocess
    >>> export_onnx(det, "model.onnx")            # writes model.onnx and model.onnx.json
    >>> import onnxruntime as ort
    >>> sess = ort.InferenceSession("model.onnx")
    >>> x = preprocess(images, "model.onnx.json")  # uint8 N×H×W[×C] → float32 N×C×S×S
    >>> anomaly_score, normality, *per_task = sess.run(None, {"images": x})

**The views are built inside the graph.** Its input ``images`` is a float32 batch N×C×S×S of
*preprocessed* images (S = the model's ``image_size``; the batch size N is dynamic); from it the
graph builds every task's views with the same operations as eager scoring:

- geometric shifts: reflect padding (ONNX ``Pad`` mode ``reflect`` = PyTorch ``reflect``, the
  edge pixel not repeated) and slices; quarter turns: transposes and flips;
- jigsaw: the tiles cut at the fixed test offset (``margin // 2``) with slices and placed into
  the permuted cells by zero padding (a gap pixel is 0, as in eager scoring); the sum of the
  padded tiles is exact because their supports do not overlap;

then runs the backbone and the heads on all views, takes each head's softmax of the true
transformation summed over views and heads (eq. 4) and fuses the tasks (eq. 3, the model's
fusion), with the functions of :mod:`fgad.core.scoring` that eager scoring uses. Outputs, each of length N: ``anomaly_score`` (higher = more anomalous, what
:meth:`fgad.Detector.score` returns), ``normality`` (its negation, the paper's s(x)), and
``normality_<task>`` per task (:meth:`fgad.Detector.score_tasks`).

**Preprocessing stays outside the graph** (it depends on the input size, which the graph does
not fix): pixels ``p`` (uint8) become ``2 * p / 255 - 1``; channels first; an image smaller than
S is padded to S×S with −1 (black), centred, the extra pixel of an odd difference at the bottom /
right (28×28 → 2 pixels on every side of 32×32); a larger one is resized to S×S with PyTorch's
antialiased bilinear interpolation. :func:`preprocess` does this (NumPy only for padding; the
resize case calls :func:`fgad.io.preprocess.to_tensor`). The sidecar ``<file>.json`` records all of
it, the tasks, the fusion and the decision threshold if the model was calibrated
(``anomaly_score >= threshold`` means anomalous).

The graph is exported with the TorchScript-based exporter (``torch.onnx.export(...,
dynamo=False)``: the default ``torch.export``-based one needs ``onnxscript`` and is still
changing fast), opset :data:`OPSET`. It needs the ``onnx`` package, and ``onnxruntime`` to run
the graph (``pip install 'fgad[export]'``).
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.scoring import fuse_tensors, true_class_probability_sum
from ..errors import InputError, MissingDependencyError
from ..io.fileio import atomic_write_bytes, atomic_write_json

__all__ = ["export_onnx", "preprocess", "sidecar_path", "ExportGraph", "OPSET", "MissingDependencyError"]

#: The ONNX opset of exported graphs.
OPSET = 18
INPUT_NAME = "images"


def require(module: str, package: str | None = None) -> Any:
    """Import an optional module or raise a one-line :class:`MissingDependencyError`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pkg = package or module
        raise MissingDependencyError(f"ONNX export needs the {pkg!r} package: pip install {pkg} "
                                     f"(or pip install 'fgad[export]')") from None


def sidecar_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``."""
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


# --------------------------------------------------------------------------------------------
# the graph


def _shifted_grid(x: torch.Tensor, fraction: float, c: int, h: int, w: int) -> torch.Tensor:
    """:func:`fgad.tasks.geometric.shifted_grid` with static sizes: B×C×H×W → B×9×C×H×W."""
    from ..tasks.geometric import SHIFT_SIGNS, shift_amount

    tv, th = shift_amount(h, fraction), shift_amount(w, fraction)
    padded = F.pad(x, (th, th, tv, tv), mode="reflect")
    out = []
    for sv in SHIFT_SIGNS:
        for sh in SHIFT_SIGNS:
            r0, c0 = tv - sv * tv, th - sh * th
            out.append(padded[:, :, r0 : r0 + h, c0 : c0 + w])
    return torch.stack(out, 1)


def _rotations(x: torch.Tensor) -> torch.Tensor:
    """…×C×H×W → …×4×C×H×W, ``torch.rot90(x, k)`` for k = 0..3 with transposes and flips."""
    r1 = torch.flip(x.transpose(-2, -1), dims=(-2,))
    r2 = torch.flip(x, dims=(-2, -1))
    r3 = torch.flip(x.transpose(-2, -1), dims=(-1,))
    return torch.stack([x, r1, r2, r3], dim=-4)


def jigsaw_test_views(task: Any, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The jigsaw task's test views with slices and zero padding only (exportable).

    Equal to ``task.views(x, train=False)``: tiles cut at offset ``margin // 2`` inside every
    cell, placed at the same offset inside the permuted cells, zeros elsewhere. B×C×H×W →
    B×k×C×H×W.
    """
    rows0, cols0, th, tw = task.geometry(h, w)
    nw = task.grid[1]
    off = task.margin // 2
    origin = [(rows0[c // nw] + off, cols0[c % nw] + off) for c in range(task.grid[0] * nw)]
    tiles = [x[:, :, y0 : y0 + th, x0 : x0 + tw] for y0, x0 in origin]
    views = []
    for perm in task.permutations:
        view = None
        for cell, source in enumerate(perm):
            y0, x0 = origin[cell]
            placed = F.pad(tiles[source], (x0, w - x0 - tw, y0, h - y0 - th), value=0.0)
            view = placed if view is None else view + placed
        views.append(view)
    return torch.stack(views, 1)


def export_views(task: Any, x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """A task's test views, B×V×C×H×W, equal to ``task.views(x, train=False)``, built with
    static sizes and operations the ONNX exporter handles (pad, slice, transpose, flip, concat).
    """
    from ..tasks import Geom72Task, GeometricTask, JigsawTask, RotationTask, TranslationTask

    if isinstance(task, JigsawTask):
        return jigsaw_test_views(task, x, h, w)
    if isinstance(task, GeometricTask):
        return _rotations(_shifted_grid(x, task.shift_fraction, c, h, w)).reshape(-1, 36, c, h, w)
    if isinstance(task, TranslationTask):
        return _shifted_grid(x, task.shift_fraction, c, h, w)
    if isinstance(task, RotationTask):
        return _rotations(x)
    if isinstance(task, Geom72Task):
        both = torch.stack([x, torch.flip(x, dims=(-1,))], 1).reshape(-1, c, h, w)
        return _rotations(_shifted_grid(both, task.shift_fraction, c, h, w)).reshape(-1, 72, c, h, w)
    raise InputError(f"task {task.name!r} has no ONNX export")


class ExportGraph(nn.Module):
    """Preprocessed images N×C×S×S → (anomaly score, normality, per-task normality sums)."""

    def __init__(self, det: Any):
        super().__init__()
        self.net = det.net
        self.tasks = dict(det.tasks)
        self.names = list(det.tasks)
        self.fusion = det.config.score_fusion
        self.size = (det.input_shape[2], det.config.image_size, det.config.image_size)  # C, S, S
        self.terms = det.task_terms
        # Python ints fixed before tracing: views per task and each head's slice of the dense layer
        self.n_views = {n: t.n_views for n, t in self.tasks.items()}
        self.n_outputs = {n: t.n_outputs for n, t in self.tasks.items()}
        self.head_sizes = {n: tuple(t.head_sizes) for n, t in self.tasks.items()}
        for n, t in self.tasks.items():  # V×n_heads true classes: constants of the graph
            self.register_buffer(f"labels_{n}", t.labels(), persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c, s1, s2 = self.size
        flat = []
        for n in self.names:
            v = export_views(self.tasks[n], x, c, s1, s2)  # B×V×C×S×S
            flat.append(v.reshape(-1, c, s1, s2))  # (B·V)×C×S×S, image-major as in eager scoring
        feats = self.net.backbone(torch.cat(flat, 0))
        sums, start = {}, 0
        for n, f in zip(self.names, flat):
            size = f.shape[0]
            logits = self.net.heads[n](feats[start : start + size])
            start += size
            logits = logits.reshape(-1, self.n_views[n], self.n_outputs[n])  # B×V×outputs
            sums[n] = true_class_probability_sum(logits, getattr(self, f"labels_{n}"), self.head_sizes[n])
        normality = fuse_tensors(sums, self.fusion, self.terms)
        return (-normality, normality, *sums.values())


# --------------------------------------------------------------------------------------------
# preprocessing outside the graph


def preprocessing_spec(det: Any) -> dict[str, Any]:
    h, w, c = det.input_shape
    s = det.config.image_size
    spec: dict[str, Any] = {
        "input": "uint8 images N×H×W (grey) or N×H×W×C (C = 1 or 3), as fgad.Detector.score takes",
        "input_shape": [h, w, c],
        "image_size": s,
        "scaling": "x = 2 * pixel / 255 - 1 (float32, range [-1, 1])",
        "layout": "NCHW (channels first)",
    }
    if h > s or w > s:
        spec["resize"] = {"to": [s, s], "rule": "bilinear, antialias=True, align_corners=False "
                          "(torch.nn.functional.interpolate), after scaling"}
    elif h < s or w < s:
        top, left = (s - h) // 2, (s - w) // 2
        spec["pad"] = {"top": top, "bottom": s - h - top, "left": left, "right": s - w - left, "value": -1.0,
                       "rule": "after scaling, constant -1 (black), centred; an odd extra pixel goes "
                       "to the bottom / right"}
    return spec


def preprocess(images: Any, spec: dict[str, Any] | str | Path) -> np.ndarray:
    """uint8 images → the graph's float32 N×C×S×S input, as the sidecar ``spec`` describes.

    ``spec``: the sidecar dict, its path, or its ``"preprocessing"`` entry. Padding (the usual
    case, e.g. 28×28 → 32×32) is NumPy only; the resize case needs torch.
    """
    from ..io.preprocess import as_image_array

    if isinstance(spec, (str, Path)):
        spec = json.loads(Path(spec).read_text(encoding="utf-8"))
    spec = spec.get("preprocessing", spec)
    x = as_image_array(images, "images")
    h, w, c = spec["input_shape"]
    if x.shape[1:] != (h, w, c):
        raise InputError(f"images: the model takes {h}x{w}x{c} images, got {x.shape[1]}x{x.shape[2]}x{x.shape[3]}")
    if "resize" in spec:
        from ..io.preprocess import to_tensor

        return to_tensor(x, spec["image_size"]).numpy().astype(np.float32)
    out = x.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)
    if "pad" in spec:
        p = spec["pad"]
        out = np.pad(out, ((0, 0), (0, 0), (p["top"], p["bottom"]), (p["left"], p["right"])),
                     constant_values=np.float32(p["value"]))
    return np.ascontiguousarray(out, dtype=np.float32)


# --------------------------------------------------------------------------------------------
# export


def export_onnx(det: Any, path: str | Path, *, opset: int = OPSET, check: bool = True) -> dict[str, Any]:
    """Write ``det`` as an ONNX graph to ``path`` and its sidecar to ``path + ".json"``.

    The graph takes preprocessed images (see :func:`preprocess`) and outputs ``anomaly_score``
    (higher = more anomalous), ``normality`` and ``normality_<task>``; the batch axis is
    dynamic. Both files are written atomically. With ``check``, the graph is checked with
    ``onnx.checker``. Raises :class:`MissingDependencyError` (one line: what to install) when
    ``onnx`` is missing. Returns the sidecar dict.
    """
    if not det.is_fitted:
        raise InputError("the detector is not fitted: nothing to export")
    if opset < 17:
        raise InputError(f"ONNX export needs opset >= 17, got {opset}")
    onnx = require("onnx")  # torch's exporter needs it too
    graph = ExportGraph(det).cpu().eval()
    s = det.config.image_size
    c = det.input_shape[2]
    example = torch.zeros(2, c, s, s)
    outputs = ["anomaly_score", "normality", *[f"normality_{n}" for n in det.tasks]]
    buf = io.BytesIO()
    was = {p: p.device for p in det.net.parameters()}
    device = next(iter(was.values())) if was else torch.device("cpu")
    det.net.cpu()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notices
            torch.onnx.export(graph, (example,), buf, dynamo=False, opset_version=opset,
                              input_names=[INPUT_NAME], output_names=outputs,
                              dynamic_axes={INPUT_NAME: {0: "batch"}, **{o: {0: "batch"} for o in outputs}},
                              do_constant_folding=True)
    finally:
        det.net.to(device)
    data = buf.getvalue()
    if check:
        onnx.checker.check_model(onnx.load_from_string(data))
    from ..core.detector import versions

    meta = {
        "format": "fgad-onnx",
        "format_version": 1,
        "onnx_file": Path(path).name,
        "opset": opset,
        "views_in_graph": True,
        "input": {"name": INPUT_NAME, "shape": ["batch", c, s, s], "dtype": "float32",
                  "what": "preprocessed images (see preprocessing), range [-1, 1]"},
        "outputs": {
            "anomaly_score": "higher = more anomalous (= fgad.Detector.score)",
            "normality": "the paper's s(x), eq. 3: higher = more normal (= -anomaly_score)",
            **{f"normality_{n}": f"task {n}: softmax of the true transformation summed over "
               f"{t.n_views} views x {len(t.head_sizes)} head(s) (eq. 4), higher = more normal"
               for n, t in det.tasks.items()},
        },
        "preprocessing": preprocessing_spec(det),
        "tasks": {n: {"state": t.state(), "n_views": t.n_views, "head_sizes": list(t.head_sizes),
                      "n_score_terms": t.n_score_terms} for n, t in det.tasks.items()},
        "fusion": {"rule": det.config.score_fusion,
                   "what": "mean over tasks of the task sums" + (
                       " each divided by its n_score_terms" if det.config.score_fusion == "mean" else " (eq. 3)")},
        "decision": det.decision,
        "config": det.config.to_dict(),
        "versions": {**versions(), "onnx": onnx.__version__},
    }
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar_path(path), meta)
    return meta
