"""The paper's score (eqs. 2–4) against hand-computed softmax values."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from fgad.core.scoring import fuse, true_class_probability_sum


def log_weights(*rows):
    """Logits whose softmax is each row divided by its sum (so probabilities are exact by hand)."""
    return [math.log(w) for row in rows for w in row]


def test_true_class_probability_sum_three_heads_by_hand():
    # Image 0, view 0: head 1 ∝ [1,2,1] -> [.25,.5,.25]; head 2 ∝ [1,1,2] -> [.25,.25,.5];
    #                  head 3 ∝ [1,1,1,5] -> [1/8,1/8,1/8,5/8]. Labels (1,2,3): .5 + .5 + .625 = 1.625
    # Image 0, view 1: head 1 ∝ [2,1,1] -> [.5,.25,.25]; head 2 ∝ [1,3,1] -> [.2,.6,.2];
    #                  head 3 ∝ [1,1,1,1] -> .25 each. Labels (0,1,2): .5 + .6 + .25 = 1.35
    # Image 1: all logits equal (+7): 1/3 + 1/3 + 1/4 = 11/12 per view, 11/6 for two views.
    img0 = [log_weights([1, 2, 1], [1, 1, 2], [1, 1, 1, 5]), log_weights([2, 1, 1], [1, 3, 1], [1, 1, 1, 1])]
    img1 = [[7.0] * 10, [7.0] * 10]
    logits = torch.tensor([img0, img1], dtype=torch.float32)  # 2×2×10
    labels = torch.tensor([[1, 2, 3], [0, 1, 2]])
    got = true_class_probability_sum(logits, labels, (3, 3, 4))
    assert got.dtype == torch.float32 and got.shape == (2,)
    np.testing.assert_allclose(got.numpy(), [1.625 + 1.35, 11 / 6], rtol=1e-6)


def test_true_class_probability_sum_one_head_by_hand():
    # ∝ [1,1,2] label 2 -> .5; ∝ [4,3,3] label 0 -> .4; ∝ [1,8,1] label 1 -> .8: total 1.7
    logits = torch.tensor([[log_weights([1, 1, 2]), log_weights([4, 3, 3]), log_weights([1, 8, 1])]])
    labels = torch.tensor([[2], [0], [1]])
    got = true_class_probability_sum(logits, labels, (3,))
    np.testing.assert_allclose(got.numpy(), [1.7], rtol=1e-6)
    # The same logits with other labels: .25 + .3 + .1 = .65
    got = true_class_probability_sum(logits, torch.tensor([[0], [1], [2]]), (3,))
    np.testing.assert_allclose(got.numpy(), [0.65], rtol=1e-6)


def test_true_class_probability_sum_bf16_logits_sum_in_float32():
    logits = torch.zeros(1, 36, 10, dtype=torch.bfloat16)
    labels = torch.tensor(list(itertools.product(range(3), range(3), range(4))))
    got = true_class_probability_sum(logits, labels, (3, 3, 4))
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), [36 * (1 / 3 + 1 / 3 + 1 / 4)], rtol=1e-6)


def test_fuse_sum_and_mean():
    sums = {"geometric": np.array([54.0, 108.0]), "jigsaw": np.array([3.0, 1.5])}
    terms = {"geometric": 108, "jigsaw": 3}
    np.testing.assert_allclose(fuse(sums, "sum", terms), [28.5, 54.75])
    np.testing.assert_allclose(fuse(sums, "sum"), [28.5, 54.75])
    np.testing.assert_allclose(fuse(sums, "mean", terms), [0.75, 0.75])  # (.5+1)/2, (1+.5)/2
    np.testing.assert_allclose(fuse({"jigsaw": np.array([2.0, 1.0])}, "mean", {"jigsaw": 3}), [2 / 3, 1 / 3])
    with pytest.raises(ValueError):
        fuse(sums, "max", terms)


# ------------------------------------------------------------------------------ end to end
def p_true(c: int, size: int) -> float:
    """Softmax probability of class c when its logit is c + 1 and the others are 0."""
    return math.exp(c + 1) / (math.exp(c + 1) + size - 1)


class LabelStub(nn.Module):
    """Logits that depend only on each view's true label: logit[c] = c + 1 on the true class, 0 elsewhere."""

    def __init__(self, tasks):
        super().__init__()
        self.tasks = tasks
        self.calls = 0

    def forward(self, views):
        self.calls += 1
        out = {}
        for name, x in views.items():
            t = self.tasks[name]
            labels = t.labels()
            assert x.shape[0] % t.n_views == 0
            lab = labels[torch.arange(x.shape[0]) % t.n_views]  # rows are image-major, view-minor
            parts = []
            for h, size in enumerate(t.head_sizes):
                z = torch.zeros(x.shape[0], size)
                z[torch.arange(x.shape[0]), lab[:, h]] = lab[:, h].float() + 1
                parts.append(z)
            out[name] = torch.cat(parts, 1)
        return out


def expected_sums() -> tuple[float, float]:
    geo = sum(p_true(v, 3) + p_true(h, 3) + p_true(r, 4)
              for v, h, r in itertools.product(range(3), range(3), range(4)))
    jig = sum(p_true(c, 3) for c in range(3))
    return geo, jig


def test_detector_score_on_label_stub(grey_detector, grey_images, monkeypatch):
    det = grey_detector
    stub = LabelStub(det.tasks)
    monkeypatch.setattr(det, "net", stub)
    monkeypatch.setattr(det.config, "score_batch_size", 5)  # 16 images in batches 5, 5, 5, 1
    geo, jig = expected_sums()
    # By hand: geometric = 12·Σ_c p(c,3) twice + 9·Σ_c p(c,4); jigsaw = Σ_c p(c,3).
    s3 = p_true(0, 3) + p_true(1, 3) + p_true(2, 3)
    s4 = sum(p_true(c, 4) for c in range(4))
    assert geo == pytest.approx(24 * s3 + 9 * s4)
    assert jig == pytest.approx(s3)

    sums = det.score_tasks(grey_images)
    assert set(sums) == {"geometric", "jigsaw"}
    np.testing.assert_allclose(sums["geometric"], np.full(16, geo), rtol=1e-6)
    np.testing.assert_allclose(sums["jigsaw"], np.full(16, jig), rtol=1e-6)
    scores = det.score(grey_images)
    assert scores.shape == (16,)
    np.testing.assert_allclose(scores, np.full(16, -(geo + jig) / 2), rtol=1e-6)
    np.testing.assert_allclose(det.score(grey_images, fusion="mean"),
                               np.full(16, -(geo / 108 + jig / 3) / 2), rtol=1e-6)
    np.testing.assert_allclose(det.normality(grey_images), np.full(16, (geo + jig) / 2), rtol=1e-6)
    assert stub.calls == 4 * 4  # 4 batches per call × 4 calls above
