"""``fgad list``, ``fgad benchmark`` and ``fgad report``, in-process through ``fgad.cli.main``."""

from __future__ import annotations

import contextlib
import io

import pytest

from fgad.cli import main

from bench_helpers import read_records


def call(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def bench_args(npz_path, out, *extra: str) -> list[str]:
    return ["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method", "mean-distance,ours",
            "--preset", "tiny", "--set", "steps=2", "--set", "image_size=16", "--classes", "0-1",
            "--out", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def bench(npz_path, tmp_path_factory):
    """One benchmark run and an identical second one in the same folder."""
    out = tmp_path_factory.mktemp("runs") / "runs"
    first = call(bench_args(npz_path, out))
    second = call(bench_args(npz_path, out))
    return out, first, second


def test_list_prints_datasets_methods_presets(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert text.index("datasets:") < text.index("methods:") < text.index("presets:")
    datasets = text[text.index("datasets:"):text.index("methods:")]
    methods = text[text.index("methods:"):text.index("presets:")]
    presets = text[text.index("presets:"):]
    for name in ("npz", "fonts", "mnist"):
        assert f"  {name} " in datasets
    for name in ("ours", "mhrot", "jigsaw", "mean-distance"):
        assert f"  {name} " in methods
    for name in ("paper", "quick", "tiny"):
        assert f"  {name} " in presets
    assert "the paper's configuration" in presets and "steps=4" in presets


@pytest.mark.slow
def test_benchmark_runs_and_reports(bench):
    out, (rc, stdout, stderr), _ = bench
    assert rc == 0, stderr
    assert "4 job(s) in the sweep; 4 to run here, 0 already done" in stderr
    assert "4 job(s) finished, 0 failed" in stderr
    assert "Traceback" not in stderr
    # the Markdown report on stdout
    assert "AUROC" in stdout
    assert "| Method | tiny3 |" in stdout and "| --- |" in stdout
    assert "Ours" in stdout and "Mean distance" in stdout
    # records and report files
    recs = read_records(out)
    assert set(recs) == {f"tiny3/{m}/{k}.json" for m in ("mean-distance", "ours")
                         for k in ("class-0000-round__seed-0", "class-0001-a_b_c___seed-0")}
    for rec in recs.values():
        assert rec["job"]["preset"] == "tiny"
    assert recs["tiny3/ours/class-0000-round__seed-0.json"]["config"]["steps"] == 2
    assert set(recs["tiny3/ours/class-0000-round__seed-0.json"]["task_scores"]) == {"geometric", "jigsaw"}
    report = out / "report" / "report.md"
    assert report.is_file() and "AUROC" in report.read_text()
    assert f"report written to {out / 'report'}" in stderr


@pytest.mark.slow
def test_second_identical_call_skips_everything(bench):
    out, (_, _, _), (rc, stdout, stderr) = bench
    assert rc == 0, stderr
    assert "4 job(s) in the sweep; 0 to run here, 4 already done" in stderr
    assert "0 job(s) finished, 0 failed" in stderr
    assert "AUROC" in stdout  # the report is built again from the existing records
    assert len(read_records(out)) == 4


def test_shards_through_the_cli(npz_path, tmp_path):
    out = tmp_path / "runs"
    base = ["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method", "mean-distance",
            "--seeds", "0-1", "--out", str(out), "--quiet", "--no-report"]
    rc0, stdout0, err0 = call([*base, "--shard", "0/2"])
    rc1, _, err1 = call([*base, "--shard", "1/2"])
    assert rc0 == rc1 == 0
    assert "6 job(s) in the sweep; 3 to run here" in err0 and "6 job(s) in the sweep; 3 to run here" in err1
    assert stdout0 == ""  # --no-report
    assert not (out / "report").exists()
    assert len(read_records(out)) == 6


@pytest.mark.slow
def test_report_command(bench, tmp_path):
    out, *_ = bench
    rc, stdout, stderr = call(["report", str(out), "--out", str(tmp_path / "rep"), "--max-roc-classes", "0"])
    assert rc == 0, stderr
    assert "AUROC" in stdout
    assert "4 record(s)" in stderr
    assert (tmp_path / "rep" / "report.md").is_file()


def test_report_of_a_missing_folder_is_a_user_error(tmp_path):
    rc, stdout, stderr = call(["report", str(tmp_path / "nothing")])
    assert rc == 2 and stdout == ""
    assert stderr.startswith("fgad: error:") and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("change, match", [
    ({"--dataset": "no-such-dataset"}, "no-such-dataset"),
    ({"--method": "mean-distance,nope"}, "nope"),
    ({"--preset": "huge"}, "huge"),
    ({"--shard": "3/2"}, "shard"),
    ({"--shard": "a/b"}, "shard"),
    ({"--set": "foo=1"}, "foo"),
    ({"--set": "piad.iters=1"}, "'piad' is not among the methods"),
    ({"--set": "mean-distance.nope=1"}, "nope"),
    ({"--classes": "9"}, "out of range"),
    ({"--seeds": "x"}, "seeds"),
    ({"--data-option": "colour=1"}, "colour"),
])
def test_benchmark_user_errors(npz_path, tmp_path, change, match):
    args = {"--dataset": "npz", "--data-root": str(npz_path), "--method": "mean-distance", "--preset": "tiny",
            "--out": str(tmp_path / "runs")}
    args.update(change)
    argv = ["benchmark", "--quiet"] + [x for kv in args.items() for x in kv]
    rc, stdout, stderr = call(argv)
    assert rc == 2
    assert stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgad: error:") and match in lines[0], stderr
    assert not (tmp_path / "runs" / "records").exists()  # nothing ran


def test_benchmark_missing_data_file_is_a_user_error(tmp_path):
    rc, _, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(tmp_path / "none.npz"),
                          "--method", "mean-distance", "--out", str(tmp_path / "runs"), "--quiet"])
    assert rc == 2 and stderr.startswith("fgad: error:") and len(stderr.strip().splitlines()) == 1


def test_benchmark_exit_status_1_when_a_job_fails(npz_path, tmp_path):
    # depth=11 is not 6n+4: every self-supervised job fails with a ConfigError, which is a job failure
    rc, stdout, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method", "mhrot",
                               "--preset", "tiny", "--set", "depth=11", "--classes", "0", "--out",
                               str(tmp_path / "runs"), "--quiet", "--no-report"])
    assert rc == 1
    assert "FAILED" in stderr and "0 job(s) finished, 1 failed" in stderr
    assert len(list((tmp_path / "runs" / "errors").rglob("*.txt"))) == 1
    assert stdout == ""


@pytest.mark.slow
def test_method_options_reach_only_their_method(npz_path, tmp_path):
    out = tmp_path / "runs"
    rc, _, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method", "ours,mhrot",
                          "--preset", "tiny", "--set", "image_size=16", "--set", "steps=2", "--set", "ours.steps=3",
                          "--classes", "0", "--out", str(out), "--quiet", "--no-report"])
    assert rc == 0, stderr
    recs = read_records(out)
    by_method = {r["job"]["method"]: r for r in recs.values()}
    assert by_method["ours"]["overrides"] == {"image_size": 16, "steps": 3}  # METHOD.key wins for its method
    assert by_method["mhrot"]["overrides"] == {"image_size": 16, "steps": 2}
    assert by_method["ours"]["config"]["steps"] == 3 and by_method["mhrot"]["config"]["steps"] == 2


@pytest.mark.slow
def test_piad_options_by_method_prefix(npz_path, tmp_path):
    out = tmp_path / "runs"
    rc, _, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method", "piad",
                          "--preset", "tiny", "--set", "piad.allow_random_vgg=true", "--set", "piad.iters=1",
                          "--classes", "0", "--out", str(out), "--quiet"])
    assert rc == 0, stderr
    (rec,) = read_records(out).values()
    assert rec["overrides"] == {"allow_random_vgg": True, "iters": 1} and rec["config"]["iters"] == 1
    assert rec["method_info"]["vgg_weights"] == "random (allow_random_vgg)"
    assert "`allow_random_vgg=true, iters=1`" in (out / "report" / "report.md").read_text()


def test_plain_option_reaches_every_method_that_has_it(npz_path, tmp_path):
    out = tmp_path / "runs"
    rc, _, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method",
                          "iforest,mean-distance", "--preset", "tiny", "--set", "n_estimators=5", "--classes", "0",
                          "--out", str(out), "--quiet", "--no-report"])
    assert rc == 0, stderr
    by_method = {r["job"]["method"]: r for r in read_records(out).values()}
    assert by_method["iforest"]["overrides"] == {"n_estimators": 5}
    assert by_method["iforest"]["config"]["n_estimators"] == 5
    assert by_method["mean-distance"]["overrides"] == {}


def test_plain_option_no_method_run_has_is_one_error_line(npz_path, tmp_path):
    rc, stdout, stderr = call(["benchmark", "--dataset", "npz", "--data-root", str(npz_path), "--method",
                               "mean-distance,iforest", "--preset", "tiny", "--set", "steps=100",
                               "--out", str(tmp_path / "runs"), "--quiet"])
    assert rc == 2 and stdout == ""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fgad: error: --set steps: none of the methods run"), stderr


def test_plain_option_goes_to_deepgeo_too():
    from fgad.benchmark.runner import check_overrides, method_overrides

    overrides = {"steps": 100, "image_size": 16, "ours.steps": 3}
    assert method_overrides("deepgeo", overrides) == {"steps": 100, "image_size": 16}
    assert method_overrides("ours", overrides) == {"steps": 3, "image_size": 16}
    assert method_overrides("mean-distance", overrides) == {}
    check_overrides(["deepgeo", "ours"], "tiny", overrides)
