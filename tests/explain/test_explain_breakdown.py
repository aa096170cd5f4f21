"""Per-task / per-transformation breakdown of the score, against per-view NumPy references."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import fgad
from fgad.io.preprocess import to_tensor
from fgad.tools.explain import breakdown, explain_image, explanation_json, format_breakdown, heatmap, render_explanation


def reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Reflect-101 index (no repeated edge pixel)."""
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i)


def geometric_view(img: np.ndarray, v: int, hc: int, r: int) -> np.ndarray:
    """C×S×S image shifted by class v (rows) and hc (columns), then rotated r quarter turns CCW."""
    s = img.shape[-1]
    t = s // 4
    sign = (0, -1, 1)
    rows = reflect(np.arange(s) - sign[v] * t, s)  # content moved down by +t: out[y] = in[y - t]
    cols = reflect(np.arange(s) - sign[hc] * t, s)
    out = img[:, rows][:, :, cols]
    return np.rot90(out, r, axes=(1, 2)).copy()


def jigsaw_view(img: np.ndarray, perm: list[int]) -> np.ndarray:
    """The test-time jigsaw view of a C×32×32 image: 3×3 cells of 10 from (1, 1), tiles 8×8 centred."""
    out = np.zeros_like(img)
    for j, src in enumerate(perm):
        sy, sx = 1 + 10 * (src // 3) + 1, 1 + 10 * (src % 3) + 1
        ty, tx = 1 + 10 * (j // 3) + 1, 1 + 10 * (j % 3) + 1
        out[:, ty : ty + 8, tx : tx + 8] = img[:, sy : sy + 8, sx : sx + 8]
    return out


@torch.inference_mode()
def head_probs(det, task: str, views: np.ndarray) -> list[np.ndarray]:
    det.net.eval()
    logits = det.net({task: torch.from_numpy(views).float()})[task].double()
    out, start = [], 0
    for size in det.tasks[task].head_sizes:
        out.append(torch.softmax(logits[:, start : start + size], 1).numpy())
        start += size
    return out


def test_task_sums_and_score_match_the_detector(paper_det, grey28):
    parts = breakdown(paper_det, grey28[:3])
    sums = paper_det.score_tasks(grey28[:3])
    for i, b in enumerate(parts):
        for name in ("geometric", "jigsaw"):
            assert b["tasks"][name]["score"] == pytest.approx(sums[name][i], abs=1e-4)
            view_sums = [v["sum"] for v in b["tasks"][name]["views"]]
            assert b["tasks"][name]["score"] == pytest.approx(sum(view_sums), abs=1e-4)
        assert b["anomaly_score"] == pytest.approx(paper_det.score(grey28[i : i + 1])[0], abs=1e-4)
        assert b["normality"] == pytest.approx(-b["anomaly_score"])
    assert parts[0]["tasks"]["geometric"]["max_score"] == 108 and parts[0]["tasks"]["jigsaw"]["max_score"] == 3


def test_geometric_table_is_vertical_by_horizontal_by_rotation(paper_det, grey28):
    b = breakdown(paper_det, grey28[:1])[0]["tasks"]["geometric"]
    table = np.array(b["table"])
    assert table.shape == (3, 3, 4) and b["table_shape"] == [3, 3, 4]
    img = to_tensor(grey28[:1, :, :, None], 32)[0].numpy()
    keys = [(v, h, r) for v in range(3) for h in range(3) for r in range(4)]
    rng = np.random.default_rng(0)
    order = rng.permutation(len(keys))  # a shuffled order: the reference does not share the view layout
    views = np.stack([geometric_view(img, *keys[i]) for i in order])
    pv, ph, pr = head_probs(paper_det, "geometric", views)
    for row, i in enumerate(order):
        v, h, r = keys[i]
        ref = pv[row, v] + ph[row, h] + pr[row, r]
        assert table[v, h, r] == pytest.approx(ref, abs=1e-5), (v, h, r)
    # the rotation head's mean over the 9 views of each rotation, and the weakest class
    for r, name in enumerate(["0 deg", "90 deg", "180 deg", "270 deg"]):
        ref = np.mean([pr[row, r] for row, i in enumerate(order) if keys[i][2] == r])
        assert b["per_class"]["rotation"][name] == pytest.approx(ref, abs=1e-5)
    weakest = b["least_recognised"]["per_head"]["rotation"]["class"]
    assert b["per_class"]["rotation"][weakest] == min(b["per_class"]["rotation"].values())
    v, h, r = np.unravel_index(np.argmin(table), table.shape)
    assert b["least_recognised"]["view"] == f"{['none', 'up', 'down'][v]}/{['none', 'left', 'right'][h]}/{r * 90} deg"


def test_jigsaw_breakdown_per_permutation(paper_det, grey28):
    b = breakdown(paper_det, grey28[1:2])[0]["tasks"]["jigsaw"]
    perms = paper_det.tasks["jigsaw"].permutations
    assert b["permutations"] == perms and len(b["views"]) == len(perms)
    img = to_tensor(grey28[1:2, :, :, None], 32)[0].numpy()
    (p,) = head_probs(paper_det, "jigsaw", np.stack([jigsaw_view(img, q) for q in perms]))
    for k, view in enumerate(b["views"]):
        assert view["p_true"][0] == pytest.approx(p[k, k], abs=1e-5)
    assert b["views"][0]["view"] == "identity"


@pytest.mark.slow
def test_explain_image_is_json_and_consistent(paper_det, grey28):
    e = explain_image(paper_det, grey28[2])  # one H×W image
    cells = np.array(e["heatmap"]["cells"])
    assert cells.shape == (3, 3) and np.isfinite(cells).all()
    np.testing.assert_allclose(cells, heatmap(paper_det, grey28[2:3])[0], atol=1e-6)
    r, c = e["heatmap"]["argmax_cell"]
    assert cells[r, c] == cells.max()
    assert e["heatmap_image"].shape == (28, 28)
    assert set(np.unique(e["heatmap_image"]).round(6)) <= set(cells.ravel().round(6))
    text = json.dumps(explanation_json(e), allow_nan=False)
    assert "heatmap_image" not in json.loads(text)
    table = format_breakdown(e)
    assert "geometric/rotation" in table and "jigsaw/permutation" in table and "anomaly score" in table
    png = render_explanation(grey28[2], e)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_model_without_jigsaw_has_no_heat_map(rotation_det, grey28):
    e = explain_image(rotation_det, grey28[0])
    assert e["heatmap"] is None and list(e["tasks"]) == ["rotation"]
    assert e["tasks"]["rotation"]["table_shape"] == [4]
    with pytest.raises(fgad.InputError, match="no jigsaw task"):
        heatmap(rotation_det, grey28[:1])
    assert render_explanation(grey28[0], e)[:4] == b"\x89PNG"


def test_bad_input_is_an_input_error(paper_det, grey28):
    with pytest.raises(fgad.InputError, match="not fitted"):
        breakdown(fgad.Detector("tiny"), grey28[:1])
    with pytest.raises(fgad.InputError, match="28x28"):
        breakdown(paper_det, np.zeros((1, 20, 20), np.uint8))
    with pytest.raises(fgad.InputError, match="channel"):
        heatmap(paper_det, np.zeros((1, 28, 28, 3), np.uint8))
    with pytest.raises(fgad.InputError):
        explain_image(paper_det, grey28[:2])  # two images
    with pytest.raises(fgad.InputError, match="uint8"):
        breakdown(paper_det, grey28[:1].astype(np.float32))
