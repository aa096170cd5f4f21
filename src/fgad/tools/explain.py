"""Why an image was scored as it was: the score broken down by task and transformation, and a
coarse heat map of where the jigsaw task stopped recognising the image.

>>> from fgad.tools.explain import breakdown, heatmap, explain_image
>>> parts = breakdown(det, images)        # one JSON-able dict per image
>>> cells = heatmap(det, images)          # N×n_h×n_w jigsaw occlusion map (higher = more anomalous)
>>> info = explain_image(det, image)      # both, for one image, plus the map at image resolution

**Breakdown.** First the score as the detector computes it: every component it fuses
(:meth:`fgad.Detector.score_components`: each task under the model's ``task_score``, and the
feature component ``feature_knn`` when the model has one) with its raw value and the value the
fusion averages (standardised against normal images for ``zscore``/``rank``), the fused
``normality`` (:meth:`fgad.Detector.fuse_components`; ``anomaly_score`` = its negation: higher =
more anomalous) and the ``normal_percentile`` (:meth:`fgad.Detector.normal_percentile`: the
share of held-out normal images whose anomaly score is lower; None for a model without held-out
normal images). Then, for every task and every one of its centred test views, the softmax
probability of the view's true class on every head (the terms the paper's eq. 2/4 sums): for
``geometric`` a 3×3×4 table (vertical shift × horizontal shift × rotation) of p_vertical +
p_horizontal + p_rotation, for ``jigsaw`` p(true permutation) per permutation. Per head and
class, the mean true-class probability over the views with that class says which rotation or
shift the network recognised least. With the paper's scoring, a task's component equals the sum
of its table (:meth:`fgad.Detector.score_tasks`).

**Heat map (occlusion recovery on the jigsaw task).** For source cell c of the n_h × n_w jigsaw
grid and permutation view p (test-time tiles, centred), the tile cut from cell c — wherever p
places it — is replaced by its own mean colour (``fill="mean"``; ``"zero"`` = the mid-grey of the
gaps). With P_p the softmax probability of permutation p on view p::

    H[c] = (1/k) Σ_p ( P_p(view p with tile c flattened) − P_p(view p) )

H[c] > 0: the network recognises the permutations *better* without the detail of tile c, so that
tile is what looks unfamiliar (anomalous); H[c] < 0: the tile carries detail the network relies
on (normal-looking evidence); ≈ 0: it does not matter. The map is computed on the network's input
(after padding / resizing to ``image_size``) and painted back onto the original pixels, each pixel
taking the value of the cell its network position falls in (pixels outside the grid: the nearest
cell). The anomalous cell is the argmax.

Only the public :class:`~fgad.Detector` is used: its score (:meth:`~fgad.Detector.score_components`,
:meth:`~fgad.Detector.fuse_components`, :meth:`~fgad.Detector.normal_percentile`), its scoring pass
(:meth:`~fgad.Detector.view_logits`, :meth:`~fgad.Detector.image_batches`,
:meth:`~fgad.Detector.forward_views`), ``tasks``, ``task_terms``, ``normal_stats``, ``config`` and
``input_shape``; the arithmetic is :mod:`fgad.core.scoring`'s.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch

from ..core.scoring import FUSIONS, STANDARDISED_FUSIONS, fusion_parts, true_class_probabilities
from ..errors import InputError
from ..io.preprocess import as_image_array, check_image_shape

__all__ = ["breakdown", "heatmap", "explain_image", "explanation_json", "render_explanation", "cell_index_map",
           "cell_boxes", "upsample_heatmap", "format_breakdown", "head_names", "class_names", "paste_patch",
           "boxes_overlap", "localisation_hit_rate", "percentile_text", "HEATMAP_RULE", "PERCENTILE_RULE"]

HEATMAP_RULE = ("jigsaw occlusion recovery: H[c] = mean over permutation views of p(true permutation with the "
                "tile of cell c flattened to its mean colour) - p(true permutation); higher = the tile looks "
                "more anomalous")

#: What the normal percentile beside a raw score means (:meth:`fgad.Detector.normal_percentile`).
PERCENTILE_RULE = "share of held-out normal images that score lower"

_HEADS = {
    "geometric": ("vertical", "horizontal", "rotation"),
    "translation": ("vertical", "horizontal"),
    "rotation": ("rotation",),
    "jigsaw": ("permutation",),
    "geom72": ("transformation",),
}
_CLASSES = {
    "vertical": ("none", "up", "down"),  # shift classes 0 = none, 1 = -t, 2 = +t (+t moves content down)
    "horizontal": ("none", "left", "right"),
    "rotation": ("0 deg", "90 deg", "180 deg", "270 deg"),  # counter-clockwise quarter turns
}


def head_names(task) -> tuple[str, ...]:
    """Names of a task's softmax heads (``vertical``, ``horizontal``, ``rotation``, ``permutation``...)."""
    names = _HEADS.get(getattr(task, "name", ""))
    if names is None or len(names) != len(task.head_sizes):
        names = tuple(f"head{h}" for h in range(len(task.head_sizes)))
    return names


def class_names(task, head: int) -> list[str]:
    """Readable names of the classes of head ``head`` of ``task``."""
    hname = head_names(task)[head]
    size = task.head_sizes[head]
    if hname in _CLASSES and len(_CLASSES[hname]) == size:
        return list(_CLASSES[hname])
    if hname == "permutation":
        return ["identity" if i == 0 and list(task.permutations[0]) == sorted(task.permutations[0])
                else f"perm {i}" for i in range(size)]
    if task.name == "geom72" and size == 72:
        out = []
        for f, v, h, r in itertools.product(range(2), range(3), range(3), range(4)):
            out.append("/".join([("flip" if f else "noflip"), _CLASSES["vertical"][v], _CLASSES["horizontal"][h],
                                 _CLASSES["rotation"][r]]))
        return out
    return [str(i) for i in range(size)]


# ----------------------------------------------------------------------------------- helpers
def _check_detector(det) -> None:
    if getattr(det, "net", None) is None or getattr(det, "input_shape", None) is None:
        raise InputError("the detector is not fitted: call fit() or Detector.load() first")


def _prepare(det, images: Any, what: str = "images to explain") -> np.ndarray:
    """Validated uint8 N×H×W×C images matching the detector's input shape."""
    _check_detector(det)
    return check_image_shape(as_image_array(images, what), det.input_shape, what)


@torch.inference_mode()
def view_probabilities(det, images: Any) -> dict[str, np.ndarray]:
    """Per task, N×V×n_heads true-class softmax probabilities of every view (test-time views):
    the terms whose sums are :meth:`fgad.Detector.score_tasks` (higher = more normal)."""
    x = _prepare(det, images)
    labels = {n: t.labels() for n, t in det.tasks.items()}
    out: dict[str, list[np.ndarray]] = {n: [] for n in det.tasks}
    for logits in det.view_logits(x):
        for n, t in det.tasks.items():
            p = true_class_probabilities(logits[n], labels[n], t.head_sizes)
            out[n].append(p.cpu().numpy().astype(np.float64))
    return {n: np.concatenate(v) for n, v in out.items()}


def _is_product_table(labels: np.ndarray, sizes: tuple[int, ...]) -> bool:
    expected = np.array(list(itertools.product(*[range(s) for s in sizes])))
    return labels.shape == expected.shape and bool((labels == expected).all())


# ----------------------------------------------------------------------------------- breakdown
def breakdown(det, images: Any, *, fusion: str | None = None) -> list[dict[str, Any]]:
    """Per image, the score broken down by component, task, view and head (JSON-serialisable).

    Each dict: ``anomaly_score`` (higher = more anomalous), ``normality`` (the fused score,
    higher = more normal; with the paper's settings s(x) of eq. 3), ``normal_percentile`` (0–100:
    the share of held-out normal images with a lower anomaly score; None without held-out normal
    images or with a fusion other than the model's), ``fusion``, ``task_score``, ``components``
    (per component, in the fusion's order: ``raw``, the normality value of
    :meth:`fgad.Detector.score_components`, and ``fused``, the value the fusion averages: raw for
    ``sum``, raw / terms for ``mean``, standardised against the normal images for ``zscore`` /
    ``rank``; ``normality`` is their mean, weighted by ``weights`` when a component weighs more),
    ``mirrored`` (each component the mean over the image and its left-right mirror: ``test_mirror``;
    the per-view tables below are of the image itself) and ``tasks[name]`` with ``score`` (the
    probability sum of eq. 4 over the centred test views, the sum of the tables below),
    ``max_score`` (views × heads), ``recognised`` (score / max_score), ``heads``, ``classes``,
    ``views`` (per view: name, labels, ``p_true`` per head, their ``sum``), ``table`` (the view
    sums shaped by the head sizes when the views are their product, e.g. 3×3×4 for geometric),
    ``per_class`` (per head and class: mean true-class probability over the views of that class)
    and ``least_recognised`` (the view with the smallest sum, and per head its weakest class).
    """
    _check_detector(det)
    fusion = fusion or det.config.score_fusion
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    x = _prepare(det, images)
    comps = det.score_components(x)
    normality = det.fuse_components(comps, fusion)  # the detector's own fusion (and its checks)
    parts = fusion_parts(comps, fusion, det.task_terms, det.normal_stats)
    # The held-out normals were scored with the model's fusion: no percentile for another one.
    pct = det.normal_percentile(-normality) if fusion == det.config.score_fusion else None
    probs = view_probabilities(det, x)
    static = {n: _task_static(t) for n, t in det.tasks.items()}
    out = []
    for i in range(len(x)):
        tasks = {n: _task_breakdown(t, static[n], probs[n][i]) for n, t in det.tasks.items()}
        components = {n: {"raw": float(comps[n][i]), "fused": float(parts[n][i])} for n in comps}
        out.append({"anomaly_score": float(-normality[i]), "normality": float(normality[i]),
                    "normal_percentile": None if pct is None else float(pct[i]), "fusion": fusion,
                    "task_score": det.config.task_score, "components": components,
                    "weights": dict(det.fusion_weights or {}), "mirrored": bool(det.mirrors), "tasks": tasks})
    return out


def _task_static(task) -> dict[str, Any]:
    labels = task.labels().cpu().numpy()
    heads = head_names(task)
    classes = {h: class_names(task, j) for j, h in enumerate(heads)}
    view_names = ["/".join(classes[heads[j]][labels[v, j]] for j in range(len(heads))) for v in range(len(labels))]
    return {"labels": labels, "heads": heads, "classes": classes, "view_names": view_names,
            "product": _is_product_table(labels, tuple(task.head_sizes))}


def _task_breakdown(task, st: dict[str, Any], p: np.ndarray) -> dict[str, Any]:
    """p: V×n_heads true-class probabilities of one image."""
    labels, heads, classes = st["labels"], st["heads"], st["classes"]
    view_sums = p.sum(1)
    score = float(view_sums.sum())
    max_score = int(p.size)
    views = [{"view": st["view_names"][v], "labels": [int(c) for c in labels[v]],
              "p_true": [round(float(q), 6) for q in p[v]], "sum": round(float(view_sums[v]), 6)}
             for v in range(len(labels))]
    per_class: dict[str, dict[str, float]] = {}
    weakest: dict[str, dict[str, Any]] = {}
    for j, h in enumerate(heads):
        means = {}
        for c, cname in enumerate(classes[h]):
            sel = labels[:, j] == c
            if sel.any():
                means[cname] = round(float(p[sel, j].mean()), 6)
        per_class[h] = means
        worst = min(means, key=means.get)
        weakest[h] = {"class": worst, "mean_p_true": means[worst], "chance": round(1.0 / task.head_sizes[j], 6)}
    v_min = int(np.argmin(view_sums))
    entry: dict[str, Any] = {
        "score": round(score, 6), "max_score": max_score, "recognised": round(score / max_score, 6),
        "heads": list(heads), "head_sizes": [int(s) for s in task.head_sizes],
        "classes": {h: list(c) for h, c in classes.items()}, "views": views,
        "per_class": per_class,
        "least_recognised": {"view": st["view_names"][v_min], "view_index": v_min,
                             "sum": round(float(view_sums[v_min]), 6), "of": len(heads), "per_head": weakest},
    }
    if st["product"]:
        entry["table_shape"] = [int(s) for s in task.head_sizes]
        entry["table"] = np.round(view_sums.reshape(task.head_sizes), 6).tolist()
    if hasattr(task, "permutations"):
        entry["permutations"] = [list(map(int, q)) for q in task.permutations]
    return entry


def percentile_text(b: dict[str, Any]) -> str:
    """The readable companion of the raw score: the normal percentile with its meaning, or why
    there is none."""
    pct = b.get("normal_percentile")
    if pct is None:
        return "no normal percentile (the model has no held-out normal images, or another fusion)"
    return f"normal percentile {pct:.1f}: {PERCENTILE_RULE}"


def _fused_label(fusion: str) -> str:
    return {"sum": "as is", "mean": "raw / terms", "zscore": "z-score vs normals",
            "rank": "rank vs normals"}.get(fusion, fusion)


def _mean_text(weights: dict[str, float] | None) -> str:
    if not weights:
        return "mean"
    return "weighted mean (" + ", ".join(f"{n} x {w:g}" for n, w in weights.items()) + ", others x 1)"


def format_breakdown(b: dict[str, Any]) -> str:
    """A compact text table of one image's :func:`breakdown`."""
    lines = [f"anomaly score {b['anomaly_score']:.4f} (higher = more anomalous); {percentile_text(b)}",
             f"normality {b['normality']:.4f} = {_mean_text(b.get('weights'))} of the fused components "
             f"(fusion {b['fusion']}, task score {b.get('task_score', 'prob')})",
             f"{'component':<12} {'raw':>14} {'fused (' + _fused_label(b['fusion']) + ')':>26}"]
    for n, c in b.get("components", {}).items():
        lines.append(f"{n:<12} {c['raw']:>14.4f} {c['fused']:>26.4f}")
    lines.append(f"{'task':<12} {'p sum':>9} {'max':>5} {'recognised':>10}  least recognised view")
    for n, t in b["tasks"].items():
        lr = t["least_recognised"]
        lines.append(f"{n:<12} {t['score']:>9.3f} {t['max_score']:>5d} {t['recognised']:>10.3f}  "
                     f"{lr['view']} ({lr['sum']:.3f} of {lr['of']})")
    lines.append(f"{'head':<24} mean p(true class) per class  [weakest]")
    for n, t in b["tasks"].items():
        for h, means in t["per_class"].items():
            cells = "  ".join(f"{c} {v:.3f}" for c, v in means.items())
            lines.append(f"{n + '/' + h:<24} {cells}  [{t['least_recognised']['per_head'][h]['class']}]")
    return "\n".join(lines)


def _components_title(b: dict[str, Any]) -> str:
    """The bar chart's title: each component's raw value and, when the fusion changes it, the value fused."""
    comps = b.get("components")
    if not comps:  # an explanation written before the components existed
        return ", ".join(f"{n} {t['score']:.2f}/{t['max_score']}" for n, t in b["tasks"].items())
    fusion = b["fusion"]
    parts = []
    for n, c in comps.items():
        text = f"{n} {c['raw']:.4g}"
        if n in b["tasks"] and b.get("task_score", "prob") == "prob":
            text += f"/{b['tasks'][n]['max_score']}"
        if fusion in STANDARDISED_FUSIONS:
            text += f" (z {c['fused']:+.2f})" if fusion == "zscore" else f" (rank {c['fused']:.2f})"
        elif fusion == "mean":
            text += f" ({c['fused']:.3f}/term)"
        parts.append(text)
    return (", " if len(parts) <= 2 else "\n").join(parts)


# ----------------------------------------------------------------------------------- heat map
def _jigsaw(det):
    _check_detector(det)
    task = det.tasks.get("jigsaw")
    if task is None:
        raise InputError(f"the model has no jigsaw task (tasks: {', '.join(det.tasks)}): no jigsaw heat map")
    return task


def _occluded_views(task, xb: torch.Tensor, fill: str) -> torch.Tensor:
    """B×(1 + n_cells)×k×C×S×S: the k test views, then per source cell the k views with its tile flattened."""
    base = task.views(xb, train=False)  # B×k×C×S×S
    b, k = base.shape[:2]
    s_side = xb.shape[-1]
    rows0, cols0, th, tw = task.geometry(xb.shape[-2], s_side)
    nh, nw = task.grid
    centre = task.margin // 2
    n_cells = nh * nw
    occ = base.unsqueeze(1).repeat(1, n_cells, 1, 1, 1, 1)  # B×cells×k×C×S×S
    for src in range(n_cells):
        for p, perm in enumerate(task.permutations):
            j = perm.index(src)  # target cell where permutation p puts the tile of source cell src
            y0, x0 = rows0[j // nw] + centre, cols0[j % nw] + centre
            region = occ[:, src, p, :, y0 : y0 + th, x0 : x0 + tw]
            value = region.mean(dim=(-2, -1), keepdim=True) if fill == "mean" else torch.zeros_like(region[..., :1, :1])
            occ[:, src, p, :, y0 : y0 + th, x0 : x0 + tw] = value.expand_as(region)
    return torch.cat([base.unsqueeze(1), occ], 1)


@torch.inference_mode()
def heatmap(det, images: Any, *, fill: str = "mean") -> np.ndarray:
    """Jigsaw occlusion-recovery map, N×n_h×n_w (see the module docstring for the rule).

    Higher = the cell's tile looks more anomalous: hiding it raises the network's confidence in
    the true permutations. Raises :class:`~fgad.InputError` for a model without a jigsaw task.
    """
    if fill not in ("mean", "zero"):
        raise InputError(f"fill must be 'mean' or 'zero', got {fill!r}")
    task = _jigsaw(det)
    x = _prepare(det, images)
    device = det.device
    nh, nw = task.grid
    k = len(task.permutations)
    labels = task.labels()
    out = []
    for xb, n_real in det.image_batches(x):
        views = _occluded_views(task, xb[:n_real], fill)  # B×(1+cells)×k×C×S×S
        b = views.shape[0]
        logits = det.forward_views({"jigsaw": views.flatten(0, 2)}, device)["jigsaw"]
        p = true_class_probabilities(logits.view(b * (1 + nh * nw), k, -1), labels, task.head_sizes)[..., 0]
        p = p.view(b, 1 + nh * nw, k)
        heat = (p[:, 1:] - p[:, :1]).mean(-1)  # B×cells
        out.append(heat.view(b, nh, nw).cpu().numpy().astype(np.float64))
    return np.concatenate(out)


def _axis_cells(n_px: int, side: int, origin: int, cell: int, n_cells: int, mode: str, top: int) -> np.ndarray:
    """Cell index (along one axis) of each of the n_px original pixels."""
    pos = np.arange(n_px, dtype=np.float64)
    if mode == "resize":
        net = (pos + 0.5) * side / n_px - 0.5
    else:
        net = pos + top
    return np.clip(np.floor((np.round(net) - origin) / cell), 0, n_cells - 1).astype(np.int64)


def _axis_maps(det, task, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    size = det.config.image_size
    if size is None:
        mode, side_h, side_w, top, left = "none", h, w, 0, 0
    elif h > size or w > size:
        mode, side_h, side_w, top, left = "resize", size, size, 0, 0
    else:
        mode, side_h, side_w = "pad", size, size
        top, left = (size - h) // 2, (size - w) // 2
    rows0, cols0, _, _ = task.geometry(side_h, side_w)
    nh, nw = task.grid
    ch, cw = side_h // nh, side_w // nw
    ry = _axis_cells(h, side_h, rows0[0], ch, nh, mode, top)
    rx = _axis_cells(w, side_w, cols0[0], cw, nw, mode, left)
    return ry, rx


def cell_index_map(det, shape: tuple[int, int] | None = None) -> np.ndarray:
    """H×W map of original image pixels to jigsaw cell index (row-major, n_w per row)."""
    task = _jigsaw(det)
    h, w = shape or det.input_shape[:2]
    ry, rx = _axis_maps(det, task, h, w)
    return ry[:, None] * task.grid[1] + rx[None, :]


def cell_boxes(det, shape: tuple[int, int] | None = None) -> np.ndarray:
    """n_cells×4 int boxes (y0, x0, y1, x1), half-open, in original pixels: where each cell is painted."""
    task = _jigsaw(det)
    h, w = shape or det.input_shape[:2]
    ry, rx = _axis_maps(det, task, h, w)
    nh, nw = task.grid
    boxes = np.zeros((nh * nw, 4), dtype=np.int64)
    for i in range(nh):
        ys = np.flatnonzero(ry == i)
        for j in range(nw):
            xs = np.flatnonzero(rx == j)
            if ys.size and xs.size:
                boxes[i * nw + j] = (ys[0], xs[0], ys[-1] + 1, xs[-1] + 1)
    return boxes


def upsample_heatmap(det, cells: np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """n_h×n_w (or N×n_h×n_w) cell values painted onto the original H×W pixels."""
    index = cell_index_map(det, shape)
    cells = np.asarray(cells)
    flat = cells.reshape(*cells.shape[:-2], -1)
    return flat[..., index]


def explain_image(det, image: Any, *, fill: str = "mean", fusion: str | None = None) -> dict[str, Any]:
    """Breakdown and (with a jigsaw task) heat map of ONE image (H×W, H×W×C or 1×H×W×C).

    Returns the :func:`breakdown` dict plus ``heatmap`` (``None`` without a jigsaw task):
    ``cells`` (n_h×n_w, higher = more anomalous), ``argmax_cell`` [row, col], ``cell_boxes``
    (y0, x0, y1, x1 in image pixels) and ``rule``; ``heatmap_image`` is the H×W float array
    (not JSON: pop it before serialising, or use ``explanation_json``).
    """
    arr = image
    if isinstance(arr, torch.Tensor):
        arr = arr.detach().cpu().numpy()
    arr = np.asarray(arr)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3)):
        arr = arr[None]
    elif not (arr.ndim == 4 and arr.shape[0] == 1):
        raise InputError(f"explain_image: expected one image H×W or H×W×C, got an array of shape {arr.shape}")
    out = breakdown(det, arr, fusion=fusion)[0]
    out["heatmap"] = None
    out["heatmap_image"] = None
    if "jigsaw" in det.tasks:
        cells = heatmap(det, arr, fill=fill)[0]
        nw = cells.shape[1]
        best = int(np.argmax(cells))
        out["heatmap"] = {"cells": np.round(cells, 6).tolist(), "argmax_cell": [best // nw, best % nw],
                          "cell_boxes": cell_boxes(det).tolist(), "fill": fill, "rule": HEATMAP_RULE}
        out["heatmap_image"] = upsample_heatmap(det, cells)
    return out


def explanation_json(expl: dict[str, Any]) -> dict[str, Any]:
    """The JSON-serialisable part of :func:`explain_image`'s result."""
    return {k: v for k, v in expl.items() if k != "heatmap_image"}


# ----------------------------------------------------------------------------------- figure
def render_explanation(image: np.ndarray, expl: dict[str, Any], *, title: str | None = None) -> bytes:
    """PNG bytes: the image, the heat-map overlay, and a bar chart of the per-head breakdown.

    The title holds the raw anomaly score (or ``title``) and beside it the normal percentile (the
    share of held-out normal images that score lower, :func:`percentile_text`); the bar chart's
    title each component's raw and fused value. Drawn off-screen (matplotlib Agg canvas; no
    pyplot state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    img = np.asarray(image)
    if img.ndim == 4:
        img = img[0]
    grey = img.ndim == 2 or img.shape[-1] == 1
    shown = img.reshape(img.shape[0], img.shape[1]) if grey else img
    bars = []  # (label, mean p(true class), chance, colour index of the head)
    head_no = 0
    for n, t in expl["tasks"].items():
        for j, (h, means) in enumerate(t["per_class"].items()):
            bars += [(f"{n} {h}: {c}", v, 1.0 / t["head_sizes"][j], head_no) for c, v in means.items()]
            head_no += 1
    fig = Figure(figsize=(12.5, max(4.2, 0.22 * len(bars) + 1.2)), dpi=100)
    FigureCanvasAgg(fig)
    ax_img, ax_map, ax_bar = fig.add_subplot(1, 3, 1), fig.add_subplot(1, 3, 2), fig.add_subplot(1, 3, 3)
    kw = {"cmap": "gray", "vmin": 0, "vmax": 255} if grey else {}
    ax_img.imshow(shown, interpolation="nearest", **kw)
    ax_img.set_title("image", fontsize=10)
    ax_img.set_axis_off()
    ax_map.imshow(shown, interpolation="nearest", **kw)
    ax_map.set_axis_off()
    hm = expl.get("heatmap")
    if hm is not None and expl.get("heatmap_image") is not None:
        himg = np.asarray(expl["heatmap_image"], dtype=np.float64)
        lim = float(np.abs(himg).max()) or 1e-6
        im = ax_map.imshow(himg, cmap="coolwarm", vmin=-lim, vmax=lim, alpha=0.55, interpolation="nearest")
        fig.colorbar(im, ax=ax_map, fraction=0.046, pad=0.04, label="confidence gain when tile hidden")
        boxes = np.asarray(hm["cell_boxes"])
        nw = len(hm["cells"][0])
        r, c = hm["argmax_cell"]
        for b, (y0, x0, y1, x1) in enumerate(boxes):
            best = b == r * nw + c
            ax_map.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                       edgecolor="yellow" if best else "white",
                                       linewidth=2.0 if best else 0.5, linestyle="-" if best else ":"))
        ax_map.set_title("jigsaw heat map (red = tile looks anomalous)", fontsize=10)
    else:
        ax_map.set_title("no jigsaw task: no heat map", fontsize=10)
    ys = np.arange(len(bars))
    ax_bar.barh(ys, [b[1] for b in bars], color=[f"C{b[3] % 10}" for b in bars])
    ax_bar.scatter([b[2] for b in bars], ys, marker="|", color="black", s=60, label="chance", zorder=3)
    ax_bar.set_yticks(ys)
    ax_bar.set_yticklabels([b[0] for b in bars], fontsize=7)
    ax_bar.invert_yaxis()
    ax_bar.set_xlim(0, 1)
    ax_bar.set_xlabel("mean p(true class) over the views", fontsize=9)
    ax_bar.set_title(_components_title(expl), fontsize=8, wrap=True)
    ax_bar.legend(loc="lower right", fontsize=7)
    head = title or f"anomaly score {expl['anomaly_score']:.3f} (higher = more anomalous)"
    fig.suptitle(f"{head}\n{percentile_text(expl)}", fontsize=11)
    fig.tight_layout()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# ----------------------------------------------------------------------------------- synthetic local anomalies
def paste_patch(images: Any, rng: np.random.Generator, size: int, *, source: str = "image",
                location: str = "random", cells: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Paste one square patch of side ``size`` into each image: a synthetic local anomaly.

    Args:
        images: uint8 N×H×W or N×H×W×C (not modified).
        rng: a NumPy ``Generator``: every draw comes from it.
        size: patch side in pixels.
        source: ``"image"`` — the patch is cut from another image of the set (of 8 random
            locations there, the one with the largest pixel spread, so it is not blank background);
            ``"noise"`` — uniform random pixels.
        location: ``"random"`` — anywhere inside the image; ``"cell"`` — centred in a random cell
            of ``cells`` (n×4 boxes y0, x0, y1, x1, e.g. :func:`cell_boxes`; default a 3×3 grid).

    Returns:
        (images with the patches, N×4 int boxes ``(y0, x0, y1, x1)``, half-open, of each patch).
    """
    x = as_image_array(images, "images to paste into")
    squeeze = np.asarray(images).ndim == 3
    n, h, w, c = x.shape
    size = int(size)
    if not 1 <= size <= min(h, w):
        raise InputError(f"patch size must be between 1 and {min(h, w)} pixels, got {size}")
    if source not in ("image", "noise"):
        raise InputError(f"source must be 'image' or 'noise', got {source!r}")
    if location not in ("random", "cell"):
        raise InputError(f"location must be 'random' or 'cell', got {location!r}")
    if source == "image" and n < 2:
        raise InputError("source='image' needs at least 2 images (the patch comes from another one)")
    if location == "cell":
        if cells is None:
            ys, xs = np.linspace(0, h, 4).astype(int), np.linspace(0, w, 4).astype(int)
            cells = np.array([(ys[i], xs[j], ys[i + 1], xs[j + 1]) for i in range(3) for j in range(3)])
        cells = np.asarray(cells, dtype=np.int64)
    out = x.copy()
    boxes = np.zeros((n, 4), dtype=np.int64)
    for i in range(n):
        if source == "noise":
            patch = rng.integers(0, 256, (size, size, c), dtype=np.uint8)
        else:
            j = int(rng.integers(0, n - 1))
            j += j >= i  # any image but this one
            cand = [(int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))) for _ in range(8)]
            patches = [x[j, y : y + size, q : q + size] for y, q in cand]
            patch = patches[int(np.argmax([p.astype(np.float64).std() for p in patches]))]
        if location == "random":
            y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
        else:
            cy0, cx0, cy1, cx1 = cells[int(rng.integers(0, len(cells)))]
            y0 = int(np.clip((cy0 + cy1 - size) // 2, 0, h - size))
            x0 = int(np.clip((cx0 + cx1 - size) // 2, 0, w - size))
        out[i, y0 : y0 + size, x0 : x0 + size] = patch
        boxes[i] = (y0, x0, y0 + size, x0 + size)
    return (out[..., 0] if squeeze else out), boxes


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether half-open boxes (y0, x0, y1, x1) share at least one pixel (broadcasting)."""
    a, b = np.asarray(a), np.asarray(b)
    return ((np.minimum(a[..., 2], b[..., 2]) > np.maximum(a[..., 0], b[..., 0]))
            & (np.minimum(a[..., 3], b[..., 3]) > np.maximum(a[..., 1], b[..., 1])))


def localisation_hit_rate(det, images: Any, rng: np.random.Generator, *, size: int | None = None,
                          source: str = "image", location: str = "random", fill: str = "mean") -> dict[str, Any]:
    """How often the jigsaw heat map points at a pasted patch.

    Pastes one patch per image (:func:`paste_patch`; ``size`` default a quarter of the shorter
    side), computes :func:`heatmap`, and counts a hit when the box of the argmax cell
    (:func:`cell_boxes`) overlaps the patch box. ``chance`` is the hit rate of a cell drawn
    uniformly at random: the mean over images of (cells overlapping the patch) / (cells).

    Returns ``{"hit_rate", "chance", "n", "hits", "patch_boxes", "argmax_cells"}``.
    """
    x = _prepare(det, images, "images for the localisation check")
    h, w = x.shape[1:3]
    size = int(size) if size is not None else max(1, min(h, w) // 4)
    boxes_c = cell_boxes(det, (h, w))
    pasted, patch = paste_patch(x, rng, size, source=source, location=location, cells=boxes_c)
    cells = heatmap(det, pasted, fill=fill)
    best = cells.reshape(len(x), -1).argmax(1)
    hits = boxes_overlap(boxes_c[best], patch)
    overlap = boxes_overlap(boxes_c[None, :, :], patch[:, None, :])  # N×cells
    return {"hit_rate": float(hits.mean()), "chance": float(overlap.mean()), "n": int(len(x)),
            "hits": hits.tolist(), "patch_boxes": patch.tolist(), "argmax_cells": best.tolist()}
