"""``fgad benchmark --ray``: jobs as tasks of a real local Ray instance (CPU only, tiny data).

Skipped where Ray is not installed (it is the optional extra ``fgad[ray]``).
"""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from fgad.benchmark.records import is_done, record_path  # noqa: E402
from fgad.benchmark.runner import DataRef, Plan, plan_jobs, run_plan  # noqa: E402
from fgad.cli import main  # noqa: E402
from fgad.integrations.ray_runner import run_plan_ray  # noqa: E402
from fgad.report.records import validate_record  # noqa: E402

from integration_helpers import read_records  # noqa: E402

pytestmark = [pytest.mark.distributed, pytest.mark.slow]  # a local Ray instance: seconds to start

FAST = {"steps": 2, "image_size": 16}


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _cli(npz, out, methods, classes, capsys):
    # A plain --set key no method run has is an error: the fast settings only when 'ours' runs.
    fast = ["--set", "steps=2", "--set", "image_size=16"] if "ours" in methods.split(",") else []
    rc = main(["benchmark", "--dataset", "npz", "--data-root", str(npz), "--method", methods, "--classes", classes,
               "--preset", "tiny", *fast, "--out", str(out), "--ray", "local", "--no-report", "--quiet"])
    return rc, capsys.readouterr().err


def test_ray_benchmark_writes_the_local_runners_records_and_skips_done_jobs(ray_session, perf_npz, tmp_path,
                                                                            capsys):
    out = tmp_path / "ray"
    rc, err = _cli(perf_npz, out, "mean-distance,ours", "0", capsys)
    assert rc == 0, err
    assert "2 job(s) sent to Ray (CPUs only)" in err and "2 job(s) finished, 0 failed" in err
    rc, err = _cli(perf_npz, out, "mean-distance", "0-2", capsys)  # class 0 is done: 2 of 3 run
    assert rc == 0, err
    assert "3 job(s) in the sweep; 2 to run here, 1 already done" in err
    rc, err = _cli(perf_npz, out, "mean-distance,ours", "0", capsys)  # everything done: Ray is not asked
    assert rc == 0 and "0 to run here, 2 already done" in err and "sent to Ray" not in err

    got = read_records(out)
    assert sorted(got) == ["perf3/mean-distance/class-0000-disc__seed-0.json",
                           "perf3/mean-distance/class-0001-bar__seed-0.json",
                           "perf3/mean-distance/class-0002-stripes__seed-0.json",
                           "perf3/ours/class-0000-disc__seed-0.json"]
    for rec in got.values():
        validate_record(rec)
    assert got["perf3/ours/class-0000-disc__seed-0.json"]["overrides"] == FAST
    assert got["perf3/ours/class-0000-disc__seed-0.json"]["device"] == "cpu"

    # The same jobs run by the local serial runner give the same records' numbers.
    ref = DataRef("npz", str(perf_npz))
    local = tmp_path / "local"
    plan = plan_jobs([ref], ["mean-distance"], "0-2", None, "tiny", local, overrides=FAST)
    plan.jobs += plan_jobs([ref], ["ours"], "0", None, "tiny", local, overrides=FAST).jobs
    assert run_plan(plan, local, FAST, progress=False, log=lambda s: None) == (4, 0)
    want = read_records(local)
    assert want.keys() == got.keys()
    for k in want:
        assert got[k]["labels"] == want[k]["labels"]
        assert got[k]["scores"] == pytest.approx(want[k]["scores"], rel=1e-5, abs=1e-6), k
        assert got[k]["metrics"]["auroc"] == pytest.approx(want[k]["metrics"]["auroc"], abs=1e-9), k


def test_ray_failed_job_is_noted_and_others_finish(ray_session, perf_npz, tmp_path):
    ref = DataRef("npz", str(perf_npz))
    out = tmp_path / "out"
    bad = {"steps": 1, "image_size": 4}  # too small for a 3×3 jigsaw: fails inside the Ray task
    plan = plan_jobs([ref], ["ours", "mean-distance"], "1", None, "tiny", out, overrides=bad)
    lines: list[str] = []
    assert run_plan_ray(plan, out, bad, address="local", log=lines.append) == (1, 1)
    ours = next(j for j, _ in plan.jobs if j.method == "ours")
    assert not record_path(out, ours).exists()
    err = out / "errors" / ours.dataset / "ours" / f"{ours.key}.txt"
    assert "too small" in err.read_text()
    assert any("FAILED" in line and "InputError" in line for line in lines)
    md = next(j for j, _ in plan.jobs if j.method == "mean-distance")
    assert is_done(out, md, {})
    assert run_plan_ray(Plan([]), out, bad, address="local") == (0, 0)
