"""Training knobs beyond the paper, against NumPy references written here.

- the jigsaw with random permutations, checked view by view against a per-image NumPy
  reference (tiles cut at given offsets, placed in the permuted cells, gaps 0);
- its seeded test-time offset draws;
- ``views_per_image`` (which views each image keeps, and their labels), ``hflip`` (which images
  are mirrored) and ``task_weights``, in :func:`fgad.core.training.step_batch` / ``step_loss``.

The references replay the step's random draws from a generator seeded as documented (seed,
stream 2, step) and decide with NumPy which views are kept and which images are flipped.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from fgad import ConfigError, Detector
from fgad.core.config import PAPER_SETTINGS, resolve_config
from fgad.core.seeding import generator
from fgad.core.training import choose_views, step_batch, step_loss
from fgad.tasks import GeometricTask, JigsawTask, build_task, choose_permutations, random_permutations
from fgad.tasks.jigsaw import TEST_DRAW_STREAM


# ------------------------------------------------------------------------------ references
def ref_jigsaw_image(img: np.ndarray, perm: list[int], offsets: np.ndarray, margin: int,
                     grid: tuple[int, int]) -> np.ndarray:
    """One image C×H×W, one permutation: the tile of source cell s, cut at offsets[s] inside its
    cell, lands centred (margin // 2) in every target cell t with perm[t] == s; the rest is 0."""
    c, h, w = img.shape
    nh, nw = grid
    ch, cw = h // nh, w // nw
    th, tw = ch - margin, cw - margin
    top, left = (h - nh * ch) // 2, (w - nw * cw) // 2
    out = np.zeros_like(img)
    for t, s in enumerate(perm):
        sy = top + (s // nw) * ch + int(offsets[s][0])
        sx = left + (s % nw) * cw + int(offsets[s][1])
        ty = top + (t // nw) * ch + margin // 2
        tx = left + (t % nw) * cw + margin // 2
        out[:, ty : ty + th, tx : tx + tw] = img[:, sy : sy + th, sx : sx + tw]
    return out


def ref_jigsaw(x: np.ndarray, perms, offsets: np.ndarray, margin: int, grid) -> np.ndarray:
    return np.stack([np.stack([ref_jigsaw_image(x[i], p, offsets[i], margin, grid) for p in perms])
                     for i in range(len(x))])


def rand_images(b: int, c: int, h: int, w: int | None = None, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (b, c, h, w or h)).astype(np.float32)


def assert_views_equal(got: torch.Tensor, want: np.ndarray) -> None:
    got = got.numpy()
    assert got.shape == want.shape
    for i, v in itertools.product(range(want.shape[0]), range(want.shape[1])):
        np.testing.assert_array_equal(got[i, v], want[i, v], err_msg=f"image {i}, view {v}")


def ref_step_draws(tasks, n: int, seed: int, step: int, m: int | None, flip: bool):
    """Replay a step's draws in the documented order; NumPy decides flips and kept views.

    Returns (flip mask or None, {task: jigsaw offsets or None}, {task: B×m kept view indices or None}).
    """
    g = generator(seed, 2, step)
    flips = torch.rand(n, generator=g).numpy() < 0.5 if flip else None
    offsets, kept = {}, {}
    for name, t in tasks.items():
        offsets[name] = t.draw_offsets(n, True, g).numpy() if isinstance(t, JigsawTask) else None
        if m is not None and m < t.n_views:
            u = torch.rand(n, t.n_views, generator=g).numpy()
            kept[name] = np.argsort(u, axis=1, kind="stable")[:, :m]
        else:
            kept[name] = None
    return flips, offsets, kept


# ------------------------------------------------------------------------------ random permutations
@pytest.mark.parametrize("n_cells,k,seed", [(9, 3, 0), (9, 24, 1), (4, 24, 2), (6, 12, 3), (16, 24, 4)])
def test_random_permutations_are_distinct_and_include_the_identity(n_cells, k, seed):
    perms = random_permutations(n_cells, k, seed)
    assert len(perms) == k and perms[0] == list(range(n_cells))
    assert all(sorted(p) == list(range(n_cells)) for p in perms)
    assert len({tuple(p) for p in perms}) == k
    assert perms == random_permutations(n_cells, k, seed)  # a function of the seed
    assert perms != random_permutations(n_cells, k, seed + 1)


def test_random_permutations_include_close_pairs_unlike_distant_ones():
    def closest(perms):
        return min(int((np.array(a) != np.array(b)).sum()) for a, b in itertools.combinations(perms, 2))

    assert closest(choose_permutations(9, 3, 0)) == 9
    assert closest(random_permutations(9, 24, 0)) < 9  # some classes share cells: tiles no longer give it away


def test_random_permutations_refuse_impossible_counts():
    assert len(random_permutations(3, 6, 0)) == 6  # all 3! of them
    with pytest.raises(ConfigError):
        random_permutations(3, 7, 0)
    with pytest.raises(ConfigError):
        JigsawTask(grid=(1, 2), k=3, choice="random")
    with pytest.raises(ConfigError):
        JigsawTask(choice="closest")


def test_jigsaw_task_choice_and_state_round_trip():
    task = JigsawTask(k=12, margin=2, seed=7, choice="random")
    assert task.permutations == random_permutations(9, 12, 7)
    assert JigsawTask(k=3, seed=7).permutations == choose_permutations(9, 3, 7)  # default: the paper's
    again = build_task("jigsaw", **task.state())  # no redraw: the permutations are saved
    assert again.permutations == task.permutations and again.seed == 7 and again.head_sizes == (12,)
    x = torch.from_numpy(rand_images(2, 1, 32, seed=1))
    assert torch.equal(again.test_views(x, 2), task.test_views(x, 2))


# ------------------------------------------------------------------------------ views vs the reference
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("grid,margin,side", [((3, 3), 2, 32), ((3, 3), 0, 33), ((3, 3), 3, 28), ((2, 2), 1, 32),
                                              ((2, 3), 2, (26, 33)), ((4, 4), 2, 32)])
def test_random_jigsaw_views_match_numpy_reference(c, grid, margin, side):
    h, w = side if isinstance(side, tuple) else (side, side)
    n_cells = grid[0] * grid[1]
    k = min(12, math.factorial(n_cells))
    task = JigsawTask(grid=grid, k=k, margin=margin, seed=h + w + c, choice="random")
    x = rand_images(3, c, h, w, seed=n_cells + margin + c)
    offsets = np.random.default_rng(margin + c).integers(0, margin + 1, (3, n_cells, 2))
    want = ref_jigsaw(x, task.permutations, offsets, margin, grid)
    assert_views_equal(task.views(torch.from_numpy(x), offsets=torch.from_numpy(offsets)), want)
    # Training draws: the views of the offsets the generator gives.
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    drawn = task.draw_offsets(3, True, g1).numpy()
    want = ref_jigsaw(x, task.permutations, drawn, margin, grid)
    assert_views_equal(task.views(torch.from_numpy(x), train=True, generator=g2), want)


@pytest.mark.parametrize("c", [1, 3])
def test_jigsaw_test_draws_match_reference_and_ignore_the_batch(c):
    task = JigsawTask(k=12, margin=2, seed=3, choice="random")
    x = rand_images(5, c, 32, seed=c)
    xt = torch.from_numpy(x)
    # Draw 0: the centred tiles, the paper's test views.
    assert torch.equal(task.test_views(xt, 0), task.views(xt))
    draws = []
    for d in (1, 2, 3):
        one = torch.randint(0, 3, (1, 9, 2), generator=generator(3, TEST_DRAW_STREAM, d)).numpy()
        offsets = np.repeat(one, 5, axis=0)  # the same offsets for every image
        got = task.test_views(xt, d)
        assert_views_equal(got, ref_jigsaw(x, task.permutations, offsets, 2, (3, 3)))
        assert torch.equal(task.test_views(xt, d), got)  # deterministic
        for i in range(5):  # independent of the batch and of the image's place in it
            assert torch.equal(task.test_views(xt[i : i + 1], d)[0], got[i])
            assert torch.equal(task.test_views(xt.flip(0), d)[4 - i], got[i])
        draws.append(one)
    assert any(not np.array_equal(draws[0], o) for o in draws[1:])
    assert not torch.equal(JigsawTask(k=12, margin=2, seed=4, choice="random").draw_offsets_at_test(1, 1),
                           task.draw_offsets_at_test(1, 1))  # seeded by the task's seed


def test_tasks_without_random_parts_give_their_views_for_every_draw():
    x = torch.from_numpy(rand_images(2, 1, 32))
    assert torch.equal(GeometricTask().test_views(x, 3), GeometricTask().views(x))


# ------------------------------------------------------------------------------ views_per_image and hflip
def _tasks(cfg, channels=1):
    det = Detector.from_config(cfg)
    det.build_network(channels)
    return det.tasks


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("m", [1, 6, 36])
@pytest.mark.parametrize("flip", ["off", "on"])
def test_step_batch_keeps_the_drawn_views_with_their_labels(c, m, flip):
    cfg = resolve_config("tiny", {"views_per_image": m, "hflip": flip, "jigsaw_k": 12,
                                  "jigsaw_permutations": "random", "seed": 3})
    tasks = _tasks(cfg, c)
    n, step = 5, 7
    x = rand_images(n, c, 32, seed=m + c)
    views, labels = step_batch(tasks, torch.from_numpy(x), cfg, step)
    flips, offsets, kept = ref_step_draws(tasks, n, 3, step, m, flip == "on")
    src = x if flips is None else np.where(flips[:, None, None, None], x[..., ::-1], x)
    if flips is not None:
        assert flips.any() and not flips.all()  # both kinds in 5 draws with this seed
    for name, t in tasks.items():
        if isinstance(t, JigsawTask):
            full = ref_jigsaw(src, t.permutations, offsets[name], t.margin, t.grid)
        else:
            full = t.views(torch.from_numpy(np.ascontiguousarray(src))).numpy()  # checked in test_core_tasks
        table = t.labels().numpy()
        idx = kept[name] if kept[name] is not None else np.tile(np.arange(t.n_views), (n, 1))
        per = idx.shape[1]
        assert per == min(m, t.n_views)  # m capped at the task's view count
        assert all(len(set(row)) == per for row in idx)  # distinct views per image
        got_v, got_l = views[name].numpy(), labels[name].numpy()
        assert got_v.shape == (n * per, c, 32, 32) and got_l.shape == (n * per, len(t.head_sizes))
        for i, j in itertools.product(range(n), range(per)):
            np.testing.assert_array_equal(got_v[i * per + j], full[i, idx[i, j]], err_msg=f"{name} {i} {j}")
            np.testing.assert_array_equal(got_l[i * per + j], table[idx[i, j]])


def test_view_subsets_differ_between_images_and_steps():
    g = generator(0, 2, 0)
    a = choose_views(8, 36, 6, g)
    assert a.shape == (8, 6) and len({tuple(sorted(r)) for r in a.tolist()}) > 1
    assert not torch.equal(a, choose_views(8, 36, 6, generator(0, 2, 1)))
    assert choose_views(8, 3, 6, g) is None and choose_views(8, 36, None, g) is None
    counts = np.bincount(choose_views(2000, 36, 6, generator(1, 2, 0)).flatten().numpy(), minlength=36)
    assert counts.min() > 250 and counts.max() < 420  # uniform: 2000·6/36 ≈ 333 each


def test_hflip_flips_exactly_the_drawn_images():
    for c, mode, expect in [(1, "on", True), (3, "on", True), (1, "auto", False), (3, "auto", True), (3, "off", False)]:
        cfg = resolve_config("tiny", {"tasks": ("rotation",), "hflip": mode, "seed": 11})
        tasks = _tasks(cfg, c)
        x = rand_images(16, c, 32, seed=c)
        views, _ = step_batch(tasks, torch.from_numpy(x), cfg, 2)
        identity = views["rotation"].numpy()[0::4]  # rotation 0 of each image
        flips, _, _ = ref_step_draws(tasks, 16, 11, 2, None, expect)
        for i in range(16):
            want = x[i, :, :, ::-1] if flips is not None and flips[i] else x[i]
            np.testing.assert_array_equal(identity[i], want, err_msg=f"{c} {mode} image {i}")
        if expect:
            assert 0 < flips.sum() < 16


def test_default_knobs_draw_as_before():
    """No flip, all views: the step's views are the tasks' views of the draws of the paper's loop."""
    cfg = resolve_config("tiny", {"seed": 2})
    cfg36 = resolve_config("tiny", {"seed": 2, "views_per_image": 36, "hflip": "auto"})  # caps; grey: no flip
    tasks = _tasks(cfg)
    x = torch.from_numpy(rand_images(4, 1, 32))
    views, labels = step_batch(tasks, x, cfg, 5)
    g = generator(2, 2, 5)
    for name, t in tasks.items():
        want = t.views(x, train=True, generator=g).flatten(0, 1)
        assert torch.equal(views[name], want)
        assert torch.equal(labels[name], t.labels().repeat(4, 1))
    views36, labels36 = step_batch(tasks, x, cfg36, 5)
    assert all(torch.equal(views36[n], views[n]) and torch.equal(labels36[n], labels[n]) for n in tasks)


@pytest.mark.parametrize("world", [2, 3, 7])
def test_rank_shares_of_subsets_and_flips_make_the_whole_batch(world):
    from fgad.core.training import rank_share

    cfg = resolve_config("tiny", {"views_per_image": 5, "hflip": "on", "seed": 4})
    tasks = _tasks(cfg, 3)
    x = torch.from_numpy(rand_images(5, 3, 32, seed=2))
    whole_v, whole_l = step_batch(tasks, x, cfg, 3)
    parts = [step_batch(tasks, x, cfg, 3, rank_share(5, r, world)[:2]) for r in range(world)
             if rank_share(5, r, world)[2] > 0]
    for name in tasks:
        assert torch.equal(torch.cat([p[0][name] for p in parts]), whole_v[name])
        assert torch.equal(torch.cat([p[1][name] for p in parts]), whole_l[name])


# ------------------------------------------------------------------------------ task weights
def test_task_weights_scale_each_task_loss():
    cfg = resolve_config("tiny", {"seed": 1})
    weighted = resolve_config("tiny", {"seed": 1, "task_weights": {"jigsaw": 2.5}})
    tasks = _tasks(cfg)
    torch.manual_seed(0)
    det = Detector.from_config(cfg)
    det.build_network(1)
    net = det.net.eval()  # no dropout: the same logits on every call
    views, labels = step_batch(tasks, torch.from_numpy(rand_images(3, 1, 32)), cfg, 0)
    cpu = torch.device("cpu")
    loss, stats = step_loss(net, tasks, labels, views, cfg, cpu)
    loss_w, stats_w = step_loss(net, tasks, labels, views, weighted, cpu)
    jig = resolve_config("tiny", {"seed": 1, "task_weights": {"geometric": 0}})
    loss_j, _ = step_loss(net, tasks, labels, views, jig, cpu)  # the jigsaw loss alone
    assert loss_w.item() == pytest.approx(loss.item() + 1.5 * loss_j.item(), rel=1e-6)
    assert torch.equal(stats[:-1], stats_w[:-1])  # accuracies unchanged; the loss entry is the weighted one
    assert stats_w[-1] == loss_w


@pytest.mark.slow
def test_unit_weights_train_the_same_weights_as_none(grey_images):
    a = Detector(preset="tiny", device="cpu", steps=2).fit(grey_images, progress=False)
    b = Detector(preset="tiny", device="cpu", steps=2, task_weights={"geometric": 1, "jigsaw": 1}).fit(grey_images,
                                                                                             progress=False)
    assert all(torch.equal(u, v) for u, v in zip(a.net.state_dict().values(), b.net.state_dict().values()))


# ------------------------------------------------------------------------------ config and end to end
@pytest.mark.parametrize("options,message", [
    ({"views_per_image": 0}, "views_per_image"),
    ({"hflip": "yes"}, "hflip"),
    ({"hflip": 1}, "hflip"),
    ({"hflip": "on", "tasks": ("geom72",)}, "geom72"),
    ({"jigsaw_permutations": "far"}, "jigsaw_permutations"),
    ({"jigsaw_permutations": "random", "jigsaw_grid": (2, 2), "jigsaw_k": 25}, "jigsaw_k"),
    ({"jigsaw_test_draws": -1}, "jigsaw_test_draws"),
    ({"task_weights": {"rotation": 1.0}}, "not in 'tasks'"),
    ({"task_weights": {"jigsaw": -1.0}}, ">= 0"),
    ({"task_weights": {"jigsaw": 0, "geometric": 0.0}}, "weight 0"),
    ({"task_weights": {"jigsaw": "heavy"}}, "task_weights"),
    ({"task_weights": [1, 2]}, "mapping"),
])
def test_knob_validation(options, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("tiny", options)


def test_knob_defaults_are_the_papers_but_flips_and_values_convert():
    cfg = resolve_config("paper")
    assert (cfg.views_per_image, cfg.hflip, cfg.jigsaw_permutations, cfg.jigsaw_test_draws, cfg.task_weights) == \
        (None, "auto", "distant", 0, None)  # hflip: the improved detector's (colour images only)
    assert resolve_config("paper", PAPER_SETTINGS).hflip == "off"
    cfg = resolve_config("tiny", {"task_weights": {"jigsaw": 2}, "views_per_image": 6})
    assert cfg.task_weights == {"jigsaw": 2.0} and isinstance(cfg.task_weights["jigsaw"], float)
    assert resolve_config("tiny", cfg.to_dict()) == cfg  # round trip through plain values
    # ``--set hflip=on`` reaches the config as YAML's boolean
    from fgad.cli.common import parse_overrides

    assert resolve_config("tiny", parse_overrides(["hflip=on"])).hflip == "on"
    assert resolve_config("tiny", parse_overrides(["hflip=off"])).hflip == "off"
    assert resolve_config("tiny", parse_overrides(["task_weights={jigsaw: 2}"])).task_weights == {"jigsaw": 2.0}


@pytest.mark.slow
def test_fit_with_every_knob_is_reproducible_and_saves(tmp_path, colour_images):
    opts = dict(preset="tiny", device="cpu", views_per_image=4, hflip="auto", jigsaw_k=6,
                jigsaw_permutations="random", jigsaw_test_draws=2, task_weights={"jigsaw": 0.5}, batch_size=6)
    a = Detector(**opts).fit(colour_images, progress=False)
    b = Detector(**opts).fit(colour_images, progress=False)
    assert all(torch.equal(u, v) for u, v in zip(a.net.state_dict().values(), b.net.state_dict().values()))
    assert a.tasks["jigsaw"].permutations == random_permutations(9, 6, 0)
    loaded = Detector.load(a.save(tmp_path / "m"))
    assert loaded.config == a.config and loaded.tasks["jigsaw"].permutations == a.tasks["jigsaw"].permutations
    np.testing.assert_array_equal(loaded.score(colour_images), a.score(colour_images))
