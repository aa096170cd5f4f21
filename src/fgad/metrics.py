"""Detection metrics for one-class anomaly detection: AUROC, AUPR, EER, APCER/BPCER.

Conventions, the same in every function of this module:

- ``labels``: 1 = anomaly (the **positive** class: an attack, an image of another class),
  0 = normal (bona fide). Any 1-D sequence of 0/1 (ints, bools or floats) is accepted.
- ``scores``: anomaly scores, **higher = more anomalous** (the orientation of every score the
  fgad API returns). A normality score (higher = more normal, as in the paper's eq. 3) must be
  negated first.
- Decision rule behind every threshold: an image is **rejected as anomalous when
  ``score >= threshold``** and accepted as normal otherwise.

With that rule, in ISO/IEC 30107-3 (presentation attack detection) terms:

- APCER (attack presentation classification error rate) = the fraction of anomalies accepted
  as normal = the false negative rate = ``1 - TPR``;
- BPCER (bona fide presentation classification error rate) = the fraction of normal images
  rejected = the false positive rate ``FPR``.

AUROC does not depend on which class is called positive (swapping the labels and negating the
scores gives the same number), so "normal-positive" AUROC as in the paper equals the AUROC here.
AUPR does depend on it: :func:`aupr` takes the anomalies as positives, :func:`aupr_normal` the
normal images (with negated scores).

Every function checks its input and raises :class:`fgad.errors.InputError` for lengths that
differ, empty input, NaN or infinite scores, labels outside {0, 1}, or a test set with one class
only (the metrics are undefined there). This module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "auroc",
    "aupr",
    "aupr_normal",
    "roc_points",
    "eer",
    "apcer_at_bpcer",
    "bpcer_at_apcer",
    "threshold_at_bpcer",
    "evaluate",
    "EVALUATE_KEYS",
    "RocCurve",
    "as_1d",
    "check_labels_scores",
    "check_rate",
]

#: The keys of the dictionary :func:`evaluate` returns, in order.
EVALUATE_KEYS = (
    "auroc",
    "aupr",
    "aupr_normal",
    "eer",
    "apcer_at_bpcer5",
    "bpcer_at_apcer5",
    "n_normal",
    "n_anomalous",
)


# --------------------------------------------------------------------------------------------
# input checking


def as_1d(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-D numeric array, or InputError naming ``what``."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a 1-D sequence of numbers: {exc}") from None
    if arr.ndim != 1:
        raise InputError(f"{what} must be 1-D, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{what} must be numbers, got dtype {arr.dtype}")
    return arr


def check_labels_scores(labels: Any, scores: Any, metric: str = "AUROC") -> tuple[np.ndarray, np.ndarray]:
    """Return (labels as bool, scores as float64) or raise InputError."""
    y = as_1d(labels, "labels")
    s = as_1d(scores, "scores")
    if y.shape[0] != s.shape[0]:
        raise InputError(f"labels and scores differ in length: {y.shape[0]} labels, {s.shape[0]} scores")
    if y.shape[0] == 0:
        raise InputError(f"{metric} is undefined: labels and scores are empty")
    s = s.astype(np.float64, copy=False)
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(
            f"scores contain {int(bad.sum())} NaN or infinite value(s) (first at index {int(np.argmax(bad))})"
        )
    ok = (y == 0) | (y == 1)
    if not ok.all():
        i = int(np.argmax(~ok))
        raise InputError(f"labels must be 0 (normal) or 1 (anomaly), got {y[i]!r} at index {i}")
    y = y.astype(bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        raise InputError(f"{metric} is undefined: the test set has only normal images (label 0)")
    if n_pos == y.shape[0]:
        raise InputError(f"{metric} is undefined: the test set has only anomalous images (label 1)")
    return y, s


def check_rate(value: float, name: str) -> float:
    """``value`` as a float in [0, 1], or InputError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number in [0, 1], got {value!r}") from None
    if not (0.0 <= v <= 1.0):
        raise InputError(f"{name} must be in [0, 1], got {value!r}")
    return v


# --------------------------------------------------------------------------------------------
# the ROC, computed once per call

#: Rates within this of a target count as meeting it (k/n compared with a decimal target).
RATE_TOLERANCE = 1e-12


class RocCurve:
    """Counts at every distinct threshold, thresholds descending, starting at +inf.

    Built from checked input (:func:`check_labels_scores`): ``y`` bool, True = anomaly; ``s``
    float64 anomaly scores (higher = more anomalous).

    ``fps[i]`` / ``tps[i]``: the number of normal / anomalous images with
    ``score >= thresholds[i]``; ``fps[0] = tps[0] = 0`` at ``+inf``.
    """

    __slots__ = ("fps", "tps", "thresholds", "n_neg", "n_pos")

    def __init__(self, y: np.ndarray, s: np.ndarray) -> None:
        order = np.argsort(-s, kind="mergesort")
        s_sorted = s[order]
        # last index of every run of equal scores
        last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.shape[0] - 1]
        tps = np.cumsum(y[order], dtype=np.int64)[last]
        self.tps = np.r_[0, tps]
        self.fps = np.r_[0, (last + 1) - tps]
        self.thresholds = np.r_[np.inf, s_sorted[last]]
        self.n_neg = int(self.fps[-1])
        self.n_pos = int(self.tps[-1])

    def auroc(self) -> float:
        # trapezoid rule over every distinct threshold = Mann-Whitney U, ties counting 1/2
        area2 = np.sum(np.diff(self.fps) * (self.tps[1:] + self.tps[:-1]))
        return float(area2 / (2.0 * self.n_neg * self.n_pos))

    def average_precision(self) -> float:
        tps = self.tps[1:]
        precision = tps / (tps + self.fps[1:])
        recall = tps / self.n_pos
        return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))

    def eer(self) -> float:
        fpr = self.fps / self.n_neg
        fnr = 1.0 - self.tps / self.n_pos
        d = fpr - fnr  # strictly increasing along the curve: -1 at +inf, 1 at the lowest score
        i = int(np.argmax(d >= 0.0))
        if d[i] == 0.0:
            return float(fpr[i])
        t = -d[i - 1] / (d[i] - d[i - 1])
        return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))

    def at_bpcer(self, target: float) -> tuple[float, float, float]:
        """(threshold, apcer, bpcer) at the lowest threshold whose BPCER <= target."""
        bp = self.fps / self.n_neg  # non-decreasing as the threshold decreases
        i = int(np.flatnonzero(bp <= target + RATE_TOLERANCE)[-1])  # index 0 (+inf) always qualifies
        return float(self.thresholds[i]), float(1.0 - self.tps[i] / self.n_pos), float(bp[i])

    def at_apcer(self, target: float) -> tuple[float, float, float]:
        """(threshold, apcer, bpcer) at the highest threshold whose APCER <= target."""
        ap = 1.0 - self.tps / self.n_pos  # non-increasing as the threshold decreases
        i = int(np.flatnonzero(ap <= target + RATE_TOLERANCE)[0])  # the last index (APCER 0) qualifies
        return float(self.thresholds[i]), float(ap[i]), float(self.fps[i] / self.n_neg)


def _curve(labels: Any, scores: Any, metric: str) -> RocCurve:
    return RocCurve(*check_labels_scores(labels, scores, metric))


# --------------------------------------------------------------------------------------------
# public functions


def roc_points(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ROC curve, anomalies as positives, one point per distinct score.

    Returns ``(fpr, tpr, thresholds)``, thresholds in decreasing order. Point ``i`` is the
    decision "anomalous when ``score >= thresholds[i]``"; the first threshold is ``+inf``
    (nothing rejected: the point (0, 0)), the last is the lowest score (everything rejected:
    the point (1, 1)). ``labels``: 1 = anomaly; ``scores``: higher = more anomalous.
    """
    c = _curve(labels, scores, "the ROC curve")
    return c.fps / c.n_neg, c.tps / c.n_pos, c.thresholds


def auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve, in [0, 1].

    The probability that a random anomaly scores higher than a random normal image, ties
    counting 1/2. ``labels``: 1 = anomaly; ``scores``: higher = more anomalous.
    """
    return _curve(labels, scores, "AUROC").auroc()


def aupr(labels: Any, scores: Any) -> float:
    """Area under the precision-recall curve with the anomalies as positives.

    Computed as average precision, ``sum_k (R_k - R_(k-1)) * P_k`` over the distinct
    thresholds, without linear interpolation (as :func:`sklearn.metrics.average_precision_score`).
    ``labels``: 1 = anomaly; ``scores``: higher = more anomalous.
    """
    return _curve(labels, scores, "AUPR").average_precision()


def aupr_normal(labels: Any, scores: Any) -> float:
    """Average precision with the normal images as positives (and the scores negated).

    ``labels``: 1 = anomaly, as everywhere in this module; ``scores``: higher = more anomalous.
    """
    y, s = check_labels_scores(labels, scores, "AUPR")
    return RocCurve(~y, -s).average_precision()


def eer(labels: Any, scores: Any) -> float:
    """Equal error rate: the rate where FPR (= BPCER) equals FNR (= APCER), in [0, 1].

    Found on the ROC polyline (every distinct threshold, joined by straight segments): the
    point where ``FPR = 1 - TPR``, linearly interpolated between the two ROC points around it.
    ``labels``: 1 = anomaly; ``scores``: higher = more anomalous.
    """
    return _curve(labels, scores, "EER").eer()


def apcer_at_bpcer(labels: Any, scores: Any, bpcer: float = 0.05) -> float:
    """APCER (the fraction of anomalies accepted as normal) at a BPCER of at most ``bpcer``.

    The threshold is the **lowest threshold whose BPCER (the fraction of normal images
    rejected, i.e. with ``score >= threshold``) is <= ``bpcer``**: of the operating points that
    keep the rejected normal images within the target, the one that rejects the most anomalies.
    Only the observed scores (and ``+inf``) are candidate thresholds, nothing is interpolated,
    so the BPCER reached may be below the target: with fewer than 20 normal images a 5% target
    means no normal image rejected. ``labels``: 1 = anomaly; ``scores``: higher = more
    anomalous. Returns a fraction in [0, 1]; the default gives the paper's APCER@5%BPCER.
    """
    target = check_rate(bpcer, "bpcer")
    return _curve(labels, scores, "APCER").at_bpcer(target)[1]


def threshold_at_bpcer(labels: Any, scores: Any, bpcer: float = 0.05) -> float:
    """The threshold :func:`apcer_at_bpcer` uses: the lowest one with BPCER <= ``bpcer``.

    Images with ``score >= threshold`` are rejected as anomalous. The result is one of the
    observed scores, or ``+inf`` when rejecting even the highest-scoring normal image would
    exceed the target. ``scores``: higher = more anomalous.
    """
    target = check_rate(bpcer, "bpcer")
    return _curve(labels, scores, "the threshold").at_bpcer(target)[0]


def bpcer_at_apcer(labels: Any, scores: Any, apcer: float = 0.05) -> float:
    """BPCER (the fraction of normal images rejected) at an APCER of at most ``apcer``.

    The threshold is the **highest threshold whose APCER (the fraction of anomalies accepted,
    i.e. with ``score < threshold``) is <= ``apcer``**: of the operating points that let at
    most the target fraction of anomalies through, the one that rejects the fewest normal
    images. Only the observed scores are candidate thresholds, nothing is interpolated.
    ``labels``: 1 = anomaly; ``scores``: higher = more anomalous. Returns a fraction in [0, 1].
    """
    target = check_rate(apcer, "apcer")
    return _curve(labels, scores, "BPCER").at_apcer(target)[2]


def evaluate(labels: Any, scores: Any) -> dict[str, float | int]:
    """Every metric at once: a dict with the keys :data:`EVALUATE_KEYS`, in that order.

    ``auroc``, ``aupr`` (anomalies positive), ``aupr_normal`` (normal images positive),
    ``eer``, ``apcer_at_bpcer5`` (APCER at BPCER <= 5%), ``bpcer_at_apcer5`` (BPCER at
    APCER <= 5%): fractions in [0, 1], as the functions of the same names compute them;
    ``n_normal`` and ``n_anomalous``: counts. ``labels``: 1 = anomaly; ``scores``: higher =
    more anomalous.
    """
    y, s = check_labels_scores(labels, scores, "AUROC")
    c = RocCurve(y, s)
    return {
        "auroc": c.auroc(),
        "aupr": c.average_precision(),
        "aupr_normal": RocCurve(~y, -s).average_precision(),
        "eer": c.eer(),
        "apcer_at_bpcer5": c.at_bpcer(0.05)[1],
        "bpcer_at_apcer5": c.at_apcer(0.05)[2],
        "n_normal": c.n_neg,
        "n_anomalous": c.n_pos,
    }
