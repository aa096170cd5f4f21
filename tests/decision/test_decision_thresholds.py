"""Threshold rules of fgad.tools.decision against hand-computed cases, brute force and synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fgad import metrics
from fgad.errors import InputError
from fgad.tools.decision import DECISION_KEYS, decide, threshold_at_fpr, threshold_from_labels

# ------------------------------------------------------------------------ hand-computed: normal only

ONE_TO_20 = np.arange(1, 21, dtype=float)


@pytest.mark.parametrize("target, threshold, bpcer", [
    (0.05, 19.5, 0.05),  # k = 1 of 20 rejected: halfway between 20 and 19
    (0.10, 18.5, 0.10),  # k = 2
    (0.149, 18.5, 0.10),  # 3/20 = 0.15 > 0.149: still k = 2
    (0.15, 17.5, 0.15),  # a decimal target equal to k/n counts as met
    (0.04, 20 + 20e-6, 0.0),  # 1/20 > 0.04: nothing may be rejected; just above the highest score
    (0.0, 20 + 20e-6, 0.0),
    (1.0, 1 - 1e-6, 1.0),  # everything rejected: just below the lowest score
])
def test_threshold_at_fpr_hand_computed(target, threshold, bpcer):
    d = threshold_at_fpr(ONE_TO_20[::-1].copy(), target)  # order does not matter
    assert d["threshold"] == pytest.approx(threshold, abs=1e-12)
    assert d["bpcer"] == bpcer
    assert (d["rule"], d["target"], d["n_normal"], d["n_anomalous"]) == ("fpr", target, 20, 0)
    assert d["apcer"] is None and d["f1"] is None
    assert np.mean(ONE_TO_20 >= d["threshold"]) == bpcer


@pytest.mark.parametrize("target, threshold, bpcer", [
    (0.2, 3 + 3e-6, 0.0),  # the top run of three 3s would be 60%: ties are never split
    (0.6, 2.5, 0.6),
    (0.8, 1.5, 0.8),
])
def test_threshold_at_fpr_never_splits_ties(target, threshold, bpcer):
    d = threshold_at_fpr([1, 2, 3, 3, 3], target)
    assert d["threshold"] == pytest.approx(threshold, abs=1e-12)
    assert d["bpcer"] == bpcer


def test_threshold_at_fpr_is_the_one_minus_fpr_quantile():
    s = np.random.default_rng(0).normal(size=1000)
    d = threshold_at_fpr(s, 0.05)
    srt = np.sort(s)
    assert srt[949] < d["threshold"] < srt[950]  # 950 accepted, the 50 highest rejected
    assert d["threshold"] == pytest.approx((srt[949] + srt[950]) / 2)
    assert d["bpcer"] == 0.05


def test_threshold_at_fpr_matches_metrics_threshold_at_bpcer():
    rng = np.random.default_rng(1)
    normal, anomalous = rng.normal(size=200), rng.normal(2, 1, size=50)
    d = threshold_at_fpr(normal, 0.1)
    t_metrics = metrics.threshold_at_bpcer(np.r_[np.zeros(200), np.ones(50)], np.r_[normal, anomalous], 0.1)
    assert t_metrics > d["threshold"]  # metrics picks the observed score, we the midpoint below it
    assert np.array_equal(normal >= d["threshold"], normal >= t_metrics)


# ------------------------------------------------------------------------ hand-computed: labelled

S = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
Y = np.array([0, 0, 0, 1, 0, 1, 1, 1])


@pytest.mark.parametrize("rule, target, threshold, bpcer, apcer, f1", [
    ("bpcer", 0.25, 0.35, 0.25, 0.0, 8 / 9),  # 1 of 4 normal rejected (0.5), all 4 anomalies caught
    ("bpcer", 0.0, 0.55, 0.0, 0.25, 6 / 7),
    ("apcer", 0.25, 0.55, 0.0, 0.25, 6 / 7),  # 3 of 4 anomalies caught with no false alarm
    ("apcer", 0.0, 0.35, 0.25, 0.0, 8 / 9),
    ("f1", None, 0.35, 0.25, 0.0, 8 / 9),  # F1 by threshold: .4 .67 .86 .75 .89 .8 .73 .67
])
def test_threshold_from_labels_hand_computed(rule, target, threshold, bpcer, apcer, f1):
    d = threshold_from_labels(S, Y, rule, target)
    assert list(d) == list(DECISION_KEYS)
    assert d["threshold"] == pytest.approx(threshold, abs=1e-12)
    assert (d["bpcer"], d["apcer"]) == (bpcer, apcer)
    assert d["f1"] == pytest.approx(f1)
    assert (d["rule"], d["target"], d["n_normal"], d["n_anomalous"]) == (rule, target, 4, 4)
    json.dumps(d, allow_nan=False)


def test_f1_ties_take_the_highest_threshold():
    # rejecting {0.9} (1 TP, 1 FN) or everything (2 TP, 2 FP) both give F1 = 2/3: the highest wins
    d = threshold_from_labels([0.9, 0.8, 0.7, 0.6], [1, 0, 0, 1], "f1")
    assert d["threshold"] == pytest.approx(0.85) and d["f1"] == pytest.approx(2 / 3)


def test_bpcer_rule_rejecting_nothing_is_above_every_score():
    d = threshold_from_labels([5.0, 1.0, 2.0], [0, 1, 1], "bpcer", 0.0)
    assert d["threshold"] == pytest.approx(5 + 5e-6) and d["apcer"] == 1.0 and d["f1"] == 0.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-20, 20), st.booleans()), min_size=2, max_size=40),
       st.sampled_from(["f1", "bpcer", "apcer"]), st.floats(0, 1))
def test_labelled_rules_against_brute_force(pairs, rule, target):
    s = np.array([p[0] for p in pairs], float) / 4  # many ties
    y = np.array([p[1] for p in pairs], int)
    if y.min() == y.max():
        with pytest.raises(InputError):
            threshold_from_labels(s, y, rule, target)
        return
    d = threshold_from_labels(s, y, rule, target)
    pred = decide(s, d)
    n0, n1 = int((y == 0).sum()), int(y.sum())
    assert d["bpcer"] == pred[y == 0].sum() / n0
    assert d["apcer"] == 1 - pred[y == 1].sum() / n1
    # every operating point: reject the scores >= t for t in the distinct scores, or nothing
    cands = [np.zeros_like(y)] + [(s >= t).astype(int) for t in np.unique(s)]
    bp = [p[y == 0].mean() for p in cands]
    ap = [1 - p[y == 1].mean() for p in cands]
    f1 = [2 * (p * y).sum() / (p.sum() + n1) for p in cands]
    if rule == "bpcer":
        assert d["bpcer"] <= target + 1e-12
        assert 1 - d["apcer"] == max(1 - a for a, b in zip(ap, bp) if b <= target + 1e-12)
    elif rule == "apcer":
        assert d["apcer"] <= target + 1e-12
        assert d["bpcer"] == min(b for a, b in zip(ap, bp) if a <= target + 1e-12)
    else:
        assert d["f1"] == pytest.approx(max(f1))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-30, 30), min_size=1, max_size=60), st.floats(0, 1))
def test_fpr_rule_rejects_the_most_it_may(values, target):
    s = np.array(values, float) / 3
    d = threshold_at_fpr(s, target)
    rejected = s >= d["threshold"]
    assert d["bpcer"] == rejected.mean() <= target + 1e-12
    # rejecting the next lower distinct score as well would break the target
    accepted = s[~rejected]
    if accepted.size:
        assert np.mean(s >= accepted.max()) > target


# ------------------------------------------------------------------------ synthetic: the FPR holds out of sample


@pytest.mark.parametrize("dist", ["normal", "gumbel", "rounded"])
@pytest.mark.parametrize("target", [0.01, 0.05, 0.10])
def test_calibrated_fpr_within_two_points_on_new_normal_data(dist, target):
    rng = np.random.default_rng(7)

    def draw(n):
        if dist == "normal":
            return rng.normal(-50, 4, n)
        if dist == "gumbel":  # skewed, heavy right tail: anomaly scores often look like this
            return rng.gumbel(0, 2, n)
        return np.round(rng.normal(0, 1, n), 2)  # discretised: many ties

    d = threshold_at_fpr(draw(2000), target)
    fpr = np.mean(draw(50_000) >= d["threshold"])
    assert abs(fpr - target) <= 0.02
    assert abs(d["bpcer"] - target) <= 0.02


def test_bpcer_rule_holds_out_of_sample_too():
    rng = np.random.default_rng(8)
    s = np.r_[rng.normal(0, 1, 1000), rng.normal(3, 1, 300)]
    y = np.r_[np.zeros(1000), np.ones(300)]
    d = threshold_from_labels(s, y, "bpcer", 0.05)
    assert abs(np.mean(rng.normal(0, 1, 50_000) >= d["threshold"]) - 0.05) <= 0.02
    assert abs(np.mean(rng.normal(3, 1, 50_000) < d["threshold"]) - d["apcer"]) <= 0.02


# ------------------------------------------------------------------------ errors and decide()


@pytest.mark.parametrize("call, match", [
    (lambda: threshold_at_fpr([], 0.05), "empty"),
    (lambda: threshold_at_fpr([1.0, np.nan], 0.05), "NaN"),
    (lambda: threshold_at_fpr([1.0, 2.0], 1.5), r"\[0, 1\]"),
    (lambda: threshold_at_fpr([[1.0, 2.0]], 0.1), "1-D"),
    (lambda: threshold_from_labels([1, 2], [0, 1], "youden"), "unknown threshold rule"),
    (lambda: threshold_from_labels([1, 2], [0, 0], "f1"), "only normal"),
    (lambda: threshold_from_labels([1, 2], [0, 2], "f1"), "0 \\(normal\\) or 1"),
    (lambda: threshold_from_labels([1, 2, 3], [0, 1], "f1"), "differ in length"),
    (lambda: decide([1.0], {"threshold": None}), "finite number"),
])
def test_errors(call, match):
    with pytest.raises(InputError, match=match):
        call()


def test_decide_is_score_at_or_above_threshold():
    out = decide([0.0, 0.5, 0.5000001, 2.0], {"threshold": 0.5})
    assert out.dtype == np.int64 and out.tolist() == [0, 1, 1, 1]
    assert decide([1.0, 3.0], 2.0).tolist() == [0, 1]
