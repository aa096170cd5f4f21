"""Pretext tasks vs slow per-image NumPy references written here from the task definitions.

The references loop over images and views and use only np.pad(mode="reflect") + slicing for
shifts, np.rot90 for rotations, np.fliplr for the flip and explicit tile copies for the jigsaw.
Images are handled channel-last (H×W×C) inside the references, so np.fliplr / np.rot90 act on
the spatial axes exactly as documented for NumPy.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from fgad.errors import ConfigError, InputError
from fgad.tasks import (
    Geom72Task,
    GeometricTask,
    JigsawTask,
    RotationTask,
    TranslationTask,
    build_task,
    choose_permutations,
    list_tasks,
)


# ------------------------------------------------------------------------------ references
def ref_shift_amount(side: int) -> int:
    return max(1, int(round(side * 0.25)))


def ref_shift(img: np.ndarray, vclass: int, hclass: int) -> np.ndarray:
    """img H×W×C. Class 0 = none, 1 = −t, 2 = +t; +t moves content down / right by t."""
    h, w = img.shape[:2]
    tv, th = ref_shift_amount(h), ref_shift_amount(w)
    dy = {0: 0, 1: -tv, 2: tv}[vclass]
    dx = {0: 0, 1: -th, 2: th}[hclass]
    padded = np.pad(img, ((tv, tv), (th, th), (0, 0)), mode="reflect")
    # out[i, j] = img[i - dy, j - dx] = padded[i - dy + tv, j - dx + th]
    return padded[tv - dy : tv - dy + h, th - dx : th - dx + w, :].copy()


def ref_geometric(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """B×C×H×W → (B×36×C×H×W views, 36×3 labels), v = (vertical*3 + horizontal)*4 + rotation."""
    b = x.shape[0]
    out = np.zeros((b, 36) + x.shape[1:], x.dtype)
    labels = np.zeros((36, 3), np.int64)
    for i in range(b):
        img = x[i].transpose(1, 2, 0)
        for vert in range(3):
            for hor in range(3):
                for rot in range(4):
                    v = (vert * 3 + hor) * 4 + rot
                    view = np.rot90(ref_shift(img, vert, hor), rot)
                    out[i, v] = view.transpose(2, 0, 1)
                    labels[v] = (vert, hor, rot)
    return out, labels


def ref_rotation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = x.shape[0]
    out = np.zeros((b, 4) + x.shape[1:], x.dtype)
    for i in range(b):
        for rot in range(4):
            out[i, rot] = np.rot90(x[i].transpose(1, 2, 0), rot).transpose(2, 0, 1)
    return out, np.arange(4)[:, None]


def ref_translation(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = x.shape[0]
    out = np.zeros((b, 9) + x.shape[1:], x.dtype)
    labels = np.zeros((9, 2), np.int64)
    for i in range(b):
        for vert in range(3):
            for hor in range(3):
                out[i, vert * 3 + hor] = ref_shift(x[i].transpose(1, 2, 0), vert, hor).transpose(2, 0, 1)
                labels[vert * 3 + hor] = (vert, hor)
    return out, labels


def ref_geom72(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = x.shape[0]
    out = np.zeros((b, 72) + x.shape[1:], x.dtype)
    for i in range(b):
        img = x[i].transpose(1, 2, 0)
        for flip in range(2):
            src = np.fliplr(img) if flip else img
            for vert in range(3):
                for hor in range(3):
                    for rot in range(4):
                        v = ((flip * 3 + vert) * 3 + hor) * 4 + rot
                        out[i, v] = np.rot90(ref_shift(src, vert, hor), rot).transpose(2, 0, 1)
    return out, np.arange(72)[:, None]


def ref_jigsaw(x: np.ndarray, perms, offsets: np.ndarray, margin: int, grid=(3, 3)) -> np.ndarray:
    """Tiles cut at ``offsets[b, source_cell]`` in their cell, copied to the permuted cells at margin//2."""
    b, c, h, w = x.shape
    nh, nw = grid
    ch, cw = h // nh, w // nw
    th, tw = ch - margin, cw - margin
    oy, ox = (h - nh * ch) // 2, (w - nw * cw) // 2
    out = np.zeros((b, len(perms), c, h, w), x.dtype)
    for i in range(b):
        for p, perm in enumerate(perms):
            for target in range(nh * nw):
                source = perm[target]
                sr, sc = divmod(source, nw)
                tr, tc = divmod(target, nw)
                y_src = oy + sr * ch + int(offsets[i, source, 0])
                x_src = ox + sc * cw + int(offsets[i, source, 1])
                y_dst = oy + tr * ch + margin // 2
                x_dst = ox + tc * cw + margin // 2
                for r in range(th):  # explicit row-by-row tile copy
                    out[i, p, :, y_dst + r, x_dst : x_dst + tw] = x[i, :, y_src + r, x_src : x_src + tw]
    return out


def rand_images(b: int, c: int, h: int, w: int | None = None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, (b, c, h, w or h)).astype(np.float32)


def assert_views_equal(got: torch.Tensor, want: np.ndarray) -> None:
    got = got.numpy()
    assert got.shape == want.shape
    for i in range(want.shape[0]):
        for v in range(want.shape[1]):
            np.testing.assert_array_equal(got[i, v], want[i, v], err_msg=f"image {i}, view {v}")


def assert_labels_equal(task, want: np.ndarray) -> None:
    got = task.labels().numpy()
    assert got.dtype == np.int64
    assert got.shape == want.shape
    for v in range(want.shape[0]):
        np.testing.assert_array_equal(got[v], want[v], err_msg=f"label of view {v}")


# ------------------------------------------------------------------------------ geometric family
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("side", [32, 16, 24])
def test_geometric_matches_reference(c, side):
    x = rand_images(3, c, side, seed=side + c)
    want, labels = ref_geometric(x)
    task = GeometricTask()
    assert task.head_sizes == (3, 3, 4)
    assert task.n_views == 36 and task.n_outputs == 10 and task.n_score_terms == 108
    assert_views_equal(task.views(torch.from_numpy(x)), want)
    assert_labels_equal(task, labels)


@pytest.mark.parametrize("c", [1, 3])
def test_rotation_matches_reference(c):
    x = rand_images(3, c, 32, seed=c)
    want, labels = ref_rotation(x)
    task = build_task("rotation")
    assert task.head_sizes == (4,)
    assert_views_equal(task.views(torch.from_numpy(x)), want)
    assert_labels_equal(task, labels)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("hw", [(32, 32), (16, 16), (28, 33), (33, 28)])
def test_translation_matches_reference(c, hw):
    x = rand_images(3, c, *hw, seed=hw[0] + c)
    want, labels = ref_translation(x)
    task = TranslationTask()
    assert task.head_sizes == (3, 3)
    assert_views_equal(task.views(torch.from_numpy(x)), want)
    assert_labels_equal(task, labels)


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("side", [32, 24])
def test_geom72_matches_reference(c, side):
    x = rand_images(3, c, side, seed=7 * side + c)
    want, labels = ref_geom72(x)
    task = Geom72Task()
    assert task.head_sizes == (72,) and task.n_views == 72
    assert_views_equal(task.views(torch.from_numpy(x)), want)
    assert_labels_equal(task, labels)


def test_shift_semantics_by_hand():
    """Class 2 moves content down (vertical) / right (horizontal) by t = side/4; class 1 up / left."""
    x = rand_images(1, 1, 32, seed=3)
    v = TranslationTask().views(torch.from_numpy(x)).numpy()[0, :, 0]  # 9×H×W
    img, t = x[0, 0], 8
    np.testing.assert_array_equal(v[0], img)  # (0, 0): no shift
    np.testing.assert_array_equal(v[2 * 3 + 0][t:, :], img[:-t, :])  # down by t
    np.testing.assert_array_equal(v[1 * 3 + 0][:-t, :], img[t:, :])  # up by t
    np.testing.assert_array_equal(v[0 * 3 + 2][:, t:], img[:, :-t])  # right by t
    np.testing.assert_array_equal(v[0 * 3 + 1][:, :-t], img[:, t:])  # left by t
    # Reflection without repeating the edge: the row above the old first row is old row 1.
    np.testing.assert_array_equal(v[2 * 3 + 0][t - 1], img[1])
    np.testing.assert_array_equal(v[2 * 3 + 0][0], img[t])


def test_rotation_is_counter_clockwise():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 0, 3] = 1.0  # top-right corner
    v = RotationTask().views(torch.from_numpy(x)).numpy()[0, :, 0]
    assert v[1][0, 0] == 1.0  # one quarter turn counter-clockwise: top-right -> top-left
    assert v[2][3, 0] == 1.0
    assert v[3][3, 3] == 1.0


def test_geometric_tasks_refuse_non_square_or_tiny_images():
    with pytest.raises(InputError, match="square"):
        GeometricTask().views(torch.zeros(1, 1, 28, 33))
    with pytest.raises(InputError, match="square"):
        RotationTask().views(torch.zeros(1, 1, 16, 12))


def test_shift_fraction_is_used():
    x = rand_images(2, 1, 32, seed=4)
    a = TranslationTask(shift_fraction=0.25).views(torch.from_numpy(x))
    b = TranslationTask(shift_fraction=0.125).views(torch.from_numpy(x))
    assert not torch.equal(a, b)
    assert torch.equal(a[:, 0], b[:, 0])  # the unshifted view does not depend on it
    assert TranslationTask(shift_fraction=0.125).state() == {"shift_fraction": 0.125}


# ------------------------------------------------------------------------------ jigsaw
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("hw,margin", [((32, 32), 2), ((16, 16), 2), ((24, 24), 4), ((28, 28), 2),
                                       ((33, 33), 3), ((28, 33), 2), ((33, 28), 1)])
def test_jigsaw_random_offsets_match_reference(c, hw, margin):
    task = JigsawTask(k=3, margin=margin, seed=5)
    x = rand_images(3, c, *hw, seed=hw[0] * hw[1] + c)
    rng = np.random.default_rng(hw[1] + margin)
    offsets = rng.integers(0, margin + 1, (3, 9, 2))
    want = ref_jigsaw(x, task.permutations, offsets, margin)
    got = task.views(torch.from_numpy(x), offsets=torch.from_numpy(offsets))
    assert_views_equal(got, want)
    assert_labels_equal(task, np.arange(3)[:, None])


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("side", [32, 28, 33])
def test_jigsaw_test_mode_uses_centred_offsets(c, side):
    task = JigsawTask(k=3, margin=2, seed=0)
    x = rand_images(3, c, side, seed=side)
    offsets = np.full((3, 9, 2), 1)  # margin // 2
    want = ref_jigsaw(x, task.permutations, offsets, 2)
    assert_views_equal(task.views(torch.from_numpy(x), train=False), want)


def test_jigsaw_train_mode_offsets_are_random_and_in_range():
    task = JigsawTask(k=3, margin=2, seed=0)
    x = rand_images(3, 1, 32, seed=9)
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    offsets = task.draw_offsets(3, True, g1)
    assert offsets.shape == (3, 9, 2)
    assert offsets.min() >= 0 and offsets.max() <= 2
    assert len(torch.unique(offsets)) == 3  # 54 draws of 0..2: all three values appear
    got = task.views(torch.from_numpy(x), train=True, generator=g2)
    assert_views_equal(got, ref_jigsaw(x, task.permutations, offsets.numpy(), 2))


def test_jigsaw_other_grid_and_explicit_permutations():
    perms = [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [1, 2, 0, 4, 5, 3], [3, 5, 4, 0, 2, 1]]
    task = JigsawTask(grid=(2, 3), k=4, margin=2, permutations=perms)
    x = rand_images(3, 3, 26, 33, seed=12)
    offsets = np.random.default_rng(0).integers(0, 3, (3, 6, 2))
    want = ref_jigsaw(x, perms, offsets, 2, grid=(2, 3))
    assert_views_equal(task.views(torch.from_numpy(x), offsets=torch.from_numpy(offsets)), want)
    assert task.head_sizes == (4,)


def test_jigsaw_identity_view_with_zero_margin_is_the_image():
    task = JigsawTask(k=3, margin=0, seed=0)
    x = rand_images(2, 3, 33, seed=13)  # 33 = 3 × 11: no border
    views = task.views(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(views[:, 0], x)


def test_jigsaw_gaps_are_zero():
    task = JigsawTask(k=3, margin=2, seed=0)
    x = np.ones((1, 1, 32, 32), np.float32)  # cells of 10, border of 1 row/column at the top/left
    views = task.views(torch.from_numpy(x)).numpy()[0, :, 0]
    for v in views:
        assert v.sum() == 9 * 8 * 8  # nine 8×8 tiles of ones, zeros elsewhere
        assert (v[0] == 0).all() and (v[:, 0] == 0).all() and (v[1] == 0).all()
        assert v[2, 2] == 1


def test_jigsaw_refuses_too_small_images():
    with pytest.raises(InputError):
        JigsawTask(margin=2).views(torch.zeros(1, 1, 8, 8))  # cells of 2, tiles of 0


def test_jigsaw_state_rebuilds_the_same_task():
    task = JigsawTask(k=4, margin=3, seed=21)
    again = build_task("jigsaw", **task.state())
    assert again.permutations == task.permutations and again.margin == 3
    x = torch.from_numpy(rand_images(2, 1, 32, seed=1))
    assert torch.equal(again.views(x), task.views(x))


# ------------------------------------------------------------------------------ permutations
@pytest.mark.parametrize("seed", [0, 1, 2, 7])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_choose_permutations(seed, k):
    perms = choose_permutations(9, k, seed)
    assert perms == choose_permutations(9, k, seed)  # deterministic per seed
    assert perms[0] == list(range(9))  # identity first
    assert len(perms) == k
    assert all(sorted(p) == list(range(9)) for p in perms)
    assert len({tuple(p) for p in perms}) == k
    if k == 3:
        for a, b in itertools.combinations(perms, 2):
            assert all(u != v for u, v in zip(a, b)), (a, b)


def test_choose_permutations_depends_on_seed():
    assert len({tuple(map(tuple, choose_permutations(9, 3, s))) for s in range(5)}) > 1


def test_choose_permutations_refuses_impossible_requests():
    with pytest.raises(ConfigError):
        choose_permutations(9, 1, 0)
    with pytest.raises(ConfigError):
        choose_permutations(2, 3, 0)  # only 2 permutations of 2 cells exist


def test_build_task_names_and_errors():
    assert list_tasks() == ["geom72", "geometric", "jigsaw", "rotation", "translation"]
    with pytest.raises(ConfigError):
        build_task("nope")
    with pytest.raises(ConfigError):
        build_task("geometric", bogus=1)
    with pytest.raises(ConfigError):
        JigsawTask(k=3, permutations=[[0, 1, 2, 3, 4, 5, 6, 7, 8]] * 2)  # 2 given, 3 asked


def test_build_task_rotation_refuses_unknown_parameters():
    with pytest.raises(ConfigError):
        build_task("rotation", bogus=1)
