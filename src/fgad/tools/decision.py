"""From anomaly scores to decisions: thresholds chosen on held-out data.

Conventions, as in :mod:`fgad.metrics`:

- ``scores`` are anomaly scores, **higher = more anomalous**;
- ``labels``: 1 = anomaly, 0 = normal;
- an image is **declared anomalous when** ``score >= threshold`` (``predict`` returns 1),
  normal otherwise (0);
- BPCER = the fraction of normal images declared anomalous = the false positive rate (FPR);
  APCER = the fraction of anomalies declared normal = the false negative rate.

Where the threshold lies. Every rule picks an operating point, i.e. a set of rejected images
"all scores >= some observed score ``s_hi``"; the threshold is then put **halfway between**
``s_hi`` and the next lower distinct observed score ``s_lo``. It rejects exactly the same
calibration images as ``s_hi`` would (the counts and rates reported are those of this
threshold), but an image scored again does not flip on float rounding at the boundary. When
the rule rejects no image the threshold lies just above the highest score
(``max + 1e-6 * max(1, |max|)``); when it rejects every image, just below the lowest.

Rules:

- :func:`threshold_at_fpr` (normal images only): the largest number ``k`` of normal images
  with ``k / n_normal <= target_fpr`` may be rejected; the threshold sits between the
  ``k``-th highest normal score and the next lower one, i.e. at the ``1 - k/n`` quantile of
  the normal scores, the **(1 − target_fpr) quantile** rounded towards fewer rejections.
  Ties are never split: if the boundary falls inside a run of equal scores, the whole run is
  accepted. With fewer than ``1 / target_fpr`` normal images no image can be rejected
  (``k = 0``) and the threshold is above the highest normal score; the expected FPR on new
  normal images is about ``k / (n_normal + 1)``.
- :func:`threshold_from_labels` with ``rule="bpcer"``: the lowest threshold whose BPCER on the
  labelled set is ``<= target`` (the most anomalies caught under that constraint, as
  :func:`fgad.metrics.threshold_at_bpcer`); ``"apcer"``: the highest threshold whose APCER is
  ``<= target`` (the fewest normal images rejected, as :func:`fgad.metrics.bpcer_at_apcer`);
  ``"f1"``: the threshold with the best F1 (anomalies positive), the highest such threshold
  when several tie.

Every function returns a JSON-serialisable dict (see :data:`DECISION_KEYS`), the one
:meth:`fgad.Detector.calibrate` stores with the model. This module does not import torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.scoring import FUSIONS
from ..errors import InputError
from ..metrics import RocCurve, as_1d, check_labels_scores, check_rate

__all__ = ["threshold_at_fpr", "threshold_from_labels", "calibrate_scores", "decide", "check_decision",
           "DECISION_KEYS", "RULES"]

#: Rules of :func:`threshold_from_labels`.
RULES = ("f1", "bpcer", "apcer")

#: Keys of every decision dict, in order. ``bpcer`` = FPR (normal images rejected);
#: ``apcer`` and ``f1`` are ``None`` when there were no anomalous images.
DECISION_KEYS = ("threshold", "rule", "target", "n_normal", "n_anomalous", "bpcer", "apcer", "f1", "decide")

_DECIDE = "anomalous when anomaly_score >= threshold"
_TOL = 1e-12  # rates within this of a target meet it (k/n against a decimal target)


def _gap(value: float) -> float:
    return 1e-6 * max(1.0, abs(value))


def _between(distinct_desc: np.ndarray, i: int) -> float:
    """Threshold that rejects scores >= distinct_desc[i - 1] (i >= 1) and nothing lower.

    ``i = 0`` rejects nothing. ``distinct_desc``: the distinct scores, descending.
    """
    if i == 0:
        return float(distinct_desc[0] + _gap(distinct_desc[0]))
    hi = distinct_desc[i - 1]
    if i == len(distinct_desc):
        return float(hi - _gap(hi))
    return float((hi + distinct_desc[i]) / 2.0)


def _result(curve: RocCurve, i: int, rule: str, target: float | None) -> dict[str, Any]:
    fp, tp = int(curve.fps[i]), int(curve.tps[i])
    n_neg, n_pos = curve.n_neg, curve.n_pos
    return {
        "threshold": _between(curve.thresholds[1:], i),
        "rule": rule,
        "target": target,
        "n_normal": n_neg,
        "n_anomalous": n_pos,
        "bpcer": fp / n_neg,
        "apcer": (1.0 - tp / n_pos) if n_pos else None,
        "f1": (2.0 * tp / (2 * tp + fp + (n_pos - tp)) if tp else 0.0) if n_pos else None,
        "decide": _DECIDE,
    }


def _finite_scores(scores: Any, what: str) -> np.ndarray:
    s = as_1d(scores, what).astype(np.float64, copy=False)
    if s.shape[0] == 0:
        raise InputError(f"{what}: empty; a threshold needs at least one score")
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(f"{what} contain {int(bad.sum())} NaN or infinite value(s) "
                         f"(first at index {int(np.argmax(bad))})")
    return s


def threshold_at_fpr(normal_scores: Any, target_fpr: float = 0.05) -> dict[str, Any]:
    """Threshold from held-out **normal** images: at most ``target_fpr`` of them rejected.

    ``normal_scores``: anomaly scores (higher = more anomalous) of normal images not used for
    training (training images score too normal: the threshold would be too low). The
    threshold is the (1 − ``target_fpr``) quantile of these scores as the module docstring
    details: the fraction of them with ``score >= threshold`` is the largest ``k / n`` that is
    ``<= target_fpr``.

    Returns a dict with the keys :data:`DECISION_KEYS`: ``rule = "fpr"``, ``bpcer`` = the
    fraction of these normal images rejected; ``apcer``, ``f1`` = ``None``.
    """
    target = check_rate(target_fpr, "target_fpr")
    s = _finite_scores(normal_scores, "normal scores")
    curve = RocCurve(np.zeros(s.shape[0], dtype=bool), s)
    i = int(np.flatnonzero(curve.fps / curve.n_neg <= target + _TOL)[-1])
    return _result(curve, i, "fpr", target)


def threshold_from_labels(scores: Any, labels: Any, rule: str = "f1", target: float | None = 0.05) -> dict[str, Any]:
    """Threshold from a labelled set of normal (0) and anomalous (1) images.

    ``scores``: anomaly scores, higher = more anomalous. ``rule``:

    - ``"bpcer"``: the lowest threshold with BPCER (normal images rejected) ``<= target``;
    - ``"apcer"``: the highest threshold with APCER (anomalies accepted) ``<= target``;
    - ``"f1"``: the best F1 with the anomalies as positives (``target`` is ignored and
      stored as ``None``); among ties, the highest threshold.

    Returns a dict with the keys :data:`DECISION_KEYS`; the rates are those reached on this set.
    """
    if rule not in RULES:
        raise InputError(f"unknown threshold rule {rule!r}; known: {', '.join(RULES)}")
    y, s = check_labels_scores(labels, scores, "a labelled threshold")
    curve = RocCurve(y, s)
    if rule == "f1":
        tp, fp = curve.tps.astype(np.float64), curve.fps.astype(np.float64)
        f1 = np.divide(2 * tp, 2 * tp + fp + (curve.n_pos - tp), out=np.zeros_like(tp), where=tp > 0)
        i = int(np.argmax(f1))  # the first maximum = the highest threshold among ties
        return _result(curve, i, "f1", None)
    t = check_rate(0.05 if target is None else target, "target")
    if rule == "bpcer":
        i = int(np.flatnonzero(curve.fps / curve.n_neg <= t + _TOL)[-1])
    else:
        i = int(np.flatnonzero(1.0 - curve.tps / curve.n_pos <= t + _TOL)[0])
    return _result(curve, i, rule, t)


def check_calibration_args(fusion: str, rule: str | None, target_fpr: float, target: float | None) -> None:
    """The checks :func:`calibrate_scores` makes on its options, for callers that score first;
    ``fusion``: one of :data:`fgad.core.scoring.FUSIONS` (a model without normal statistics
    refuses ``zscore``/``rank`` when it scores, :meth:`fgad.Detector.fuse_components`)."""
    if fusion not in FUSIONS:
        raise InputError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if rule is not None and rule not in (*RULES, "fpr"):
        raise InputError(f"unknown threshold rule {rule!r}; known: fpr, {', '.join(RULES)}")
    if target is None:
        check_rate(target_fpr, "target_fpr")
    else:
        check_rate(target, "target")


def calibrate_scores(normal_scores: Any = None, scores: Any = None, labels: Any = None, *,
                     target_fpr: float = 0.05, rule: str | None = None,
                     target: float | None = None) -> dict[str, Any]:
    """The rule dispatch of :meth:`fgad.Detector.calibrate`, on anomaly scores.

    ``normal_scores`` (label 0) and/or ``scores`` with ``labels`` (1 = anomaly) are pooled.
    Without anomalies: :func:`threshold_at_fpr` at ``target`` (default ``target_fpr``); rule
    ``None``, ``"fpr"`` or ``"bpcer"`` only. With anomalies: :func:`threshold_from_labels`,
    rule ``None`` / ``"fpr"`` meaning ``"bpcer"`` at ``target_fpr``.
    """
    check_calibration_args("sum", rule, target_fpr, target)
    goal = target_fpr if target is None else target
    parts_s, parts_y = [], []
    if normal_scores is not None:
        s = _finite_scores(normal_scores, "normal scores")
        parts_s.append(s)
        parts_y.append(np.zeros(s.shape[0], dtype=np.int64))
    if scores is not None:
        if labels is None:
            raise InputError("calibrate: scores need labels (1 = anomaly, 0 = normal)")
        s = as_1d(scores, "scores")
        y = as_1d(labels, "labels")
        if y.shape[0] != s.shape[0]:
            raise InputError(f"calibrate: {s.shape[0]} images but {y.shape[0]} labels")
        parts_s.append(s)
        parts_y.append(y)
    elif labels is not None:
        raise InputError("calibrate: labels given without images")
    if not parts_s:
        raise InputError("calibrate: give held-out normal images or labelled images")
    s, y = np.concatenate(parts_s), np.concatenate(parts_y)
    if np.any(y == 1):
        return threshold_from_labels(s, y, "bpcer" if rule in (None, "fpr") else rule, goal)
    if rule in ("f1", "apcer"):
        raise InputError(f"threshold rule {rule!r} needs anomalous images (label 1); with normal "
                         "images only, use a target false positive rate")
    if np.any(y != 0):
        raise InputError("labels must be 0 (normal) or 1 (anomaly)")
    return threshold_at_fpr(s, goal)


def check_decision(decision: Any, where: str = "decision") -> dict[str, Any]:
    """Validate a decision dict (e.g. read from a model's config.json); return it."""
    if not isinstance(decision, dict):
        raise InputError(f"{where}: expected a mapping with a threshold, got {type(decision).__name__}")
    thr = decision.get("threshold")
    if isinstance(thr, bool) or not isinstance(thr, (int, float)) or not np.isfinite(thr):
        raise InputError(f"{where}: the threshold must be a finite number, got {thr!r}")
    return decision


def decide(scores: Any, decision: dict[str, Any] | float) -> np.ndarray:
    """1 (anomaly) where ``score >= threshold``, else 0; ``decision``: a dict or a threshold."""
    thr = float(check_decision(decision)["threshold"] if isinstance(decision, dict) else decision)
    s = as_1d(scores, "scores").astype(np.float64, copy=False)
    return (s >= thr).astype(np.int64)
