"""The runner: planning, records, skipping finished jobs, redoing broken ones, shards, failures, pool."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import torch

import fgad
from fgad.benchmark.jobs import Job
from fgad.benchmark.records import RECORD_VERSION, is_done, record_path
from fgad.benchmark.runner import DataRef, plan_jobs, run_plan
from fgad.errors import ConfigError
from fgad.methods import METHODS, MeanDistance, Method
from fgad.metrics import auroc, evaluate
from fgad.report.records import validate_record

from bench_helpers import CLASS_NAMES, FAST, LogSink, read_records, write_npz

RECORD_KEYS = {"fgad_record", "job", "config", "versions", "git_revision", "timings", "metrics", "labels", "scores"}


def run(ref, methods, classes, seeds, out, overrides=None, shard_spec=None, workers=1, log=None):
    plan = plan_jobs([ref], methods, classes, seeds, "tiny", out, shard_spec)
    result = run_plan(
        plan, out, overrides or {}, workers=workers, progress=False, log=LogSink() if log is None else log
    )
    return plan, result


def npz_arrays(ref):
    with np.load(ref.root) as d:
        return {k: d[k] for k in d.files}


# ----------------------------------------------------------------------------------- planning
def test_plan_enumerates_dataset_class_seed_method(tmp_path, ref):
    other = DataRef("npz", str(write_npz(tmp_path / "other.npz", seed=1)))
    plan = plan_jobs([ref, other], ["mean-distance", "ours"], "0-2", "0-1", "tiny", tmp_path / "out")
    assert plan.total == len(plan.jobs) == 2 * 3 * 2 * 2 and plan.skipped_done == 0
    got = [(j.dataset, j.normal_class, j.seed, j.method) for j, _ in plan.jobs]
    assert len(set(got)) == len(got)
    assert set(got) == set(itertools.product(["tiny3", "other"], range(3), range(2), ["mean-distance", "ours"]))
    for job, r in plan.jobs:
        assert job.preset == "tiny"
        assert job.class_name == CLASS_NAMES[job.normal_class]
        assert r == (ref if job.dataset == "tiny3" else other)


def test_plan_classes_by_name_and_default_seed(tmp_path, ref):
    plan = plan_jobs([ref], ["mhrot"], "a/b c:*", None, "tiny", tmp_path)
    assert [(j.normal_class, j.class_name, j.seed, j.method) for j, _ in plan.jobs] == [(1, "a/b c:*", 0, "mhrot")]


def test_plan_refuses_unknown_method_before_loading_data(tmp_path):
    missing = DataRef("npz", str(tmp_path / "nowhere.npz"))  # loading it would raise DatasetNotFoundError
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        plan_jobs([missing], ["mean-distance", "nope"], None, None, "tiny", tmp_path)


def test_plan_shard_slices_the_whole_sweep(tmp_path, ref):
    full = plan_jobs([ref], ["mean-distance"], None, "0-1", "tiny", tmp_path)
    parts = [plan_jobs([ref], ["mean-distance"], None, "0-1", "tiny", tmp_path, (i, 4)) for i in range(4)]
    assert all(p.total == full.total == 6 for p in parts)
    assert sorted(j.key for p in parts for j, _ in p.jobs) == sorted(j.key for j, _ in full.jobs)


# ------------------------------------------------------------------------------------ records
@pytest.fixture(scope="module")
def three_methods(tmp_path_factory, ref):
    """mean-distance, ours and mhrot on the oddly named class 1, seed 0."""
    out = tmp_path_factory.mktemp("three")
    log = LogSink()
    plan, result = run(ref, ["mean-distance", "ours", "mhrot"], "1", "0", out, FAST, log=log)
    return out, plan, result, log


@pytest.mark.slow
def test_run_plan_writes_one_record_per_job(three_methods):
    out, plan, result, log = three_methods
    assert result == (3, 0)
    recs = read_records(out)
    assert set(recs) == {f"tiny3/{m}/class-0001-a_b_c___seed-0.json" for m in ("mean-distance", "ours", "mhrot")}
    for job, _ in plan.jobs:
        assert record_path(out, job) == out / "records" / "tiny3" / job.method / f"{job.key}.json"
        assert is_done(out, job)
    assert len(log) == 3 and all(re.search(r"\[\d/3\] tiny3 \S+ class 1 \(a/b c:\*\) seed 0: AUROC \d\.\d{4}", s)
                                 for s in log)
    assert not (out / "errors").exists()
    assert not [p for p in (out / "checkpoints").rglob("*") if p.is_file()]  # finished jobs leave no checkpoints


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mean-distance", "ours", "mhrot"])
def test_record_contents(three_methods, ref, method):
    out, plan, _, _ = three_methods
    job = next(j for j, _ in plan.jobs if j.method == method)
    rec = json.loads(record_path(out, job).read_text())
    assert RECORD_KEYS <= set(rec)
    validate_record(rec)  # the report accepts what the runner writes
    assert rec["fgad_record"] == RECORD_VERSION
    assert rec["job"] == job.to_dict()
    assert rec["versions"]["fgad"] == fgad.__version__ and rec["versions"]["torch"] == torch.__version__
    assert rec["versions"]["torch_cpu"] == torch.backends.cpu.get_cpu_capability()  # which kernels ran
    assert rec["git_revision"] is None or re.fullmatch(r"[0-9a-f]{40}", rec["git_revision"])
    assert rec["threads"] == torch.get_num_threads()
    assert set(rec["timings"]) == {"fit_s", "score_s", "total_s"}
    assert all(v >= 0 for v in rec["timings"].values())
    assert rec["data"]["n_train"] == 10 and rec["data"]["n_test"] == 30

    # labels: 1 = anomaly, i.e. every test image not of the normal class
    y_test = npz_arrays(ref)["y_test"]
    assert rec["labels"] == [int(c != 1) for c in y_test]
    assert len(rec["scores"]) == 30 and all(np.isfinite(rec["scores"]))
    assert rec["metrics"] == pytest.approx(evaluate(rec["labels"], rec["scores"]))
    assert rec["metrics"]["n_normal"] == 10 and rec["metrics"]["n_anomalous"] == 20

    if method == "mean-distance":
        assert "task_scores" not in rec and "task_metrics" not in rec
        assert rec["config"] == {"method": "mean-distance", "seed": 0}
        assert rec["metrics"]["auroc"] > 0.9  # the class means differ: the floor separates them
        return
    tasks = ["geometric", "jigsaw"] if method == "ours" else ["geometric"]
    assert list(rec["task_scores"]) == tasks and list(rec["task_metrics"]) == tasks
    assert rec["config"]["tasks"] == tasks
    assert rec["config"]["steps"] == 2 and rec["config"]["image_size"] == 16  # overrides reached it
    assert rec["config"]["depth"] == 10 and rec["config"]["seed"] == 0  # the tiny preset
    assert set(rec["config"]["task_terms"]) == set(tasks)
    sums = np.array([rec["task_scores"][t] for t in tasks])
    assert np.allclose(rec["scores"], -sums.mean(0))  # sum fusion: anomaly = −mean of the task sums
    for t in tasks:
        assert rec["task_metrics"][t]["auroc"] == pytest.approx(auroc(rec["labels"], -np.array(rec["task_scores"][t])))


@pytest.mark.slow
def test_rerun_finds_nothing_pending(three_methods, ref):
    out, *_ = three_methods
    plan = plan_jobs([ref], ["mean-distance", "ours", "mhrot"], "1", "0", "tiny", out)
    assert plan.jobs == [] and plan.skipped_done == 3 and plan.total == 3
    before = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    assert run_plan(plan, out, FAST, progress=False, log=LogSink()) == (0, 0)
    assert {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")} == before


# ------------------------------------------------------------------- broken records are redone
def test_broken_or_foreign_records_are_redone(tmp_path, ref):
    out = tmp_path / "out"
    plan, result = run(ref, ["mean-distance"], None, "0", out)
    assert result == (3, 0)
    good = read_records(out)
    jobs = {j.normal_class: j for j, _ in plan.jobs}
    paths = {c: record_path(out, j) for c, j in jobs.items()}

    # class 0: half-written; class 1: another job's (valid) record; class 2 stays valid
    text0 = paths[0].read_text()
    paths[0].write_text(text0[: len(text0) // 2])
    paths[1].write_text(paths[2].read_text())
    assert not is_done(out, jobs[0]) and not is_done(out, jobs[1]) and is_done(out, jobs[2])

    plan2 = plan_jobs([ref], ["mean-distance"], None, "0", "tiny", out)
    assert sorted(j.normal_class for j, _ in plan2.jobs) == [0, 1] and plan2.skipped_done == 1
    assert run_plan(plan2, out, {}, progress=False, log=LogSink()) == (2, 0)
    again = read_records(out)
    assert set(again) == set(good)
    for k in good:
        assert again[k]["job"] == good[k]["job"] and again[k]["scores"] == good[k]["scores"]
    assert plan_jobs([ref], ["mean-distance"], None, "0", "tiny", out).jobs == []


@pytest.mark.parametrize("content", [
    "", "{", "not json", "[]", "null", '{"fgad_record": 1}',
])
def test_invalid_record_files_are_not_done(tmp_path, content):
    job = Job("tiny3", "mean-distance", 0, "round", 0, "tiny")
    path = record_path(tmp_path, job)
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert not is_done(tmp_path, job)


def test_record_of_other_version_or_preset_is_not_done(tmp_path):
    job = Job("tiny3", "mean-distance", 0, "round", 0, "tiny")
    path = record_path(tmp_path, job)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fgad_record": RECORD_VERSION, "job": job.to_dict()}))
    assert is_done(tmp_path, job)
    path.write_text(json.dumps({"fgad_record": RECORD_VERSION + 1, "job": job.to_dict()}))
    assert not is_done(tmp_path, job)
    path.write_text(json.dumps({"fgad_record": RECORD_VERSION, "job": {**job.to_dict(), "preset": "quick"}}))
    assert not is_done(tmp_path, job)
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert not is_done(tmp_path, job)


# ------------------------------------------------------------------------------------- shards
def test_shards_together_equal_one_full_run(tmp_path, ref):
    full, sharded = tmp_path / "full", tmp_path / "sharded"
    _, r_full = run(ref, ["mean-distance"], None, "0-1", full)
    p0, r0 = run(ref, ["mean-distance"], None, "0-1", sharded, shard_spec=(0, 2))
    p1, r1 = run(ref, ["mean-distance"], None, "0-1", sharded, shard_spec=(1, 2))
    assert r_full == (6, 0) and r0 == (3, 0) and r1 == (3, 0)
    assert not {j.key for j, _ in p0.jobs} & {j.key for j, _ in p1.jobs}
    a, b = read_records(full), read_records(sharded)
    assert set(a) == set(b) and len(a) == 6
    for k in a:
        assert a[k]["job"] == b[k]["job"] and a[k]["metrics"] == b[k]["metrics"] and a[k]["scores"] == b[k]["scores"]
    # every shard now finds its slice done
    for i in range(2):
        assert plan_jobs([ref], ["mean-distance"], None, "0-1", "tiny", sharded, (i, 2)).jobs == []


# ----------------------------------------------------------------------------------- failures
def _failing_method(monkeypatch, bad_class_images, exc_type=ValueError):
    class Fails(MeanDistance):
        def fit(self, images, context=None):
            if np.array_equal(np.asarray(images), bad_class_images):
                raise exc_type("boom: this class cannot be fitted")
            return super().fit(images, context)

    monkeypatch.setitem(METHODS, "mean-distance", Method(Fails, "fails on one class", Fails.load))


def test_failing_job_is_logged_and_others_run(tmp_path, ref, monkeypatch):
    arrays = npz_arrays(ref)
    _failing_method(monkeypatch, arrays["x_train"][arrays["y_train"] == 1])
    out, log = tmp_path / "out", LogSink()
    plan, result = run(ref, ["mean-distance"], None, "0", out, log=log)
    assert result == (2, 1)
    bad = next(j for j, _ in plan.jobs if j.normal_class == 1)
    err = out / "errors" / "tiny3" / "mean-distance" / f"{bad.key}.txt"
    assert err.is_file()
    text = err.read_text()
    assert "Traceback" in text and "ValueError: boom" in text
    assert not record_path(out, bad).exists()
    assert sorted(read_records(out)) == ["tiny3/mean-distance/class-0000-round__seed-0.json",
                                         "tiny3/mean-distance/class-0002-stripes__seed-0.json"]
    failed = [s for s in log if "FAILED" in s]
    assert len(failed) == 1 and "class 1" in failed[0] and "boom" in failed[0] and str(err) in failed[0]
    assert len(log) == 3  # the jobs after the failure ran too

    # the failed job stays pending and succeeds once the cause is gone
    monkeypatch.undo()
    plan2 = plan_jobs([ref], ["mean-distance"], None, "0", "tiny", out)
    assert [j for j, _ in plan2.jobs] == [bad]
    assert run_plan(plan2, out, {}, progress=False, log=LogSink()) == (1, 0)
    assert is_done(out, bad)


def test_a_user_error_in_one_job_is_a_failure(tmp_path, ref, monkeypatch):
    # e.g. a bad override for a method: a ConfigError (FgadError) per job, not a crash
    out = tmp_path / "out"
    _, result = run(ref, ["mhrot"], "0", "0", out, {"steps": 2, "image_size": 16, "depth": 11})
    assert result == (0, 1)
    assert len(list((out / "errors").rglob("*.txt"))) == 1


def test_any_exception_in_one_job_does_not_stop_the_others(tmp_path, ref, monkeypatch):
    arrays = npz_arrays(ref)
    _failing_method(monkeypatch, arrays["x_train"][arrays["y_train"] == 0], exc_type=TypeError)
    _, result = run(ref, ["mean-distance"], None, "0", tmp_path / "out")
    assert result == (2, 1)


# --------------------------------------------------------------------------------------- pool
@pytest.mark.subprocess
@pytest.mark.slow
def test_pool_of_two_workers_matches_serial(tmp_path, ref):
    serial, pooled = tmp_path / "serial", tmp_path / "pooled"
    _, r_serial = run(ref, ["mean-distance"], None, "0", serial)
    log = LogSink()
    _, r_pool = run(ref, ["mean-distance"], None, "0", pooled, workers=2, log=log)
    assert r_serial == r_pool == (3, 0)
    assert len(log) == 3 and not any("FAILED" in s for s in log)
    a, b = read_records(serial), read_records(pooled)
    assert set(a) == set(b) and len(a) == 3
    for k in a:
        assert a[k]["job"] == b[k]["job"]
        assert a[k]["metrics"] == b[k]["metrics"] and a[k]["scores"] == b[k]["scores"]


@pytest.mark.slow
def test_record_made_with_other_overrides_is_redone(tmp_path, ref):
    out = tmp_path / "out"
    first = plan_jobs([ref], ["ours", "mean-distance"], "0", "0", "tiny", out, overrides=FAST)
    assert run_plan(first, out, FAST, progress=False, log=LogSink()) == (2, 0)
    again = plan_jobs([ref], ["ours", "mean-distance"], "0", "0", "tiny", out, overrides=FAST)
    assert again.jobs == []
    changed = plan_jobs([ref], ["ours", "mean-distance"], "0", "0", "tiny", out, overrides={**FAST, "steps": 3})
    # Only the detector takes config overrides: the floor's record still counts as done.
    assert [j.method for j, _ in changed.jobs] == ["ours"]
