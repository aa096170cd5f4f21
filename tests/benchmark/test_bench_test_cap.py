"""The capped test split (``--max-test``): every normal test image, a seeded share of the
anomalies, the same images for every method; a record made under another cap is redone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fgad.benchmark.jobs import Job
from fgad.benchmark.records import is_done
from fgad.benchmark.runner import plan_jobs, run_job
from fgad.data.base import capped_test_indices
from fgad.errors import ConfigError

from bench_helpers import read_records


def test_cap_keeps_every_normal_image_and_a_seeded_share_of_anomalies():
    y = np.array([0] * 30 + [1] * 170)
    keep = capped_test_indices(y, 100, [12345, 0])
    assert len(keep) == 100 and np.all(np.diff(keep) > 0)
    assert (y[keep] == 0).sum() == 30  # all normal images
    assert np.array_equal(keep, capped_test_indices(y, 100, [12345, 0]))  # the same for every run
    assert not np.array_equal(keep, capped_test_indices(y, 100, [12345, 1]))
    assert np.array_equal(capped_test_indices(y, None), np.arange(200))
    assert np.array_equal(capped_test_indices(y, 500), np.arange(200))  # under the cap: everything


def test_cap_keeps_half_anomalies_when_normals_alone_would_fill_it():
    y = np.array([0] * 90 + [1] * 60)
    keep = capped_test_indices(y, 100)
    assert (y[keep] == 1).sum() == 50 and (y[keep] == 0).sum() == 90  # normals are never dropped
    with pytest.raises(ConfigError, match=">= 2"):
        capped_test_indices(y, 1)


@pytest.mark.slow
def test_capped_job_scores_the_capped_split_and_records_it(tmp_path, ref):
    capped = replace(ref, max_test=12)
    job = Job("tiny3", "mean-distance", 0, "round", 0, "quick")
    rec = run_job(job, capped, tmp_path)
    y = np.array(rec["labels"])
    # 10 normal test images, all kept; anomalies: half the cap (the normals alone fill most of it)
    assert len(y) == 16 and (y == 0).sum() == 10 and rec["data"]["n_test"] == 16
    assert rec["data"]["ref"]["max_test"] == 12
    assert is_done(tmp_path, job, max_test=12) and not is_done(tmp_path, job)  # another cap: redone
    again = run_job(job, capped, tmp_path / "again")
    assert again["labels"] == rec["labels"] and again["scores"] == rec["scores"]
    plan = plan_jobs([capped], ["mean-distance"], "0", "0", "quick", tmp_path)
    assert plan.skipped_done == 1 and not plan.jobs
    assert list(read_records(tmp_path)) == [f"tiny3/mean-distance/{job.key}.json"]
