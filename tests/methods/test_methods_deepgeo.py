"""DeepGEO: Dirichlet MLE against known parameters, the on-the-fly transforms, scoring, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import polygamma

from fgad.errors import ConfigError
from fgad.io.preprocess import as_image_array, to_tensor
from fgad.methods import FitContext
from fgad.methods.deepgeo import DeepGEO, apply_geom72, fit_dirichlet, fit_dirichlet_stats, inverse_digamma, trigamma
from fgad.tasks import build_task


@pytest.mark.parametrize("alpha", [np.array([0.7, 1.0, 2.0, 5.0, 3.0]),
                                   np.random.default_rng(5).uniform(0.5, 8.0, 72)])
def test_fit_dirichlet_recovers_known_parameters(alpha):
    p = np.random.default_rng(0).dirichlet(alpha, 5000)
    est = fit_dirichlet(p)
    assert est.shape == alpha.shape
    np.testing.assert_allclose(est, alpha, rtol=0.05)


def test_fit_dirichlet_rows_are_independent_fits():
    rng = np.random.default_rng(1)
    a1, a2 = np.array([1.0, 2.0, 3.0]), np.array([4.0, 0.8, 1.5])
    p1, p2 = rng.dirichlet(a1, 3000), rng.dirichlet(a2, 3000)
    stats_p = np.stack([p1.mean(0), p2.mean(0)])
    stats_log = np.stack([np.log(p1).mean(0), np.log(p2).mean(0)])
    both = fit_dirichlet_stats(stats_p, stats_log)
    np.testing.assert_allclose(both[0], fit_dirichlet(p1), rtol=1e-9)
    np.testing.assert_allclose(both[1], fit_dirichlet(p2), rtol=1e-9)


def test_trigamma_and_inverse_digamma():
    x = np.concatenate([np.geomspace(1e-3, 1e10, 500), np.linspace(0.05, 30.0, 500)])
    np.testing.assert_allclose(trigamma(x), polygamma(1, x), rtol=1e-12)
    from scipy.special import digamma

    np.testing.assert_allclose(inverse_digamma(digamma(x)), x, rtol=1e-9)


def test_apply_geom72_matches_the_task_views():
    x = torch.randn(5, 3, 32, 32)
    views = build_task("geom72").views(x)  # 5×72×C×H×W
    t = torch.tensor([0, 17, 36, 53, 71])
    np.testing.assert_array_equal(apply_geom72(x, t).numpy(), views[torch.arange(5), t].numpy())


@pytest.mark.slow
def test_training_length_and_scoring_options(image_sets):
    det = DeepGEO("paper", 0)
    assert det.total_steps(6000) == int(np.ceil(3 * 72 * 6000 / 128))
    det = DeepGEO("tiny", 0).fit(image_sets["grey"][:2], FitContext(progress=False))
    assert det.alpha.shape == (72, 72) and (det.alpha > 0).all()
    soft = det.score(image_sets["grey"][:2], scoring="softmax")
    assert ((soft < 0) & (soft > -1)).all()  # minus a mean probability
    assert det.info["steps"] == 2


def test_every_scoring_from_one_pass_matches_a_per_image_reference(image_sets):
    """Dirichlet, softmax and log-softmax scores of one model, against a NumPy computation per
    image from the network's own logits on the 72 views."""
    x = image_sets["grey"][:3]
    det = DeepGEO("tiny", 0).fit(x, FitContext(progress=False))
    got = det.scores(x)
    diag = np.arange(72)
    for i in range(len(x)):
        with torch.inference_mode():
            xi = to_tensor(as_image_array(x[i : i + 1], "image"), 32, "cpu")
            views = det.task.views(xi).flatten(0, 1)
            logits = det.net(views).double().numpy()  # 72 views × 72 classes
        p = np.exp(logits - logits.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        logp = np.log(np.clip(p, 1e-12, None))
        np.testing.assert_allclose(got["softmax"][i], -p[diag, diag].mean(), rtol=1e-9)
        np.testing.assert_allclose(got["logprob"][i], -logp[diag, diag].mean(), rtol=1e-9)
        np.testing.assert_allclose(got["dirichlet"][i], -((det.alpha - 1) * logp).sum() / 72, rtol=1e-9)
    for scoring in ("dirichlet", "softmax", "logprob"):
        np.testing.assert_array_equal(det.score(x, scoring=scoring), got[scoring])
    with pytest.raises(ConfigError, match="scoring"):
        det.scores(x, ("mahalanobis",))


def test_unknown_option_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown option"):
        DeepGEO("tiny", 0, dropout=0.3)
    with pytest.raises(ConfigError, match="scoring"):
        DeepGEO("tiny", 0, scoring="mahalanobis")
    with pytest.raises(ConfigError, match="preset"):
        DeepGEO("huge", 0)
