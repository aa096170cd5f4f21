"""GOAD: score and triplet-centre loss against NumPy references, centres, files, seeds, learning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgad.core.seeding import seed_everything
from fgad.errors import ConfigError
from fgad.io.preprocess import as_image_array, to_tensor
from fgad.methods.base import FitContext
from fgad.methods.goad import GOAD, GOADNet, triplet_centre_loss, view_scores
from fgad.metrics import auroc
from fgad.tasks import build_task

QUIET = FitContext(progress=False)


def reference_scores(z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Σ_t −log softmax_s(−‖z_t − c_s‖²)[t], written out in NumPy float64: N×72×D, 72×D → N."""
    z, c = z.astype(np.float64), centres.astype(np.float64)
    out = np.zeros(len(z))
    for i in range(len(z)):
        for t in range(z.shape[1]):
            logits = -((z[i, t] - c) ** 2).sum(1)
            top = logits.max()
            log_norm = top + np.log(np.exp(logits - top).sum())
            out[i] += log_norm - logits[t]
    return out


def test_view_scores_on_a_hand_case():
    # Two transformations, 1-d features: view 0 at the centre 0, view 1 halfway between the centres.
    z = torch.tensor([[[0.0], [1.0]]])
    c = torch.tensor([[0.0], [2.0]])
    # view 0: logits (0, -4) -> -log(1 / (1 + e^-4)); view 1: logits (-1, -1) -> log 2
    expected = [np.log1p(np.exp(-4.0)), np.log(2.0)]
    np.testing.assert_allclose(view_scores(z, c).numpy()[0], expected, rtol=1e-12)


def test_triplet_centre_loss_matches_numpy():
    z = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    zn = z.double().numpy()
    c = zn.mean(0)
    terms = []
    for i in range(3):
        for t in range(5):
            d = ((zn[i, t] - c) ** 2).sum(1)
            terms.append(max(0.0, d[t] + 0.7 - np.delete(d, t).min()))
    assert triplet_centre_loss(z, 0.7).item() == pytest.approx(np.mean(terms), rel=1e-5)


@pytest.mark.slow
def test_score_equals_the_reference_from_features_and_centres(image_sets):
    x = image_sets["colour"][:3]
    det = GOAD("tiny", 0).fit(x, QUIET)
    z = det.features(x)
    assert z.shape == (len(x), 72, det.net.feature_dim)
    terms = det.score_views(x)
    assert terms.shape == (len(x), 72) and (terms > 0).all()
    np.testing.assert_allclose(terms.sum(1), reference_scores(z, det.centres.numpy()), rtol=1e-10)


@pytest.mark.slow
def test_epoch_centres_are_the_training_mode_features_of_the_pass():
    # One step over all images = one epoch: the centres are that pass's training-mode features.
    x = np.random.default_rng(4).integers(0, 256, (3, 28, 28), dtype=np.uint8)
    det = GOAD("tiny", 5, batch_images=3, steps=1, channels_last=False).fit(x, QUIET)
    seed_everything(5)  # the same initialisation as fit's
    net = GOADNet(10, 1, 1, None, linear_head=True).train()
    views = build_task("geom72").views(to_tensor(as_image_array(x), 32)).flatten(0, 1)
    with torch.no_grad():
        z = net(views)[0].view(3, 72, -1).double().mean(0)
    np.testing.assert_allclose(det.centres.numpy(), z.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_refit_centres_are_the_mean_evaluation_features(image_sets):
    x = image_sets["grey"]
    det = GOAD("tiny", 0, centres="refit", ce_logits="centres", feature_dim=16).fit(x, QUIET)
    assert det.net.head is None and det.centres.shape == (72, 16)
    np.testing.assert_allclose(det.centres.numpy(), det.features(x).astype(np.float64).mean(0), rtol=1e-6)


@pytest.mark.slow
def test_save_load_round_trip_is_bit_identical(image_sets, tmp_path):
    x = image_sets["grey"]
    det = GOAD("tiny", 0, feature_dim=8).fit(x, QUIET)
    det.save(tmp_path / "m")
    again = GOAD.load(tmp_path / "m")
    assert again.config == det.config and again.input_shape == det.input_shape
    np.testing.assert_array_equal(again.centres.numpy(), det.centres.numpy())
    np.testing.assert_array_equal(again.score(x), det.score(x))


@pytest.mark.slow
def test_seeds_are_reproducible(image_sets):
    x = image_sets["colour"]
    a = GOAD("tiny", 3).fit(x, QUIET).score(x)
    b = GOAD("tiny", 3).fit(x, QUIET).score(x)
    c = GOAD("tiny", 4).fit(x, QUIET).score(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_presets_training_length_and_options():
    paper = GOAD("paper", 0)
    assert (paper.config.depth, paper.config.width, paper.config.batch_images) == (10, 4, 4)
    assert paper.total_steps(6000) == 16 * 1500 and paper.total_steps(30) == 16 * 8
    quick = GOAD("quick", 0)
    assert quick.total_steps(30) == quick.total_steps(6000) == quick.config.steps
    assert GOAD("quick", 0, epochs=2).total_steps(30) == 16  # 'epochs' asked for beats the preset's steps
    with pytest.raises(ConfigError, match="unknown option"):
        GOAD("tiny", 0, scoring="dirichlet")
    with pytest.raises(ConfigError, match="ce_logits"):
        GOAD("tiny", 0, ce_logits="cosine")
    with pytest.raises(ConfigError, match="margin"):
        GOAD("tiny", 0, margin=-1)


def _pattern_images(n: int, seed: int) -> np.ndarray:
    """An asymmetric 'F'-like glyph (so every flip, turn and shift shows), with pixel noise."""
    base = np.zeros((16, 16), np.float64)
    base[3:13, 4:6] = 255
    base[3:5, 4:12] = 255
    base[7:9, 4:10] = 255
    noise = np.random.default_rng(seed).normal(0, 20, (n, 16, 16))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


@pytest.mark.slow
def test_learns_a_trivially_separable_set():
    normal_train, normal_test = _pattern_images(8, 0), _pattern_images(10, 1)
    noise = np.random.default_rng(2).integers(0, 256, (10, 16, 16), dtype=np.uint8)
    det = GOAD("tiny", 0, image_size=16, batch_images=2, steps=40).fit(normal_train, QUIET)
    scores = det.score(np.concatenate([normal_test, noise]))
    assert det.info["final_acc"] > 0.2  # the transformations are learnt (chance: 1/72)...
    assert auroc(np.r_[np.zeros(10), np.ones(10)], scores) > 0.95  # ...and noise scores higher
