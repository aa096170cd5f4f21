"""The jigsaw heat map points at the right cell (stub network), and the pasted-patch check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import fgad
from fgad.tools.explain import (
    boxes_overlap,
    cell_boxes,
    cell_index_map,
    heatmap,
    localisation_hit_rate,
    paste_patch,
    upsample_heatmap,
)

# Network geometry of a 28×28 image padded to 32×32 (2 px each side), 3×3 jigsaw, margin 2:
# cell (i, j) spans network rows 1 + 10 i .. 11 + 10 i; its test-time tile is the 8×8 centre.
CODES = 40 + 20 * np.arange(9)  # uint8 value of each source cell
MARK = 40  # checkerboard amplitude of the marker tile
K_CONF, K_LOW = 10.0, 0.5  # stub logit of the recognised permutation: unmarked / marked view


def coded_image(marker_cell: int | None) -> np.ndarray:
    """28×28 uint8: source cell s is flat CODES[s]; the marker cell carries a ±MARK checkerboard."""
    net = np.zeros((32, 32), np.int64)
    for s in range(9):
        i, j = divmod(s, 3)
        net[1 + 10 * i : 11 + 10 * i, 1 + 10 * j : 11 + 10 * j] = CODES[s]
    if marker_cell is not None:
        i, j = divmod(marker_cell, 3)
        yy, xx = np.mgrid[0:32, 0:32]
        checker = np.where((yy + xx) % 2 == 0, MARK, -MARK)
        block = (slice(1 + 10 * i, 11 + 10 * i), slice(1 + 10 * j, 11 + 10 * j))
        net[block] += checker[block]
    return net[2:30, 2:30].astype(np.uint8)


class MarkerStub(nn.Module):
    """Jigsaw logits: the permutation read from the tiles' codes, confident unless a tile is textured.

    Target tile j (8×8 at network (2 + 10 i, 2 + 10 j)) is read as the source cell whose code is
    nearest its mean; the matching permutation gets logit 10, or 0.5 when any tile of the view
    has a spread above half the marker amplitude (the marker is in the view).
    """

    def __init__(self, permutations: list[list[int]], n_outputs: dict[str, int]):
        super().__init__()
        self.perms = torch.tensor(permutations)
        self.n_outputs = n_outputs
        self.codes = torch.tensor(2 * CODES / 255 - 1, dtype=torch.float32)

    def forward(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = {n: torch.zeros(v.shape[0], self.n_outputs[n]) for n, v in views.items() if n != "jigsaw"}
        v = views["jigsaw"][:, 0]  # N×32×32
        tiles = torch.stack([v[:, 2 + 10 * (j // 3) : 10 + 10 * (j // 3), 2 + 10 * (j % 3) : 10 + 10 * (j % 3)]
                             for j in range(9)], 1).flatten(2)  # N×9×64
        src = (tiles.mean(-1)[..., None] - self.codes).abs().argmin(-1)  # N×9 source cell per target cell
        match = (src[:, None, :] == self.perms[None]).all(-1).float()  # N×k
        marked = tiles.std(-1).amax(-1) > (MARK / 255)  # spread in [-1, 1] units > half the amplitude
        out["jigsaw"] = match * torch.where(marked, K_LOW, K_CONF)[:, None]
        return out


def p_true(logit: float, k: int) -> float:
    return float(np.exp(logit) / (np.exp(logit) + k - 1))


@pytest.fixture()
def stub_det(jigsaw_det):
    task = jigsaw_det.tasks["jigsaw"]
    assert task.grid == (3, 3) and task.margin == 2 and jigsaw_det.config.image_size == 32
    original = jigsaw_det.net
    jigsaw_det.net = MarkerStub(task.permutations, {"jigsaw": len(task.permutations)})
    yield jigsaw_det
    jigsaw_det.net = original


@pytest.mark.parametrize("cell", [0, 4, 5, 7])
def test_heat_map_of_stub_points_at_the_marked_cell(stub_det, cell):
    k = len(stub_det.tasks["jigsaw"].permutations)
    img = coded_image(cell)
    cells = heatmap(stub_det, img[None])[0]
    expected = np.zeros(9)
    expected[cell] = p_true(K_CONF, k) - p_true(K_LOW, k)  # full recovery in every permutation view
    np.testing.assert_allclose(cells.ravel(), expected, atol=1e-5)
    assert int(np.argmax(cells)) == cell
    # painted back onto the 28×28 image: the marked block's original pixels carry the maximum
    up = upsample_heatmap(stub_det, cells)
    i, j = divmod(cell, 3)
    block = up[max(0, 10 * i - 1) : 10 * i + 9, max(0, 10 * j - 1) : 10 * j + 9]
    assert np.all(block == cells.max()) and np.sum(up == cells.max()) == block.size


def test_heat_map_of_stub_is_flat_without_a_marker(stub_det):
    assert np.abs(heatmap(stub_det, coded_image(None)[None])).max() < 1e-6


def test_cell_maps_for_padded_and_resized_images(jigsaw_det):
    boxes = cell_boxes(jigsaw_det)  # 28×28 padded by 2: network cells start at 1, 11, 21 -> -1, 9, 19
    edges = [(0, 9), (9, 19), (19, 28)]
    assert boxes.tolist() == [[edges[i][0], edges[j][0], edges[i][1], edges[j][1]] for i in range(3) for j in range(3)]
    idx = cell_index_map(jigsaw_det, (64, 64))  # resized 64 -> 32: pixel y is at network (y + 0.5) / 2 - 0.5
    net_rows = np.round((np.arange(64) + 0.5) / 2 - 0.5)
    ref_rows = np.clip((net_rows - 1) // 10, 0, 2)
    np.testing.assert_array_equal(idx, ref_rows[:, None] * 3 + ref_rows[None, :])


def test_paste_patch_from_images_and_noise():
    rng = np.random.default_rng(0)
    x = np.stack([np.full((12, 12), v, np.uint8) for v in (10, 20, 30, 40)])
    out, boxes = paste_patch(x, rng, 4)
    assert out.shape == x.shape and boxes.shape == (4, 4)
    for i, (y0, x0, y1, x1) in enumerate(boxes):
        assert 0 <= y0 < y1 <= 12 and 0 <= x0 < x1 <= 12 and y1 - y0 == 4 and x1 - x0 == 4
        inside = out[i, y0:y1, x0:x1]
        assert len(np.unique(inside)) == 1 and inside[0, 0] != x[i, 0, 0] and inside[0, 0] in (10, 20, 30, 40)
        mask = np.ones((12, 12), bool)
        mask[y0:y1, x0:x1] = False
        assert np.all(out[i][mask] == x[i][mask])
    assert np.all(x[:, 0, 0] == (10, 20, 30, 40))  # input untouched
    out, boxes = paste_patch(x[..., None], np.random.default_rng(1), 3, source="noise", location="cell")
    assert out.shape == (4, 12, 12, 1)
    for y0, x0, y1, x1 in boxes:  # centred in a cell of the default 3×3 grid of 4-pixel cells
        assert (y0 % 4, x0 % 4, y1 - y0) == (0, 0, 3)
    with pytest.raises(fgad.InputError):
        paste_patch(x[:1], rng, 3)  # no other image to cut from
    with pytest.raises(fgad.InputError):
        paste_patch(x, rng, 13)


def test_boxes_overlap_half_open():
    a = np.array([0, 0, 4, 4])
    assert boxes_overlap(a, np.array([3, 3, 5, 5]))
    assert not boxes_overlap(a, np.array([4, 0, 6, 4]))  # touching edges only
    assert boxes_overlap(a[None], np.array([[1, 1, 2, 2], [5, 5, 6, 6]])).tolist() == [True, False]


def test_hit_rate_and_chance_on_a_tiny_detector(paper_det, grey28):
    res = localisation_hit_rate(paper_det, grey28, np.random.default_rng(0), size=7, location="cell")
    assert res["n"] == 8 and 0.0 <= res["hit_rate"] <= 1.0
    assert res["chance"] == pytest.approx(1 / 9)  # a 7-px patch centred in a cell covers that cell only
    res = localisation_hit_rate(paper_det, grey28, np.random.default_rng(1), size=7, source="noise")
    assert 0.0 <= res["hit_rate"] <= 1.0
    # by hand: rows/columns split at 9 and 19; a random cell overlaps the patch with probability
    # (row cells overlapped × column cells overlapped) / 9
    def n_overlapped(a, b):
        return sum(min(b, hi) > max(a, lo) for lo, hi in ((0, 9), (9, 19), (19, 28)))
    chance = np.mean([n_overlapped(y0, y1) * n_overlapped(x0, x1) / 9 for y0, x0, y1, x1 in res["patch_boxes"]])
    assert res["chance"] == pytest.approx(chance)
    boxes = cell_boxes(paper_det)
    hits = [bool(boxes_overlap(boxes[c], np.array(b))) for c, b in zip(res["argmax_cells"], res["patch_boxes"])]
    assert res["hits"] == hits and res["hit_rate"] == pytest.approx(np.mean(hits))
