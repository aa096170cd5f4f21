"""fgad.metrics against hand-computed toy cases, sklearn and brute-force references.

Convention under test: labels 1 = anomaly (positive), scores higher = more anomalous,
an image is rejected as anomalous when score >= threshold.
"""

from __future__ import annotations

import ast
import math
from fractions import Fraction as F
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from fgad import metrics
from fgad.errors import InputError

# --------------------------------------------------------------------------------------------
# toy case A: the classic 4-score example (no ties)
#   sorted by score, descending: 0.8 a, 0.4 n, 0.35 a, 0.1 n
#   ROC points (fpr, tpr): (0,0) (0,1/2) (1/2,1/2) (1/2,1) (1,1)
#   AUROC: pairs (anomaly > normal): 0.8 beats 2, 0.35 beats 1 -> 3/4
#   AP (anomaly positive): at 0.8 P=1 R=1/2; at 0.4 P=1/2 (R unchanged); at 0.35 P=2/3 R=1
#       -> 1/2 * 1 + 1/2 * 2/3 = 5/6
#   EER: FPR - FNR at the ROC points: -1, -1/2, 0 -> EER = FPR at (1/2, 1/2) = 1/2

A_LABELS = [0, 0, 1, 1]
A_SCORES = [0.1, 0.4, 0.35, 0.8]


def test_toy_a_roc_points_auroc_aupr_eer():
    fpr, tpr, thr = metrics.roc_points(A_LABELS, A_SCORES)
    assert fpr.tolist() == pytest.approx([0, 0, F(1, 2), F(1, 2), 1])
    assert tpr.tolist() == pytest.approx([0, F(1, 2), F(1, 2), 1, 1])
    assert thr.tolist() == [math.inf, 0.8, 0.4, 0.35, 0.1]
    assert metrics.auroc(A_LABELS, A_SCORES) == pytest.approx(F(3, 4))
    assert metrics.aupr(A_LABELS, A_SCORES) == pytest.approx(F(5, 6))
    assert metrics.eer(A_LABELS, A_SCORES) == pytest.approx(F(1, 2))


# --------------------------------------------------------------------------------------------
# toy case B: ties across the classes, an interpolated EER
#   normals [0.1, 0.5], anomalies [0.5, 0.5, 0.9]
#   thresholds: inf (fp 0, tp 0); 0.9 (0, 1); 0.5 (1, 3); 0.1 (2, 3)
#   AUROC: 0.9 beats 2; each 0.5 beats 0.1 and ties 0.5 -> 1 + 1/2 each -> (2 + 3/2 + 3/2) / 6 = 5/6
#   AP: at 0.9 P = 1, R = 1/3; at 0.5 P = 3/4, R = 1 -> 1/3 + 2/3 * 3/4 = 5/6
#   AUPR normal-positive, scores negated: -0.1 (n), then {-0.5: n, a, a}, then -0.9 (a)
#       at -0.1 P = 1, R = 1/2; at -0.5 P = 2/4, R = 1 -> 1/2 + 1/2 * 1/2 = 3/4
#   EER: (FPR, FNR) goes (0, 2/3) at 0.9 -> (1/2, 0) at 0.5; FPR - FNR goes -2/3 -> 1/2;
#       crossing at t = (2/3) / (2/3 + 1/2) = 4/7 -> FPR = 4/7 * 1/2 = 2/7, FNR = 2/3 * 3/7 = 2/7

B_LABELS = [0, 0, 1, 1, 1]
B_SCORES = [0.1, 0.5, 0.5, 0.5, 0.9]


def test_toy_b_ties():
    fpr, tpr, thr = metrics.roc_points(B_LABELS, B_SCORES)
    assert fpr.tolist() == pytest.approx([0, 0, F(1, 2), 1])
    assert tpr.tolist() == pytest.approx([0, F(1, 3), 1, 1])
    assert thr.tolist() == [math.inf, 0.9, 0.5, 0.1]
    assert metrics.auroc(B_LABELS, B_SCORES) == pytest.approx(F(5, 6))
    assert metrics.aupr(B_LABELS, B_SCORES) == pytest.approx(F(5, 6))
    assert metrics.aupr_normal(B_LABELS, B_SCORES) == pytest.approx(F(3, 4))
    assert metrics.eer(B_LABELS, B_SCORES) == pytest.approx(F(2, 7))


# --------------------------------------------------------------------------------------------
# toy case C: operating points (ISO/IEC 30107-3)
#   normals [1, 2, 3, 4, 5, 6] (6 bona fide), anomalies [3.5, 5, 7, 8] (4 attacks)
#   threshold: (normals rejected = score >= t, anomalies rejected)
#       inf (0, 0)  8 (0, 1)  7 (0, 2)  6 (1, 2)  5 (2, 3)  4 (3, 3)  3.5 (3, 4)  3 (4, 4) ...
#   BPCER = normals rejected / 6, APCER = 1 - anomalies rejected / 4
#   APCER @ BPCER <= 5%  : only thresholds with 0 normals rejected; lowest is 7 -> APCER 1/2
#   APCER @ BPCER <= 1/3 : <= 2 normals rejected; lowest is 5 -> APCER 1/4
#   APCER @ BPCER <= 0.4 : still <= 2 normals (2.4); lowest 5 -> APCER 1/4
#   APCER @ BPCER <= 1/2 : <= 3 normals; lowest 3.5 -> APCER 0
#   BPCER @ APCER <= 5%  : all 4 anomalies rejected; highest such threshold 3.5 -> BPCER 3/6
#   BPCER @ APCER <= 1/4 : >= 3 anomalies rejected; highest 5 -> BPCER 2/6
#   BPCER @ APCER <= 1/2 : >= 2 anomalies rejected; highest 7 -> BPCER 0
#   EER: at 6 (FPR 1/6, FNR 1/2), at 5 (1/3, 1/4); FPR - FNR: -1/3 -> 1/12;
#       t = (1/3) / (5/12) = 4/5; FPR = 1/6 + 4/5 * 1/6 = 3/10 (FNR = 1/2 - 4/5 * 1/4 = 3/10)
#   AUROC: 8 and 7 beat 6 each, 5 beats 4 + ties 1, 3.5 beats 3 -> (6 + 6 + 4.5 + 3) / 24 = 13/16

C_LABELS = [0] * 6 + [1] * 4
C_SCORES = [1, 2, 3, 4, 5, 6, 3.5, 5, 7, 8]


@pytest.mark.parametrize(
    ("bpcer", "apcer", "threshold"),
    [(0.05, F(1, 2), 7.0), (F(1, 3), F(1, 4), 5.0), (0.4, F(1, 4), 5.0), (0.5, 0, 3.5), (0.0, F(1, 2), 7.0)],
)
def test_toy_c_apcer_at_bpcer(bpcer, apcer, threshold):
    assert metrics.apcer_at_bpcer(C_LABELS, C_SCORES, bpcer=float(bpcer)) == pytest.approx(apcer)
    assert metrics.threshold_at_bpcer(C_LABELS, C_SCORES, bpcer=float(bpcer)) == threshold


@pytest.mark.parametrize(("apcer", "bpcer"), [(0.05, F(1, 2)), (0.25, F(1, 3)), (0.5, 0), (0.0, F(1, 2))])
def test_toy_c_bpcer_at_apcer(apcer, bpcer):
    assert metrics.bpcer_at_apcer(C_LABELS, C_SCORES, apcer=apcer) == pytest.approx(bpcer)


def test_toy_c_evaluate():
    m = metrics.evaluate(C_LABELS, C_SCORES)
    assert tuple(m) == metrics.EVALUATE_KEYS
    assert m["auroc"] == pytest.approx(F(13, 16))
    assert m["eer"] == pytest.approx(F(3, 10))
    assert m["apcer_at_bpcer5"] == pytest.approx(F(1, 2))
    assert m["bpcer_at_apcer5"] == pytest.approx(F(1, 2))
    assert m["n_normal"] == 6 and m["n_anomalous"] == 4
    assert isinstance(m["n_normal"], int)
    assert m["aupr"] == pytest.approx(average_precision_score(C_LABELS, C_SCORES))
    assert m["aupr_normal"] == pytest.approx(
        average_precision_score(1 - np.array(C_LABELS), -np.array(C_SCORES, dtype=float))
    )


def test_threshold_at_bpcer_infinite_when_no_normal_may_be_rejected():
    # the highest score is a normal image: no observed threshold keeps BPCER at 0
    assert metrics.threshold_at_bpcer([1, 0], [0.2, 0.9], bpcer=0.0) == math.inf
    assert metrics.apcer_at_bpcer([1, 0], [0.2, 0.9], bpcer=0.0) == 1.0


def test_extremes():
    perfect = ([0, 0, 1, 1], [0.0, 0.1, 0.8, 0.9])
    assert metrics.auroc(*perfect) == 1.0
    assert metrics.eer(*perfect) == 0.0
    assert metrics.aupr(*perfect) == 1.0
    reversed_ = ([1, 1, 0, 0], [0.0, 0.1, 0.8, 0.9])
    assert metrics.auroc(*reversed_) == 0.0
    assert metrics.eer(*reversed_) == 1.0
    tied = ([0, 1, 0, 1], [0.3] * 4)
    assert metrics.auroc(*tied) == 0.5
    assert metrics.eer(*tied) == 0.5


def test_accepts_bools_floats_and_arrays():
    y = np.array([False, False, True, True])
    assert metrics.auroc(y, np.array(A_SCORES, dtype=np.float32)) == pytest.approx(0.75)
    assert metrics.auroc([0.0, 0.0, 1.0, 1.0], [1, 4, 3, 8]) == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------
# input validation


@pytest.mark.parametrize(
    ("labels", "scores", "match"),
    [
        ([0, 1, 1], [0.1, 0.2], "differ in length"),
        ([], [], "empty"),
        ([0, 1], [0.1, float("nan")], "NaN or infinite"),
        ([0, 1], [0.1, float("inf")], "NaN or infinite"),
        ([0, 2], [0.1, 0.2], "0 .normal. or 1 .anomaly."),
        ([0, -1], [0.1, 0.2], "0 .normal. or 1 .anomaly."),
        ([0, 0.5], [0.1, 0.2], "0 .normal. or 1 .anomaly."),
        ([0, 0, 0], [0.1, 0.2, 0.3], "AUROC is undefined: the test set has only normal images"),
        ([1, 1], [0.1, 0.2], "AUROC is undefined: the test set has only anomalous images"),
        (["a", "b"], [0.1, 0.2], "numbers"),
        ([0, 1], [None, 0.2], "numbers"),
        ([[0, 1]], [[0.1, 0.2]], "1-D"),
    ],
)
def test_bad_input_raises_input_error(labels, scores, match):
    with pytest.raises(InputError, match=match):
        metrics.auroc(labels, scores)
    with pytest.raises(InputError):
        metrics.evaluate(labels, scores)


@pytest.mark.parametrize(
    "fn", [metrics.aupr, metrics.aupr_normal, metrics.eer, metrics.roc_points, metrics.apcer_at_bpcer,
           metrics.bpcer_at_apcer, metrics.threshold_at_bpcer],
)
def test_every_function_rejects_a_single_class(fn):
    with pytest.raises(InputError, match="undefined: the test set has only normal images"):
        fn([0, 0], [0.1, 0.2])


@pytest.mark.parametrize("target", [-0.1, 1.5, float("nan"), "x"])
def test_bad_targets(target):
    with pytest.raises(InputError):
        metrics.apcer_at_bpcer(C_LABELS, C_SCORES, bpcer=target)
    with pytest.raises(InputError):
        metrics.bpcer_at_apcer(C_LABELS, C_SCORES, apcer=target)


def test_does_not_import_torch():
    # the module itself (the package __init__ may import torch for the detector)
    tree = ast.parse(Path(metrics.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
    assert imported <= {"__future__", "typing", "numpy", "errors"}


# --------------------------------------------------------------------------------------------
# random data: sklearn and brute force


def _brute_force_auroc(y, s):
    pos = [v for v, t in zip(s, y) if t == 1]
    neg = [v for v, t in zip(s, y) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def _brute_force_operating_points(y, s, target):
    """APCER at the lowest threshold with BPCER <= target; BPCER at the highest with APCER <= target."""
    y = np.asarray(y)
    s = np.asarray(s, dtype=float)
    candidates = sorted(set(s.tolist()) | {math.inf})
    bpcer = {t: np.mean(s[y == 0] >= t) for t in candidates}  # normals rejected
    apcer = {t: np.mean(s[y == 1] < t) for t in candidates}  # anomalies accepted
    t_b = min(t for t in candidates if bpcer[t] <= target + 1e-12)
    t_a = max(t for t in candidates if apcer[t] <= target + 1e-12)
    return apcer[t_b], bpcer[t_a], t_b


@st.composite
def _labelled_scores(draw):
    n = draw(st.integers(min_value=2, max_value=40))
    labels = draw(st.lists(st.integers(0, 1), min_size=n, max_size=n).filter(lambda v: 0 < sum(v) < len(v)))
    if draw(st.booleans()):  # few distinct values: many ties
        scores = draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    else:
        scores = draw(st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=n, max_size=n))
    return labels, [float(v) for v in scores]


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(_labelled_scores())
def test_auroc_matches_sklearn_and_pairwise_count(data):
    labels, scores = data
    got = metrics.auroc(labels, scores)
    assert got == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert got == pytest.approx(_brute_force_auroc(labels, scores), abs=1e-12)
    # the same number with normal as the positive class and negated scores
    assert metrics.auroc([1 - v for v in labels], [-v for v in scores]) == pytest.approx(got, abs=1e-12)


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(_labelled_scores())
def test_aupr_matches_sklearn(data):
    labels, scores = data
    assert metrics.aupr(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    flipped = [1 - v for v in labels]
    negated = [-v for v in scores]
    assert metrics.aupr_normal(labels, scores) == pytest.approx(
        average_precision_score(flipped, negated), abs=1e-12
    )


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(_labelled_scores(), st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.5, 1.0]))
def test_operating_points_match_brute_force(data, target):
    labels, scores = data
    apcer, bpcer, threshold = _brute_force_operating_points(labels, scores, target)
    assert metrics.apcer_at_bpcer(labels, scores, bpcer=target) == pytest.approx(apcer)
    assert metrics.bpcer_at_apcer(labels, scores, apcer=target) == pytest.approx(bpcer)
    assert metrics.threshold_at_bpcer(labels, scores, bpcer=target) == threshold


@pytest.mark.slow
@settings(max_examples=100, deadline=None)
@given(_labelled_scores())
def test_eer_lies_on_the_roc_where_fpr_equals_fnr(data):
    labels, scores = data
    e = metrics.eer(labels, scores)
    fpr, tpr, _ = metrics.roc_points(labels, scores)
    fnr = 1 - tpr
    assert 0.0 <= e <= 1.0
    # some ROC segment contains the point (e, e) in (FPR, FNR) coordinates
    found = False
    for i in range(1, len(fpr)):
        d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
        if d0 <= 0 <= d1 and d1 > d0:
            t = -d0 / (d1 - d0)
            assert fpr[i - 1] + t * (fpr[i] - fpr[i - 1]) == pytest.approx(e)
            assert fnr[i - 1] + t * (fnr[i] - fnr[i - 1]) == pytest.approx(e)
            found = True
            break
    assert found
