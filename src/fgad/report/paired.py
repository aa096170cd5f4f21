"""Paired differences between two methods on the same jobs, with a bootstrap interval over classes.

A difference of a few AUROC points between two one-vs-all methods is only visible when both are
compared on the same (dataset, normal class, seed): per class, the mean over the seeds both
methods ran of AUROC(A) − AUROC(B); then the mean over classes, a 95% percentile-bootstrap
interval obtained by resampling the classes (the seeds of a class stay together), and how many
classes each method won. Classes where only one of the two ran are left out and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

__all__ = ["PairedDiff", "paired_difference", "bootstrap_interval"]

TIE = 1e-9  # |A − B| below this (float rounding of equal AUROCs) is a tie, won by neither


@dataclass(frozen=True)
class PairedDiff:
    """Mean over classes of the per-class paired difference A − B (fractions, not percent)."""

    method_a: str
    method_b: str
    mean: float
    low: float  # 95% bootstrap interval over classes
    high: float
    n_classes: int
    n_pairs: int  # (class, seed) pairs behind the class means
    wins_a: int  # classes where A − B > 0 (beyond TIE)
    wins_b: int  # classes where A − B < 0
    unpaired_classes: int  # classes only one of the two methods ran


def bootstrap_interval(values: Iterable[float], *, n_boot: int = 10_000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (resampled with replacement)."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("bootstrap_interval: no values")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def paired_difference(results: dict[tuple[str, object, int], float], method_a: str, method_b: str, *,
                      n_boot: int = 10_000, seed: int = 0) -> PairedDiff | None:
    """Paired difference A − B from ``results[(method, class, seed)] = auroc``.

    Returns None when no (class, seed) was run by both methods.
    """
    classes_a = {(c, s) for (m, c, s) in results if m == method_a}
    classes_b = {(c, s) for (m, c, s) in results if m == method_b}
    both = classes_a & classes_b
    per_class: dict[object, list[float]] = {}
    for c, s in sorted(both, key=lambda cs: (str(cs[0]), cs[1])):
        per_class.setdefault(c, []).append(results[(method_a, c, s)] - results[(method_b, c, s)])
    if not per_class:
        return None
    diffs = np.array([np.mean(v) for v in per_class.values()])
    low, high = bootstrap_interval(diffs, n_boot=n_boot, seed=seed)
    all_classes = {c for c, _ in classes_a | classes_b}
    return PairedDiff(method_a, method_b, float(diffs.mean()), low, high, n_classes=len(diffs),
                      n_pairs=len(both), wins_a=int((diffs > TIE).sum()), wins_b=int((diffs < -TIE).sum()),
                      unpaired_classes=len(all_classes) - len(per_class))
