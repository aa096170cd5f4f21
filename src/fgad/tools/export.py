"""ONNX export of a fitted :class:`~fgad.Detector`: views, network, its score and fusion in one graph.

    >>> from fgad.tools.export import export_onnx, preprocess
    >>> export_onnx(det, "model.onnx")            # writes model.onnx and model.onnx.json
    >>> import onnxruntime as ort
    >>> sess = ort.InferenceSession("model.onnx")
    >>> x = preprocess(images, "model.onnx.json")  # uint8 N×H×W[×C] → float32 N×C×S×S
    >>> anomaly_score, normality, *per_component = sess.run(None, {"images": x})

**The views are built inside the graph.** Its input ``images`` is a float32 batch N×C×S×S of
*preprocessed* images (S = the model's ``image_size``; the batch size N is dynamic); from it the
graph builds every task's views with the same operations as eager scoring:

- geometric shifts: reflect padding (ONNX ``Pad`` mode ``reflect`` = PyTorch ``reflect``, the
  edge pixel not repeated) and slices; quarter turns: transposes and flips;
- jigsaw: the tiles cut at the fixed test offset (``margin // 2``) with slices and placed into
  the permuted cells by zero padding (a gap pixel is 0, as in eager scoring); the sum of the
  padded tiles is exact because their supports do not overlap;

then runs the backbone and the heads on all views and computes the model's own score with the
functions of :mod:`fgad.core.scoring` that eager scoring calls (:meth:`fgad.Detector.score_components`
and :meth:`fgad.Detector.fuse_components`):

- per task, its score under the model's ``task_score``: ``"prob"`` (the paper's eq. 4, float32),
  ``"logprob"`` (float64 from the logits) or ``"dirichlet"`` (float64, the fitted α as constants);
  with ``jigsaw_test_draws`` = D the jigsaw's views of the D seeded tile-offset draws are built
  in the graph too (static offsets) and averaged with the centred ones;
- with ``feature_knn`` = k, the feature component: the L2-normalised backbone features of the
  untransformed images against the saved bank (a constant of the graph), k nearest (``TopK``);
- the fusion: ``"sum"`` (eq. 3) / ``"mean"`` in the components' dtype; ``"zscore"`` / ``"rank"``
  in float64 with the saved normal statistics as constants (the rank as a count of reference
  values <= the component).

Outputs, each of length N: ``anomaly_score`` (higher = more anomalous, what
:meth:`fgad.Detector.score` returns), ``normality`` (its negation), and ``normality_<component>``
per component (:meth:`fgad.Detector.score_components`: each task, then ``feature_knn``). They
are float32 with the paper's scoring, float64 when a component or the fusion is (the sidecar's
``output_dtype``). The network runs in float32 as in eager scoring on a CPU; onnxruntime's
convolutions sum in another order than PyTorch's, so the scores agree to within
:data:`PARITY_RTOL` (relative to the larger of the score's magnitude and 1), not bit for bit.

**Preprocessing stays outside the graph** (it depends on the input size, which the graph does
not fix): pixels ``p`` (uint8) become ``2 * p / 255 - 1``; channels first; an image smaller than
S is padded to S×S with −1 (black), centred, the extra pixel of an odd difference at the bottom /
right (28×28 → 2 pixels on every side of 32×32); a larger one is resized to S×S with PyTorch's
antialiased bilinear interpolation. :func:`preprocess` does this (NumPy only for padding; the
resize case calls :func:`fgad.io.preprocess.to_tensor`). The sidecar ``<file>.json`` records all of
it, the tasks, the scoring, the fusion and the decision threshold if the model was calibrated
(``anomaly_score >= threshold`` means anomalous) and, for a model with held-out normal images,
their sorted anomaly scores (``normal_percentile``): the readable companion of a score, the share
of them that score lower (:meth:`fgad.Detector.normal_percentile`), is
``100 * searchsorted(heldout_anomaly_scores, score, side="left") / n``, outside the graph.

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

from ..core.scoring import (
    FEATURE_COMPONENT,
    PIXEL_COMPONENT,
    STANDARDISED_FUSIONS,
    fuse_tensors,
    knn_cosine_distance,
    l2_normalise,
    task_score,
)
from ..errors import InputError, MissingDependencyError
from ..io.fileio import atomic_write_bytes, atomic_write_json

__all__ = ["export_onnx", "preprocess", "sidecar_path", "verify_onnx", "ExportGraph", "OPSET", "PARITY_RTOL",
           "MissingDependencyError"]

#: The ONNX opset of exported graphs.
OPSET = 18
#: onnxruntime's scores agree with :meth:`fgad.Detector.score` to this relative tolerance (of the
#: larger of |score| and 1): float32 convolutions summed in another order (``fgad export --verify``).
PARITY_RTOL = 1e-4
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


def jigsaw_test_views(task: Any, x: torch.Tensor, h: int, w: int, draw: int = 0) -> torch.Tensor:
    """The jigsaw task's test views of draw ``draw`` with slices and zero padding only (exportable).

    Equal to ``task.test_views(x, draw)``: each tile cut at its draw's offset inside its source
    cell (draw 0: ``margin // 2``, the paper's test views; the offsets of a draw are the same for
    every image, so they are constants here), placed at offset ``margin // 2`` inside the permuted
    cell, zeros elsewhere. B×C×H×W → B×k×C×H×W.
    """
    rows0, cols0, th, tw = task.geometry(h, w)
    nw = task.grid[1]
    n_cells = task.grid[0] * nw
    centre = task.margin // 2
    offsets = task.draw_offsets_at_test(1, draw)[0].tolist()  # n_cells × (row, column)
    tiles = []
    for c in range(n_cells):
        y0, x0 = rows0[c // nw] + offsets[c][0], cols0[c % nw] + offsets[c][1]
        tiles.append(x[:, :, y0 : y0 + th, x0 : x0 + tw])
    views = []
    for perm in task.permutations:
        view = None
        for cell, source in enumerate(perm):
            y0, x0 = rows0[cell // nw] + centre, cols0[cell % nw] + centre
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
    """Preprocessed images N×C×S×S → (anomaly score, normality, each component's normality).

    The model's scoring state (Dirichlet α, kNN bank, normal statistics) becomes constants of the
    graph; every formula is :mod:`fgad.core.scoring`'s, as in :meth:`fgad.Detector.score_components`.
    """

    def __init__(self, det: Any):
        super().__init__()
        cfg = det.config
        self.net = det.net
        self.tasks = dict(det.tasks)
        self.names = list(det.tasks)
        self.components = list(det.component_names)
        self.kind = cfg.task_score
        self.fusion = cfg.score_fusion
        self.stats = det.normal_stats  # its values enter the graph as constants when traced
        self.knn = int(cfg.feature_knn)
        self.draws = int(cfg.jigsaw_test_draws) if "jigsaw" in self.tasks else 0
        self.mirror = bool(det.mirrors)
        self.size = (det.input_shape[2], cfg.image_size, cfg.image_size)  # C, S, S
        self.terms = det.task_terms
        self.weights = det.fusion_weights
        # Python ints fixed before tracing: views per task and each head's slice of the dense layer
        self.n_views = {n: t.n_views for n, t in self.tasks.items()}
        self.n_outputs = {n: t.n_outputs for n, t in self.tasks.items()}
        self.head_sizes = {n: tuple(t.head_sizes) for n, t in self.tasks.items()}
        for n, t in self.tasks.items():  # V×n_heads true classes: constants of the graph
            self.register_buffer(f"labels_{n}", t.labels(), persistent=False)
        for n, heads in (det.dirichlet_alpha or {}).items():
            for h, a in enumerate(heads):
                self.register_buffer(f"alpha_{n}_{h}", torch.from_numpy(np.asarray(a, dtype=np.float64)),
                                     persistent=False)
        if self.knn:
            self.register_buffer("feature_bank", torch.from_numpy(np.asarray(det.feature_bank)), persistent=False)
        self.pixel_knn = int(cfg.pixel_knn)
        if self.pixel_knn:
            self.register_buffer("pixel_bank", torch.from_numpy(np.asarray(det.pixel_bank)), persistent=False)

    def _views(self) -> list[tuple[str, int]]:
        """The (task, draw) pairs whose views the graph builds: every task's test views (draw 0),
        then the jigsaw's draws 1..D."""
        return [(n, 0) for n in self.names] + [("jigsaw", d) for d in range(1, self.draws + 1)]

    def _task_score(self, name: str, logits: torch.Tensor) -> torch.Tensor:
        alphas = None
        if self.kind == "dirichlet":
            alphas = [getattr(self, f"alpha_{name}_{h}") for h in range(len(self.head_sizes[name]))]
        return task_score(logits, getattr(self, f"labels_{name}"), self.head_sizes[name], self.kind, alphas)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        comps = self._components(x)
        if self.mirror:  # each component the mean over the image and its left-right mirror, as eager
            mirrored = self._components(torch.flip(x, dims=[3]))
            comps = {n: (v + mirrored[n]) / 2 for n, v in comps.items()}
        if self.pixel_knn:  # the input pixels, never mirrored, as eager
            comps[PIXEL_COMPONENT] = -knn_cosine_distance(l2_normalise(x.flatten(1)), self.pixel_bank, self.pixel_knn)
        normality = fuse_tensors(comps, self.fusion, self.terms, self.stats, self.weights)
        return (-normality, normality, *(comps[n] for n in self.components))

    def _components(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        c, s1, s2 = self.size
        pairs = self._views()
        flat = []
        for n, d in pairs:
            task = self.tasks[n]
            v = export_views(task, x, c, s1, s2) if d == 0 else jigsaw_test_views(task, x, s1, s2, d)  # B×V×C×S×S
            flat.append(v.reshape(-1, c, s1, s2))  # (B·V)×C×S×S, image-major as in eager scoring
        if self.knn:
            flat.append(x)  # the untransformed images, for the feature component
        feats = self.net.backbone(torch.cat(flat, 0))
        comps: dict[str, torch.Tensor] = {}
        start = 0
        for (n, d), f in zip(pairs, flat):
            size = f.shape[0]
            logits = self.net.heads[n](feats[start : start + size])
            start += size
            value = self._task_score(n, logits.reshape(-1, self.n_views[n], self.n_outputs[n]))  # B×V×outputs
            comps[n] = value if d == 0 else comps[n] + value
        if self.draws:  # each jigsaw view's term averaged over the centred tiles and the draws, as eager
            comps["jigsaw"] = comps["jigsaw"] / (self.draws + 1)
        if self.knn:
            queries = l2_normalise(feats[start:].float())
            comps[FEATURE_COMPONENT] = -knn_cosine_distance(queries, self.feature_bank, self.knn)
        return comps


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

FUSION_TEXT = {
    "sum": "mean over tasks of the task scores (eq. 3)",
    "mean": "mean over tasks of the task scores, each divided by its n_score_terms",
    "zscore": "mean over components of (value - mean) / std over normal images (scoring.normal_stats)",
    "rank": "mean over components of the share of reference normal images scoring no more normal",
}
_TASK_SCORE_TEXT = {
    "prob": "softmax of the true transformation summed over {v} views x {h} head(s) (eq. 4)",
    "logprob": "log softmax of the true transformation summed over {v} views x {h} head(s), float64",
    "dirichlet": "Dirichlet log-likelihood of the softmax vectors summed over {v} views x {h} head(s), float64",
}


def describe_component(det: Any, name: str) -> str:
    """One line on what the output ``normality_<name>`` holds (higher = more normal)."""
    cfg = det.config
    mirror = ", the mean over the image and its left-right mirror" if det.mirrors else ""
    if name == FEATURE_COMPONENT:
        bank = "training normals and their mirrors" if det.mirrors else "training normals"
        return (f"minus the mean cosine distance of the image's L2-normalised backbone features to its "
                f"{cfg.feature_knn} nearest {bank} (the saved bank){mirror}, higher = more normal")
    if name == PIXEL_COMPONENT:
        return (f"minus the mean cosine distance of the image's input pixels (as preprocessed, flattened, "
                f"L2-normalised) to its {cfg.pixel_knn} nearest training normals' (the saved bank), not mirrored, "
                f"higher = more normal")
    t = det.tasks[name]
    text = f"task {name}: " + _TASK_SCORE_TEXT[cfg.task_score].format(v=t.n_views, h=len(t.head_sizes))
    if name == "jigsaw" and cfg.jigsaw_test_draws:
        text += f", averaged over the centred tiles and {cfg.jigsaw_test_draws} seeded offset draws"
    return text + mirror + ", higher = more normal"


def _percentile_spec(det: Any) -> dict[str, Any] | None:
    """The held-out normal images' sorted anomaly scores, to turn a score into its normal
    percentile outside the graph; None for a model without them."""
    stats = det.normal_stats
    if stats is None or stats.anomaly_scores is None:
        return None
    return {"what": "share (0-100) of held-out normal images whose anomaly score is lower: "
                    "100 * searchsorted(heldout_anomaly_scores, anomaly_score, side='left') / n",
            "n": int(len(stats.anomaly_scores)), "heldout_anomaly_scores": stats.anomaly_scores.tolist()}


def _float64_outputs(det: Any) -> bool:
    cfg = det.config
    return cfg.task_score != "prob" or bool(cfg.feature_knn) or cfg.score_fusion in STANDARDISED_FUSIONS



def export_onnx(det: Any, path: str | Path, *, opset: int = OPSET, check: bool = True) -> dict[str, Any]:
    """Write ``det`` as an ONNX graph to ``path`` and its sidecar to ``path + ".json"``.

    The graph takes preprocessed images (see :func:`preprocess`) and outputs ``anomaly_score``
    (higher = more anomalous), ``normality`` and ``normality_<component>`` (each task, then
    ``feature_knn`` when the model has it); the batch axis is dynamic. Both files are written
    atomically. With ``check``, the graph is checked with ``onnx.checker``. Raises
    :class:`MissingDependencyError` (one line: what to install) when ``onnx`` is missing.
    Returns the sidecar dict.
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
    outputs = ["anomaly_score", "normality", *[f"normality_{n}" for n in det.component_names]]
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
    from ..io.provenance import versions

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
            "normality": "the fused normality score: higher = more normal (= -anomaly_score; with the "
                         "paper's scoring, s(x) of eq. 3)",
            **{f"normality_{n}": describe_component(det, n) for n in det.component_names},
        },
        "output_dtype": "float64" if _float64_outputs(det) else "float32",
        "parity_rtol": PARITY_RTOL,
        "preprocessing": preprocessing_spec(det),
        "tasks": {n: {"state": t.state(), "n_views": t.n_views, "head_sizes": list(t.head_sizes),
                      "n_score_terms": t.n_score_terms} for n, t in det.tasks.items()},
        "scoring": {"task_score": det.config.task_score, "jigsaw_test_draws": det.config.jigsaw_test_draws,
                    "feature_knn": det.config.feature_knn, "weights": dict(det.fusion_weights or {}),
                    "test_mirror": det.mirrors, "pixel_knn": det.config.pixel_knn,
                    "feature_bank_size": None if det.feature_bank is None else int(det.feature_bank.shape[0]),
                    "normal_stats": None if det.normal_stats is None else det.normal_stats.summary()},
        "fusion": {"rule": det.config.score_fusion, "what": FUSION_TEXT[det.config.score_fusion]},
        "normal_percentile": _percentile_spec(det),
        "decision": det.decision,
        "config": det.config.to_dict(),
        "versions": {**versions(), "onnx": onnx.__version__},
    }
    atomic_write_bytes(path, data)
    atomic_write_json(sidecar_path(path), meta)
    return meta


def parity_error(got: Any, want: Any) -> float:
    """The largest |got − want| / max(|want|, 1): the error :data:`PARITY_RTOL` bounds (relative for
    large scores, absolute near 0, where standardised scores often lie)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    return float(np.max(np.abs(got - want) / np.maximum(np.abs(want), 1.0), initial=0.0))


def verify_onnx(det: Any, path: str | Path, images: Any) -> float:
    """Score uint8 ``images`` with onnxruntime on the exported graph at ``path`` and with ``det``;
    return the largest :func:`parity_error` over the anomaly scores and every component (needs
    ``onnxruntime``). Raises :class:`~fgad.errors.InputError` when it exceeds :data:`PARITY_RTOL`."""
    ort = require("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = ["anomaly_score", *[f"normality_{n}" for n in det.component_names]]
    got = sess.run(names, {INPUT_NAME: preprocess(images, sidecar_path(path))})
    comps = det.score_components(images)
    want = [-det.fuse_components(comps), *comps.values()]
    errors = {n: parity_error(g, w) for n, g, w in zip(names, got, want)}
    worst = max(errors, key=errors.get)
    if errors[worst] > PARITY_RTOL:
        raise InputError(f"{path}: onnxruntime's {worst} differs from PyTorch's (error {errors[worst]:.2e} > "
                         f"{PARITY_RTOL:g})")
    return errors[worst]
