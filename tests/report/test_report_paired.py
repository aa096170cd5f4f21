import numpy as np
import pytest

from fgad.report.paired import bootstrap_interval, paired_difference


def test_paired_difference_by_hand():
    r = {
        ("a", 0, 0): 0.90, ("b", 0, 0): 0.80,
        ("a", 0, 1): 0.70, ("b", 0, 1): 0.80,  # class 0: mean of +0.10 and -0.10 = 0
        ("a", 1, 0): 0.95, ("b", 1, 0): 0.85,  # class 1: +0.10
        ("a", 2, 0): 0.60, ("b", 2, 0): 0.70,  # class 2: -0.10
        ("a", 3, 0): 0.99,                      # class 3: only a ran it
    }  # fmt: skip
    d = paired_difference(r, "a", "b", n_boot=2000)
    assert d.mean == pytest.approx(0.0)
    assert d.n_classes == 3 and d.n_pairs == 4 and d.unpaired_classes == 1
    assert (d.wins_a, d.wins_b) == (1, 1)
    assert d.low <= d.mean <= d.high
    assert d.low >= -0.10 - 1e-12 and d.high <= 0.10 + 1e-12


def test_no_common_jobs_gives_none():
    assert paired_difference({("a", 0, 0): 0.9, ("b", 1, 0): 0.8}, "a", "b") is None


def test_bootstrap_interval_matches_a_direct_resampling():
    v = np.array([0.01, 0.03, -0.02, 0.05, 0.00, 0.02])
    low, high = bootstrap_interval(v, n_boot=4000, seed=3)
    rng = np.random.default_rng(3)
    means = v[rng.integers(0, v.size, size=(4000, v.size))].mean(1)
    assert (low, high) == (np.quantile(means, 0.025), np.quantile(means, 0.975))
    assert low < v.mean() < high
    assert bootstrap_interval([0.5]) == (0.5, 0.5)
