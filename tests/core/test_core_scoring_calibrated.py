"""Scoring beyond the paper (issue 13): log-space and Dirichlet task scores, the feature-space kNN
component, z-score / rank fusion relative to normal images, the held-out split, the readable
percentile, the ``calibrated`` method, and old model folders scoring as before.

Each score is checked against a NumPy computation made here from the network's logits or features.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pytest
import torch

import fgad
from fgad.cli import main
from fgad.core import scoring
from fgad.core.config import IMPROVED, PAPER_SETTINGS
from fgad.core.scoring import (
    NormalStats,
    dirichlet_log_likelihood_sum,
    fit_dirichlet,
    fit_dirichlet_stats,
    fuse,
    heldout_split,
    knn_cosine_distance,
    l2_normalise,
    percentile_below,
    softmax_moments,
    true_class_log_probability_sum,
    true_class_probability_sum,
)
from fgad.errors import ConfigError, InputError, ModelFileError
from fgad.io.preprocess import as_image_array, to_tensor
from fgad.methods import create_method, get_method

TINY = dict(preset="tiny", device="cpu")
NEW_KEYS = ("task_score", "normal_stats", "heldout_fraction", "feature_knn", "feature_bank_max")


# ------------------------------------------------------------------------------ NumPy references
def np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    m = z.max(-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(-1, keepdims=True))


def np_logprob_sum(logits: np.ndarray, labels: np.ndarray, head_sizes) -> np.ndarray:
    """Per image: Σ over views v and heads h of log softmax(head h of view v)[label of v, h]."""
    out = np.zeros(logits.shape[0])
    for i in range(logits.shape[0]):
        for v in range(logits.shape[1]):
            start = 0
            for h, size in enumerate(head_sizes):
                out[i] += np_log_softmax(logits[i, v, start : start + size])[labels[v, h]]
                start += size
    return out


def np_dirichlet_sum(logits: np.ndarray, alphas, head_sizes) -> np.ndarray:
    """Per image: Σ over views and heads of Σ_j (α_vhj − 1)·log max(p_vhj, 1e-12)."""
    out = np.zeros(logits.shape[0])
    for i in range(logits.shape[0]):
        for v in range(logits.shape[1]):
            start = 0
            for h, size in enumerate(head_sizes):
                p = np.exp(np_log_softmax(logits[i, v, start : start + size]))
                out[i] += np.sum((alphas[h][v] - 1.0) * np.log(np.maximum(p, 1e-12)))
                start += size
    return out


def np_knn(queries: np.ndarray, bank: np.ndarray, k: int, exclude=None) -> np.ndarray:
    """Mean of the k smallest cosine distances of each (normalised) query to the bank rows."""
    out = []
    for i, q in enumerate(queries):
        d = [1.0 - float(np.dot(q, b)) for j, b in enumerate(bank) if exclude is None or exclude[i] != j]
        out.append(np.mean(sorted(d)[: min(k, len(bank) - 1)]))
    return np.array(out)


def logits_of(det, images) -> dict[str, np.ndarray]:
    parts = list(det.view_logits(images))
    return {n: torch.cat([p[n] for p in parts]).numpy() for n in det.tasks}


# ------------------------------------------------------------------------------ task scores by hand
def test_logprob_sum_by_hand_and_without_saturation():
    rng = np.random.default_rng(0)
    logits = torch.tensor(rng.normal(0, 3, (3, 4, 10)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 3, (4, 3)))
    labels[:, 2] = torch.tensor([0, 1, 2, 3])
    got = true_class_log_probability_sum(logits, labels, (3, 3, 4))
    assert got.dtype == torch.float64 and got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), np_logprob_sum(logits.numpy(), labels.numpy(), (3, 3, 4)), rtol=1e-12)
    # Confident views: a float32 softmax says exactly 1 (and a float64 log_softmax 0 past a margin
    # of ~37); log p = −log(1 + 2·e^−margin) keeps their differences.
    for margin in (20.0, 40.0, 300.0):
        sure = torch.tensor([[[margin, 0.0, 0.0]]])
        assert true_class_probability_sum(sure, torch.tensor([[0]]), (3,)).item() == 1.0
        got = true_class_log_probability_sum(sure, torch.tensor([[0]]), (3,)).item()
        np.testing.assert_allclose(got, -math.log1p(2 * math.exp(-margin)), rtol=1e-12)
        assert got < 0
    # A wrong view: margin −50 -> log p = −(50 + log(1 + e^−50 + ...)) ≈ −50.
    wrong = torch.tensor([[[0.0, 50.0, 0.0]]])
    np.testing.assert_allclose(true_class_log_probability_sum(wrong, torch.tensor([[0]]), (3,)).item(),
                               -(50 + math.log1p(2 * math.exp(-50.0))), rtol=1e-12)
    # A one-class head: log 1 = 0.
    assert true_class_log_probability_sum(torch.ones(1, 1, 1), torch.tensor([[0]]), (1,)).item() == 0.0


def test_dirichlet_sum_and_fit_by_hand():
    rng = np.random.default_rng(1)
    head_sizes = (3, 4)
    logits = torch.tensor(rng.normal(0, 2, (5, 2, 7)), dtype=torch.float32)
    alphas = [rng.uniform(0.5, 3.0, (2, 3)), rng.uniform(0.5, 3.0, (2, 4))]
    got = dirichlet_log_likelihood_sum(logits, [torch.from_numpy(a) for a in alphas], head_sizes)
    np.testing.assert_allclose(got.numpy(), np_dirichlet_sum(logits.numpy(), alphas, head_sizes), rtol=1e-12)
    # A saturated softmax is floored at 1e-12 before the log.
    sat = torch.tensor([[[200.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]]])
    one = [np.full((1, 3), 2.0), np.ones((1, 4))]
    np.testing.assert_allclose(dirichlet_log_likelihood_sum(sat, [torch.from_numpy(a) for a in one], head_sizes),
                               [2 * math.log(1e-12)], rtol=1e-12)
    # One Dirichlet per (view, head) from the summed moments = fit_dirichlet of that view's vectors.
    moments = softmax_moments(logits, head_sizes)
    for h, size in enumerate(head_sizes):
        start = sum(head_sizes[:h])
        alpha = fit_dirichlet_stats(moments[h][0].numpy() / 5, moments[h][1].numpy() / 5)
        for v in range(2):
            p = np.exp(np_log_softmax(logits.numpy()[:, v, start : start + size]))
            np.testing.assert_allclose(alpha[v], fit_dirichlet(p), rtol=1e-9)


def test_deepgeo_uses_the_one_dirichlet_mle():
    from fgad.methods import deepgeo

    assert deepgeo.fit_dirichlet_stats is scoring.fit_dirichlet_stats and deepgeo.PROB_FLOOR == scoring.PROB_FLOOR


# ------------------------------------------------------------------------------ kNN, fusion, percentile by hand
def test_knn_cosine_distance_on_a_tiny_bank():
    s = 1 / math.sqrt(2)
    bank = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [s, s, 0], [0, 0, 1.0]], dtype=torch.float64)
    q = l2_normalise(torch.tensor([[2.0, 0, 0], [0, 3.0, 3.0]]))
    np.testing.assert_allclose(q.numpy(), [[1, 0, 0], [0, s, s]])
    # query 0: distances 0, 1, 1 − s, 1 -> two nearest (0 + 1 − s) / 2; query 1: 1, 1 − s, 1 − 1/2, 1 − s.
    got = knn_cosine_distance(q, bank, 2)
    np.testing.assert_allclose(got.numpy(), [(1 - s) / 2, 1 - s], rtol=1e-12)
    # Leave-one-out: query 0 without bank row 0 -> (1 − s + 1) / 2; −1 = nothing left out.
    got = knn_cosine_distance(q, bank, 2, exclude=torch.tensor([0, -1]))
    np.testing.assert_allclose(got.numpy(), [(2 - s) / 2, 1 - s], rtol=1e-12)
    # k is capped at the bank size − 1 (the same k for leave-one-out and plain queries).
    np.testing.assert_allclose(knn_cosine_distance(q, bank, 10).numpy(), np_knn(q.numpy(), bank.numpy(), 10))


def test_zscore_and_rank_fusion_by_hand():
    comps = {"a": np.array([1.0, 2.0, 3.0, 6.0]), "b": np.array([10.0, 10.0, 10.0, 10.0])}
    stats = NormalStats.fit(comps, "heldout")
    assert stats.mean == {"a": 3.0, "b": 10.0}
    assert stats.std["a"] == pytest.approx(math.sqrt(((1 - 3) ** 2 + 1 + 0 + 9) / 3)) and stats.std["b"] == 0.0
    new = {"a": np.array([3.0, 0.0, 7.0]), "b": np.array([10.0, 9.0, 12.0])}
    sd = stats.std["a"]
    # zscore: (s − mean)/std; a std of 0 counts as 1.
    want = [(0 + 0) / 2, ((0 - 3) / sd + (9 - 10)) / 2, ((7 - 3) / sd + (12 - 10)) / 2]
    np.testing.assert_allclose(fuse(new, "zscore", stats=stats), want, rtol=1e-12)
    # rank: 1 − share of the references scoring higher (more normal).
    # a: 3 -> 1 of 4 higher (6) -> .75; 0 -> all higher -> 0; 7 -> none -> 1.
    # b: 10 -> none higher -> 1; 9 -> all -> 0; 12 -> 1.
    np.testing.assert_allclose(fuse(new, "rank", stats=stats), [(0.75 + 1) / 2, 0.0, 1.0])
    with pytest.raises(ValueError, match="needs statistics"):
        fuse(new, "zscore")


def test_weighted_fusion_by_hand():
    comps = {"a": np.array([1.0, 2.0, 3.0, 6.0]), "feature_knn": np.array([0.0, -1.0, -2.0, -1.0])}
    stats = NormalStats.fit(comps, "heldout")
    new = {"a": np.array([3.0, 0.0]), "feature_knn": np.array([-1.0, -3.0])}
    za = (new["a"] - stats.mean["a"]) / stats.std["a"]
    zf = (new["feature_knn"] - stats.mean["feature_knn"]) / stats.std["feature_knn"]
    np.testing.assert_allclose(fuse(new, "zscore", stats=stats, weights={"feature_knn": 3.0}), (za + 3 * zf) / 4,
                               rtol=1e-12)
    np.testing.assert_array_equal(fuse(new, "zscore", stats=stats, weights={}), fuse(new, "zscore", stats=stats))
    got = scoring.fuse_tensors({n: torch.from_numpy(v) for n, v in new.items()}, "zscore", stats=stats,
                               weights={"feature_knn": 3.0})
    np.testing.assert_allclose(got.numpy(), (za + 3 * zf) / 4, rtol=1e-12)


def test_percentile_below_and_heldout_split():
    ref = np.sort(np.array([-3.0, -1.0, 0.5, 2.0]))
    np.testing.assert_allclose(percentile_below([-5.0, -1.0, 1.0, 9.0], ref), [0.0, 25.0, 75.0, 100.0])
    keep, held = heldout_split(16, 0.2, seed=0)
    assert len(held) == 3 and len(keep) == 13  # round(3.2)
    assert sorted([*keep, *held]) == list(range(16)) and not set(keep) & set(held)
    k2, h2 = heldout_split(16, 0.2, seed=0)
    assert np.array_equal(held, h2) and not np.array_equal(held, heldout_split(16, 0.2, seed=1)[1])
    assert len(heldout_split(5, 0.1, seed=0)[1]) == 2  # at least 2 held out
    with pytest.raises(InputError, match="at least 4 normal images"):
        heldout_split(3, 0.2, seed=0)


def test_config_checks_the_scoring_options():
    for bad, match in [({"task_score": "max"}, "'task_score' must be one of"),
                       ({"score_fusion": "max"}, "'score_fusion' must be one of"),
                       ({"normal_stats": "test"}, "'normal_stats' must be one of"),
                       ({"heldout_fraction": 1.0}, "'heldout_fraction' must be in"),
                       ({"feature_knn": -1}, "'feature_knn' must be >= 0"),
                       ({"feature_knn": 3, "score_fusion": "sum"},
                        "'feature_knn' needs score_fusion 'zscore' or 'rank'"),
                       ({"feature_knn": 3, "score_fusion": "rank", "feature_bank_max": 1}, "'feature_bank_max'"),
                       ({"feature_weight": 0.0}, "'feature_weight' must be > 0")]:
        with pytest.raises(ConfigError, match=match):
            fgad.Detector(**TINY, **bad)


# ------------------------------------------------------------------------------ end to end, tiny detectors
@pytest.fixture(scope="module")
def logprob_zscore(grey_images):
    """logprob task scores, a 3-NN feature component, zscore fusion on held-out normals (equal weights)."""
    return fgad.Detector(**TINY, task_score="logprob", score_fusion="zscore", feature_knn=3, feature_weight=1.0,
                         pixel_knn=0).fit(
        grey_images, progress=False)


@pytest.fixture(scope="module")
def dirichlet_rank(grey_images):
    """Dirichlet task scores, a 2-NN feature component on a bank of 6, rank fusion on the training normals."""
    return fgad.Detector(**TINY, task_score="dirichlet", score_fusion="rank", normal_stats="train", feature_knn=2,
                         feature_bank_max=6, feature_weight=1.0).fit(grey_images, progress=False)


def test_feature_weight_scores_a_weighted_mean_and_is_saved(grey_images, make_images, tmp_path):
    """feature_weight = W: −(Σ task z-scores + W·z_feature + z_pixel) / (tasks + W + 1), the held-out
    normals' sorted scores (the percentile's reference) by the same rule; saved and reloaded."""
    det = fgad.Detector(**TINY, feature_weight=3.0).fit(grey_images, progress=False)
    x = make_images(5, seed=9)
    comps, st = det.score_components(x), det.normal_stats
    z = {n: (comps[n] - st.mean[n]) / st.std[n] for n in comps}
    want = -(z["geometric"] + z["jigsaw"] + 3.0 * z["feature_knn"] + z["pixel_knn"]) / 6.0
    np.testing.assert_allclose(det.score(x), want, rtol=1e-12)
    held = grey_images[det.heldout_indices]
    # (float32 features differ in their last bits with the batching; z-scores magnify that)
    np.testing.assert_allclose(st.anomaly_scores, np.sort(det.score(held)), rtol=1e-3, atol=1e-4)
    from fgad.tools.explain import breakdown, format_breakdown

    b = breakdown(det, x[:1])[0]
    assert b["weights"] == {"feature_knn": 3.0} and b["normality"] == pytest.approx(-want[0], rel=1e-4)
    assert "= weighted mean (feature_knn x 3, others x 1) of the fused components" in format_breakdown(b)
    det.save(tmp_path / "m")
    again = fgad.Detector.load(tmp_path / "m")
    assert again.config.feature_weight == 3.0
    np.testing.assert_array_equal(again.score(x), det.score(x))


def test_a_model_saved_before_the_weight_loads_with_weight_1(logprob_zscore, tmp_path):
    det = logprob_zscore
    det.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    del meta["config"]["feature_weight"]  # as written before the option existed
    (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    again = fgad.Detector.load(tmp_path / "m")
    assert again.config.feature_weight == 1.0 and again.fusion_weights is None


@pytest.mark.slow
def test_logprob_components_by_hand(logprob_zscore, grey_images, make_images):
    det, x = logprob_zscore, make_images(5, seed=9)
    comps = det.score_components(x)
    assert list(comps) == ["geometric", "jigsaw", "feature_knn"]
    logits = logits_of(det, x)
    for n, t in det.tasks.items():
        np.testing.assert_allclose(comps[n], np_logprob_sum(logits[n], t.labels().numpy(), t.head_sizes), rtol=1e-10)
    feats = det.features(x)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-12)
    bank = det.feature_bank.astype(np.float64)
    np.testing.assert_allclose(comps["feature_knn"], -np_knn(feats, bank, 3), rtol=1e-10)
    # score = −(mean over components of the z-scores against the held-out normals).
    st = det.normal_stats
    z = np.mean([(comps[n] - st.mean[n]) / st.std[n] for n in comps], axis=0)
    np.testing.assert_allclose(det.score(x), -z, rtol=1e-12)
    # The paper's jigsaw sum stays available, unchanged: Σ over views of softmax(true).
    jig = logits["jigsaw"]
    want = sum(np.exp(np_log_softmax(jig[:, v])[:, v]) for v in range(jig.shape[1]))  # view v's label is v
    np.testing.assert_allclose(det.score_tasks(x)["jigsaw"], want, rtol=1e-5)


@pytest.mark.parametrize("kind", ["logprob", "prob"])
def test_jigsaw_test_draws_average_each_views_term(kind, grey_images, make_images):
    det = fgad.Detector(**TINY, tasks=("jigsaw",), task_score=kind, jigsaw_test_draws=2).fit(grey_images[:6],
                                                                                           progress=False)
    x = make_images(3, seed=4)
    t = det.tasks["jigsaw"]
    xb = to_tensor(as_image_array(x), det.config.image_size)
    per_draw, probs = [], []
    with torch.inference_mode():
        for d in range(3):  # draw 0: the centred tiles of the paper
            z = det.forward_views({"jigsaw": t.test_views(xb, d).flatten(0, 1)}, det.device)["jigsaw"]
            logp = np_log_softmax(z.view(3, t.n_views, -1).numpy())
            terms = logp[:, np.arange(t.n_views), np.arange(t.n_views)]  # view v's label is v
            probs.append(np.exp(terms).sum(1))
            per_draw.append(terms.sum(1) if kind == "logprob" else probs[-1])
    np.testing.assert_allclose(det.score_components(x)["jigsaw"], np.mean(per_draw, axis=0), rtol=1e-5)
    np.testing.assert_allclose(det.score_tasks(x)["jigsaw"], probs[0], rtol=1e-5)  # the paper's sums: draw 0


@pytest.mark.slow
def test_heldout_images_are_never_seen_by_training(grey_images, monkeypatch):
    import fgad.core.detector as detector_module

    seen = []

    def spy(net, tasks, x, *args, **kw):
        seen.append(x.clone())
        return real(net, tasks, x, *args, **kw)

    real = detector_module.train
    monkeypatch.setattr(detector_module, "train", spy)
    # Without the kNN component, whose distances differ in the last bits with the batch's size.
    det = fgad.Detector(**TINY, task_score="logprob", score_fusion="zscore", feature_knn=0).fit(grey_images,
                                                                                                progress=False)
    keep, held = heldout_split(len(grey_images), 0.2, 0)
    assert np.array_equal(det.heldout_indices, held) and det.info["n_heldout"] == 3 and det.info["n_train"] == 13
    x = as_image_array(grey_images)
    assert torch.equal(seen[0], to_tensor(x[keep], det.config.image_size))
    trained = {seen[0][i].numpy().tobytes() for i in range(len(seen[0]))}
    held_x = to_tensor(x[held], det.config.image_size)
    assert not trained & {held_x[i].numpy().tobytes() for i in range(len(held_x))}
    # The statistics are those of the held-out images, and so is the percentile's reference.
    comps = det.score_components(grey_images[held])
    for n, v in comps.items():
        np.testing.assert_array_equal(det.normal_stats.reference[n], np.sort(v))
    np.testing.assert_array_equal(det.normal_stats.anomaly_scores, np.sort(det.score(grey_images[held])))
    pct = det.normal_percentile(det.score(grey_images))
    assert pct.shape == (16,) and ((pct >= 0) & (pct <= 100)).all()


def test_sum_fusion_holds_nothing_out(grey_detector):
    assert grey_detector.heldout_indices is None and grey_detector.normal_stats is None
    assert grey_detector.normal_percentile(np.zeros(3)) is None and grey_detector.info["n_train"] == 16


@pytest.mark.slow
def test_dirichlet_fit_and_scores_by_hand(dirichlet_rank, grey_images, make_images):
    det = dirichlet_rank
    logits = logits_of(det, grey_images)  # all 16 trained: normal_stats "train" holds nothing out
    for n, t in det.tasks.items():
        start = 0
        for h, size in enumerate(t.head_sizes):
            for v in (0, t.n_views - 1):
                p = np.exp(np_log_softmax(logits[n][:, v, start : start + size]))
                np.testing.assert_allclose(det.dirichlet_alpha[n][h][v], fit_dirichlet(p), rtol=1e-6)
            start += size
    x = make_images(4, seed=11)
    comps = det.score_components(x)
    test_logits = logits_of(det, x)
    for n, t in det.tasks.items():
        np.testing.assert_allclose(comps[n], np_dirichlet_sum(test_logits[n], det.dirichlet_alpha[n], t.head_sizes),
                                   rtol=1e-10)


@pytest.mark.slow
def test_train_statistics_leave_each_image_out_of_its_neighbours(dirichlet_rank, grey_images):
    det = dirichlet_rank
    bank_rows = scoring.bank_subsample(16, 6, det.config.seed)
    assert len(bank_rows) == 6 and det.feature_bank.shape[0] == 6
    feats = det.features(grey_images)
    # (the bank's features come from a batch of 6 images: equal up to the batch's float rounding)
    np.testing.assert_allclose(det.feature_bank, feats[bank_rows], rtol=1e-5, atol=1e-6)
    exclude = np.full(16, -1)
    exclude[bank_rows] = np.arange(6)
    loo = -np_knn(feats, det.feature_bank.astype(np.float64), 2, exclude)
    np.testing.assert_allclose(det.normal_stats.reference["feature_knn"], np.sort(loo), rtol=1e-10)
    assert det.normal_stats.source == "train" and det.normal_stats.anomaly_scores is None
    assert det.normal_percentile(det.score(grey_images[:2])) is None
    # rank fusion by hand on the references
    comps = det.score_components(grey_images[:3])
    want = np.mean([[np.mean(det.normal_stats.reference[n] <= v) for v in comps[n]] for n in comps], axis=0)
    np.testing.assert_allclose(det.score(grey_images[:3]), -want)


@pytest.mark.slow
@pytest.mark.parametrize("which", ["logprob_zscore", "dirichlet_rank"])
def test_normal_statistics_reload_bit_identically(which, request, tmp_path, make_images):
    det = request.getfixturevalue(which)
    det.save(tmp_path / "m")
    again = fgad.Detector.load(tmp_path / "m")
    a, b = det.normal_stats, again.normal_stats
    assert (a.source, a.mean, a.std) == (b.source, b.mean, b.std)
    for n in a.reference:
        assert a.reference[n].dtype == b.reference[n].dtype == np.float64
        np.testing.assert_array_equal(a.reference[n], b.reference[n])
    for x, y in [(a.anomaly_scores, b.anomaly_scores), (det.heldout_indices, again.heldout_indices),
                 (det.feature_bank, again.feature_bank)]:
        assert (x is None and y is None) or (x.dtype == y.dtype and np.array_equal(x, y))
    for n, heads in (det.dirichlet_alpha or {}).items():
        for h, alpha in enumerate(heads):
            np.testing.assert_array_equal(alpha, again.dirichlet_alpha[n][h])
    x = make_images(6, seed=5)
    s = det.score(x)
    np.testing.assert_array_equal(again.score(x), s)
    np.testing.assert_array_equal(again.score(x, fusion="rank"), det.score(x, fusion="rank"))
    pct = det.normal_percentile(s)
    assert (pct is None and again.normal_percentile(s) is None) or np.array_equal(again.normal_percentile(s), pct)


@pytest.mark.slow
def test_a_broken_scoring_state_is_a_model_file_error(logprob_zscore, tmp_path):
    logprob_zscore.save(tmp_path / "m")
    (tmp_path / "m" / "scoring.safetensors").unlink()
    with pytest.raises(ModelFileError, match="scoring state"):
        fgad.Detector.load(tmp_path / "m")


@pytest.mark.slow
def test_fusions_a_model_cannot_do_are_input_errors(logprob_zscore, grey_detector, grey_images):
    with pytest.raises(InputError, match="cannot add the feature-space component"):
        logprob_zscore.score(grey_images[:2], fusion="sum")
    with pytest.raises(InputError, match="needs statistics of normal images"):
        grey_detector.score(grey_images[:2], fusion="zscore")


@pytest.mark.slow
def test_old_model_folder_loads_with_the_papers_scoring(grey_detector, grey_images, tmp_path):
    grey_detector.save(tmp_path / "old")
    assert not (tmp_path / "old" / "scoring.safetensors").exists()  # the paper's folder, as before
    cfg_file = tmp_path / "old" / "config.json"
    meta = json.loads(cfg_file.read_text())
    for k in NEW_KEYS:
        del meta["config"][k]  # as written before these options existed
    cfg_file.write_text(json.dumps(meta))
    old = fgad.Detector.load(tmp_path / "old")
    assert {k: getattr(old.config, k) for k in PAPER_SETTINGS} == PAPER_SETTINGS
    np.testing.assert_array_equal(old.score(grey_images), grey_detector.score(grey_images))
    sums = old.score_tasks(grey_images)
    assert {k: v.tobytes() for k, v in old.score_components(grey_images).items()} == \
        {k: v.tobytes() for k, v in sums.items()}


# ------------------------------------------------------------------------------ the calibrated method
@pytest.mark.slow
def test_calibrated_method_roundtrip(grey_images, make_images, tmp_path):
    det = create_method("calibrated", "tiny", 0, device="cpu")
    assert {k: getattr(det.config, k) for k in IMPROVED} == IMPROVED
    det.fit(grey_images, fgad.methods.FitContext(progress=False))
    x = make_images(5, seed=7)
    scores = det.score(x)
    parts = det.score_components(x)
    assert list(parts.components) == ["geometric", "jigsaw", "feature_knn", "pixel_knn"]
    np.testing.assert_array_equal(parts.scores, scores)
    det.save(tmp_path / "cal")
    again = get_method("calibrated").loader(tmp_path / "cal")
    np.testing.assert_array_equal(again.score(x), scores)
    pct = again.detector.normal_percentile(scores)
    assert pct is not None and ((pct >= 0) & (pct <= 100)).all()
    with pytest.raises(ModelFileError, match="not a 'ours' model"):
        get_method("ours").loader(tmp_path / "cal")


def test_ours_is_fixed_to_the_papers_score():
    ours = create_method("ours", "tiny", 0)
    assert {k: getattr(ours.config, k) for k in PAPER_SETTINGS} == PAPER_SETTINGS
    for option in ("task_score", "score_fusion", "feature_knn", "jigsaw_test_draws"):
        with pytest.raises(ConfigError, match="set by the method"):
            create_method("ours", "tiny", 0, **{option: PAPER_SETTINGS[option]})


@pytest.mark.slow
def test_score_csv_has_the_normal_percentile_when_the_model_has_one(logprob_zscore, grey_detector, grey_images,
                                                                    tmp_path, capsys):
    np.savez(tmp_path / "x.npz", x_train=grey_images[:4])
    for det, name in [(logprob_zscore, "cal"), (grey_detector, "paper")]:
        det.save(tmp_path / name)
        assert main(["score", str(tmp_path / name), str(tmp_path / "x.npz"), "--quiet"]) == 0
        rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
        np.testing.assert_allclose([float(r["anomaly_score"]) for r in rows], det.score(grey_images[:4]), atol=1e-6)
        if name == "cal":
            assert list(rows[0])[:3] == ["id", "anomaly_score", "normal_percentile"]
            assert "normality_feature_knn" in rows[0]
            np.testing.assert_allclose([float(r["normal_percentile"]) for r in rows],
                                       det.normal_percentile(det.score(grey_images[:4])), atol=0.01)
        else:
            assert list(rows[0]) == ["id", "anomaly_score", "normality_geometric", "normality_jigsaw"]
