"""build_report on a small synthetic results folder: numbers, files, bad records, formatting."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fgad import metrics as M
from fgad.errors import InputError
from fgad.report import RecordWarning, build_report

# AUROC of a record = BASE[(dataset, method)] + 0.02 * class + 0.06 * seed
BASE = {
    ("mnist", "ours"): 0.90, ("mnist", "mhrot"): 0.80, ("mnist", "jigsaw"): 0.70,
    ("mnist", "deepsad-10"): 0.60, ("mnist", "mean-distance"): 0.50, ("mnist", "piad"): 0.55,
    ("cub200", "ours"): 0.85, ("cub200", "mhrot"): 0.75, ("cub200", "jigsaw"): 0.65,
    ("cub200", "deepsad-10"): 0.62, ("cub200", "mean-distance"): 0.52,
    ("fonts", "ocsvm"): 0.70,
}
CLASSES = {"mnist": [0, 1, 2], "cub200": [0, 1], "fonts": [0, 1]}
SEEDS = [0, 1]
N_TEST = 24


def auroc_of(dataset, method, cls, seed):
    return BASE[(dataset, method)] + 0.02 * cls + 0.06 * seed


def make_record(dataset, method, cls, seed, *, preset="quick", scores=True, task_scores=False, metrics=None,
                config=None):
    """A record in the runner's format; labels/scores random, metrics chosen (not derived)."""
    rng = np.random.default_rng(zlib.crc32(repr((dataset, method, cls, seed, preset)).encode()))
    a = auroc_of(dataset, method, cls, seed)
    rec = {
        "fgad_record": 1,
        "job": {"dataset": dataset, "method": method, "normal_class": cls, "class_name": f"class-{cls}",
                "seed": seed, "preset": preset},
        "config": config or {"epochs": 1},
        "versions": {"fgad": "0.1.0", "torch": "2.x", "numpy": np.__version__, "python": "3.11"},
        "git_revision": None,
        "timings": {"fit_s": 1.0, "score_s": 0.5, "total_s": 1.5},
        "metrics": metrics if metrics is not None else {
            "auroc": a, "aupr": a, "aupr_normal": a, "eer": 1 - a, "apcer_at_bpcer5": (1 - a) / 2,
            "bpcer_at_apcer5": (1 - a) / 4, "n_normal": 12, "n_anomalous": 12,
        },
        "task_metrics": {},
    }
    if scores:
        y = np.array([0] * 12 + [1] * 12)
        rng.shuffle(y)
        if task_scores:
            g = rng.uniform(0, 108, N_TEST) - 30 * y
            j = rng.uniform(0, 3, N_TEST) - 1.0 * y
            rec["task_scores"] = {"geometric": g.tolist(), "jigsaw": j.tolist()}
            s = -(g + j) / 2
        else:
            s = rng.normal(size=N_TEST) + y
        rec["labels"] = y.tolist()
        rec["scores"] = s.tolist()
    return rec


def write_json(root: Path, rel: str, obj) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj))
    return p


def job_path(dataset, method, cls, seed):
    return f"{dataset}/{method}/records/{dataset}__{method}__{cls}__s{seed}.json"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A results folder, every record written, and the report built once."""
    root = tmp_path_factory.mktemp("results")
    records = {}
    for (dataset, method) in BASE:
        for cls in CLASSES[dataset]:
            for seed in SEEDS:
                if (dataset, method) == ("cub200", "jigsaw") and seed == 1 and cls == 1:
                    continue  # partial sweep: seed 1 covers class 0 only
                kwargs = {}
                if method == "ours":
                    kwargs["task_scores"] = True
                if method == "deepsad-10" and dataset == "mnist" or dataset == "fonts":
                    kwargs["scores"] = False  # metrics only: no ROC curve
                if (dataset, method) == ("cub200", "mean-distance"):
                    kwargs["metrics"] = {"auroc": auroc_of(dataset, method, cls, seed)}  # rest from scores
                rec = make_record(dataset, method, cls, seed, **kwargs)
                records[(dataset, method, cls, seed)] = rec
                write_json(root, job_path(dataset, method, cls, seed), rec)

    good = make_record("mnist", "ours", 0, 0, task_scores=True)
    text = json.dumps(good)
    bad = {
        "truncated": write_json(root, "mnist/ours/records/half.json", None),
        "not_record": write_json(root, "x/records/other.json", {"hello": 1}),
        "nan": write_json(root, "x/records/nan.json", {**good, "scores": [float("nan")] * N_TEST}),
        "version": write_json(root, "x/records/v2.json", {**good, "fgad_record": 2}),
        "list": write_json(root, "x/records/list.json", [1, 2]),
        "bad_label": write_json(root, "x/records/label.json", {**good, "labels": [2] * N_TEST}),
        "no_seed": write_json(root, "x/records/noseed.json", {**good, "job": {"dataset": "mnist", "method": "ours",
                                                                              "normal_class": 0}}),
    }
    bad["truncated"].write_text(text[: len(text) // 2])
    binary = root / "x/records/binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    bad["binary"] = binary
    # a second copy of a job under another folder: a duplicate, the later path wins
    dup = write_json(root, "zz_rerun/records/dup.json", records[("mnist", "ours", 0, 0)])
    # not counted at all: outside a records folder, temporary and hidden files
    write_json(root, "mnist/ours/logs/notes.json", make_record("mnist", "ours", 0, 0))
    write_json(root, "mnist/ours/records/.tmp-file.json", {"hello": 1})
    (root / "mnist/ours/records/.x.json.123.tmp").write_text("{")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_report(root, max_roc_classes=1)
    return {"root": root, "records": records, "bad": bad, "dup": dup, "result": result, "warnings": caught}


def expected_cell(records, dataset, method, key="auroc"):
    """Per seed the mean over classes, then mean and sample std over seeds (fractions)."""
    per_seed = {}
    for (d, m, c, s), rec in records.items():
        if d == dataset and m == method:
            per_seed.setdefault(s, []).append(rec["metrics"][key])
    means = [statistics.fmean(v) for _, v in sorted(per_seed.items())]
    return statistics.fmean(means), (statistics.stdev(means) if len(means) > 1 else None)


def md_rows(md: str, first_cell: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if line.startswith("| ") and line.split("|")[1].strip() == first_cell:
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


# --------------------------------------------------------------------------------------------


def test_table1_cells_by_hand(sweep):
    md = (sweep["root"] / "report" / "table1.md").read_text()
    header = md_rows(md, "Method")[0]
    assert header == ["Method", "MNIST", "Caltech-Birds 200", "Fonts"]
    ours = md_rows(md, "Ours")[0]
    # MNIST: seed 0 classes 0.90, 0.92, 0.94 -> 0.92; seed 1: 0.96, 0.98, 1.00 -> 0.98
    # mean 0.95, sample std sqrt(2 * 0.03^2 / 1) = 0.0424
    assert ours[1] == "95.0 ± 4.2 (3 cls)"
    # CUB: seed 0: 0.85, 0.87 -> 0.86; seed 1: 0.91, 0.93 -> 0.92 -> mean 0.89
    assert ours[2] == "89.0 ± 4.2 (2 cls)"
    assert ours[3] == "-"
    # partial sweep: jigsaw on CUB, seed 0: 0.65, 0.67 -> 0.66; seed 1: class 0 only, 0.71
    # mean 0.685, std |0.71 - 0.66| / sqrt(2) = 0.0354; the seeds cover different classes
    assert md_rows(md, "Jigsaw only")[0][2] == "68.5 ± 3.5* (2 cls)"
    assert "Seeds per cell: 2." in md


def test_table1_numbers_match_records(sweep):
    rows = sweep["result"].tables["table1"]
    assert len(rows) == len(BASE)
    for row in rows:
        mean, std = expected_cell(sweep["records"], row["dataset"], row["method"])
        assert float(row["auroc_mean_pct"]) == pytest.approx(100 * mean, abs=1e-4)
        assert float(row["auroc_std_pct"]) == pytest.approx(100 * std, abs=1e-4)
        assert int(row["auroc_n_seeds"]) == 2
        assert int(row["auroc_n_classes"]) == len(CLASSES[row["dataset"]])
    csv_rows = read_csv(sweep["root"] / "report" / "table1.csv")
    assert [r["auroc_mean_pct"] for r in csv_rows] == [r["auroc_mean_pct"] for r in rows]


def test_table1_row_order_and_names(sweep):
    md = (sweep["root"] / "report" / "table1.md").read_text()
    names = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][2:]
    assert names == ["Deep SAD (10%)", "PIAD", "MHRot", "Ours", "Jigsaw only", "OC-SVM", "Mean distance (floor)"]


def test_table2_ablation(sweep):
    md = (sweep["root"] / "report" / "table2.md").read_text()
    assert md_rows(md, "Dataset")[0] == ["Dataset", "Geometric only (MHRot)", "Jigsaw only", "Both (Ours)"]
    # MHRot MNIST: 0.80 + (0.02 + 0.06)... seed means 0.82, 0.88 -> 85.0; jigsaw 0.72, 0.78 -> 75.0
    assert md_rows(md, "MNIST")[0] == ["MNIST", "85.0 ± 4.2 (3 cls)", "75.0 ± 4.2 (3 cls)", "95.0 ± 4.2 (3 cls)"]
    assert md_rows(md, "Caltech-Birds 200")[0][3] == "89.0 ± 4.2 (2 cls)"
    assert md_rows(md, "Fonts") == []  # no mhrot / jigsaw / ours records on Fonts
    tasks = {(r["dataset"], r["tasks"]): r for r in sweep["result"].tables["table2"]}
    assert set(tasks) == {(d, t) for d in ("mnist", "cub200") for t in ("geometric", "jigsaw", "both")}


def test_table3_metrics_and_missing_ones_computed_from_scores(sweep):
    rows = {(r["dataset"], r["method"]): r for r in sweep["result"].tables["table3"]}
    recs = sweep["records"]
    for key in ("auroc", "eer", "apcer_at_bpcer5", "bpcer_at_apcer5"):
        mean, _ = expected_cell(recs, "mnist", "mhrot", key)
        assert float(rows[("mnist", "mhrot")][key + "_pct"]) == pytest.approx(100 * mean, abs=1e-4)
    # cub200 / mean-distance records only carry an AUROC: EER etc. come from labels and scores
    for key, fn in (("eer", M.eer), ("apcer_at_bpcer5", M.apcer_at_bpcer), ("bpcer_at_apcer5", M.bpcer_at_apcer)):
        per_seed = {}
        for (d, m, c, s), rec in recs.items():
            if (d, m) == ("cub200", "mean-distance"):
                per_seed.setdefault(s, []).append(fn(rec["labels"], rec["scores"]))
        want = statistics.fmean(statistics.fmean(v) for v in per_seed.values())
        assert float(rows[("cub200", "mean-distance")][key + "_pct"]) == pytest.approx(100 * want, abs=1e-4)
    md = (sweep["root"] / "report" / "table3.md").read_text()
    # Ours on MNIST: AUROC 95.0, EER 1 - AUROC = 5.0, APCER 2.5, BPCER 1.25
    assert ["MNIST", "Ours", "95.0", "5.0", "2.5", "1.2", "3", "2"] in md_rows(md, "MNIST")


def test_per_class_tables(sweep):
    md = (sweep["root"] / "report" / "per_class" / "mnist.md").read_text()
    assert md_rows(md, "Class")[0] == ["Class", "Deep SAD (10%)", "PIAD", "MHRot", "Ours", "Jigsaw only",
                                       "Mean distance (floor)"]
    # Ours class 1: seeds 0.92 and 0.98 -> 95.0; class 2: 0.94, 1.00 -> 97.0
    assert md_rows(md, "class-1")[0][4] == "95.0"
    assert md_rows(md, "class-2")[0][4] == "97.0"
    assert md_rows(md, "**Mean**")[0][4] == "**95.0**"
    cub = (sweep["root"] / "report" / "per_class" / "cub200.md").read_text()
    # jigsaw CUB class 1 has seed 0 only (0.67)
    assert md_rows(cub, "Class")[0][4] == "Jigsaw only"
    assert md_rows(cub, "class-1")[0][4] == "67.0"
    rows = read_csv(sweep["root"] / "report" / "per_class" / "cub200.csv")
    r = next(r for r in rows if r["method"] == "jigsaw" and r["normal_class"] == "1")
    assert r["n_seeds"] == "1" and r["auroc_std_pct"] == ""


def test_fusion_table_against_sklearn(sweep):
    rows = {(r["dataset"], r["score"]): r for r in sweep["result"].tables["fusion"]}
    assert {d for d, _ in rows} == {"mnist", "cub200"}
    for dataset in ("mnist", "cub200"):
        per_seed = {}
        for (d, m, c, s), rec in sweep["records"].items():
            if (d, m) != (dataset, "ours"):
                continue
            y = np.array(rec["labels"])
            g = np.array(rec["task_scores"]["geometric"])
            j = np.array(rec["task_scores"]["jigsaw"])
            vals = {
                "record": roc_auc_score(y, rec["scores"]),
                "normalised": roc_auc_score(y, -(g / 108 + j / 3) / 2),
                "geometric": roc_auc_score(y, -g),
                "jigsaw": roc_auc_score(y, -j),
            }
            per_seed.setdefault(s, []).append(vals)
        for name in ("record", "normalised", "geometric", "jigsaw"):
            seed_means = [statistics.fmean(v[name] for v in lst) for _, lst in sorted(per_seed.items())]
            got = rows[(dataset, name)]
            assert float(got["auroc_mean_pct"]) == pytest.approx(100 * statistics.fmean(seed_means), abs=1e-4)
            assert float(got["auroc_std_pct"]) == pytest.approx(100 * statistics.stdev(seed_means), abs=1e-4)
    md = (sweep["root"] / "report" / "fusion.md").read_text()
    assert "Normalised mean" in md and "Geometric score alone" in md


def test_files_written(sweep):
    out = sweep["root"] / "report"
    result = sweep["result"]
    names = {p.relative_to(out).as_posix() for p in result.files}
    for stem in ("table1", "table2", "table3", "fusion", "per_class/mnist", "per_class/cub200", "per_class/fonts"):
        assert f"{stem}.md" in names and f"{stem}.csv" in names
    # max_roc_classes=1: class 0 of each dataset with scores; Fonts has none
    assert {n for n in names if n.startswith("roc/")} == {"roc/mnist__0.png", "roc/cub200__0.png"}
    for p in result.files:
        assert p.is_file()
    assert (out / "roc" / "mnist__0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.files[-1] == out / "report.md"
    assert (out / "report.md").read_text() == result.markdown
    for heading in ("# fgad benchmark report", "## Table 1.", "## Table 2.", "## Table 3.", "## Fusion",
                    "## Per-class AUROC", "### MNIST", "## ROC curves", "## Skipped files"):
        assert heading in result.markdown
    assert "(roc/mnist__0.png)" in result.markdown
    assert not list(out.rglob("*.tmp"))


def test_bad_files_skipped_and_counted(sweep):
    result = sweep["result"]
    skipped = {Path(p): reason for p, reason in result.skipped}
    assert set(skipped) == set(sweep["bad"].values()) | {sweep["root"] / job_path("mnist", "ours", 0, 0)}
    assert "half-written JSON" in skipped[sweep["bad"]["truncated"]]
    assert "fgad_record" in skipped[sweep["bad"]["not_record"]]
    assert "NaN" in skipped[sweep["bad"]["nan"]]
    assert "version 2" in skipped[sweep["bad"]["version"]]
    assert "duplicate" in skipped[sweep["root"] / job_path("mnist", "ours", 0, 0)]
    assert result.n_records == len(sweep["records"])
    n_files = len(sweep["records"]) + len(sweep["bad"]) + 1
    msgs = [str(w.message) for w in sweep["warnings"] if issubclass(w.category, RecordWarning)]
    assert len(msgs) == 1 and msgs[0].startswith(f"skipped {len(skipped)} of {n_files} record file(s)")
    assert str(sweep["bad"]["truncated"]) in result.markdown


# --------------------------------------------------------------------------------------------
# small folders


def test_single_seed_has_no_plus_minus(tmp_path):
    for cls in (0, 1):
        write_json(tmp_path, job_path("mnist", "ours", cls, 0), make_record("mnist", "ours", cls, 0, scores=False))
    result = build_report(tmp_path, tmp_path / "out", max_roc_classes=0)
    md = (tmp_path / "out" / "table1.md").read_text()
    assert md_rows(md, "Ours")[0] == ["Ours", "91.0 (2 cls)"]  # (0.90 + 0.92) / 2
    assert "±" not in md and "Seeds per cell: 1." in md
    assert result.tables["table1"][0]["auroc_std_pct"] == ""
    assert md_rows((tmp_path / "out" / "table2.md").read_text(), "MNIST")[0] == ["MNIST", "-", "-", "91.0 (2 cls)"]
    assert not (tmp_path / "out" / "roc").exists() and not (tmp_path / "out" / "fusion.md").exists()
    assert result.out_dir == tmp_path / "out" and not (tmp_path / "report").exists()


def test_no_table2_without_ablation_methods(tmp_path):
    write_json(tmp_path, job_path("fonts", "ocsvm", 0, 0), make_record("fonts", "ocsvm", 0, 0, scores=False))
    result = build_report(tmp_path, max_roc_classes=0)
    assert not (tmp_path / "report" / "table2.md").exists()
    assert "No records of MHRot, Jigsaw only or Ours." in result.markdown


def test_several_presets_are_kept_apart(tmp_path):
    for preset in ("quick", "paper"):
        rec = make_record("mnist", "ours", 0, 0, preset=preset, scores=False)
        write_json(tmp_path, f"{preset}/records/a.json", rec)
    result = build_report(tmp_path, max_roc_classes=0)
    md = (tmp_path / "report" / "table1.md").read_text()
    assert md_rows(md, "Ours [paper]") and md_rows(md, "Ours [quick]")
    assert result.n_records == 2 and not result.skipped


def test_task_terms_from_config(tmp_path):
    rec = make_record("mnist", "ours", 0, 0, task_scores=True, config={"task_terms": {"geometric": 36, "jigsaw": 1}})
    write_json(tmp_path, "records/a.json", rec)
    result = build_report(tmp_path, max_roc_classes=0)
    row = next(r for r in result.tables["fusion"] if r["score"] == "normalised")
    y = np.array(rec["labels"])
    g, j = (np.array(rec["task_scores"][t]) for t in ("geometric", "jigsaw"))
    assert float(row["auroc_mean_pct"]) == pytest.approx(100 * roc_auc_score(y, -(g / 36 + j / 1)), abs=1e-4)


def test_empty_or_missing_folder_raises(tmp_path):
    with pytest.raises(InputError, match="no benchmark records under"):
        build_report(tmp_path)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "bad.json").write_text("{")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(InputError, match=r"no benchmark records under .*1 invalid file"):
            build_report(tmp_path)
    with pytest.raises(InputError, match="not found"):
        build_report(tmp_path / "nope")
    with pytest.raises(InputError, match="max_roc_classes"):
        build_report(tmp_path, max_roc_classes=-1)


def test_single_class_test_set_is_skipped_not_fatal(tmp_path):
    rec = make_record("mnist", "ours", 0, 0, metrics={})
    rec["labels"] = [0] * N_TEST
    write_json(tmp_path, "records/one_class.json", rec)
    write_json(tmp_path, "records/ok.json", make_record("mnist", "ours", 1, 0, scores=False))
    with pytest.warns(RecordWarning, match="skipped 1 of 2"):
        result = build_report(tmp_path, max_roc_classes=0)
    assert "only normal images" in result.skipped[0][1]
    assert math.isclose(float(result.tables["table1"][0]["auroc_mean_pct"]), 92.0)


@pytest.mark.slow
def test_timing_table_means_over_jobs(tmp_path):
    for cls, fit in [(0, 2.0), (1, 4.0)]:
        rec = make_record("mnist", "ours", cls, 0)
        rec["timings"] = {"fit_s": fit, "score_s": 1.0, "total_s": fit + 1.0}
        write_json(tmp_path, job_path("mnist", "ours", cls, 0), rec)
    build_report(tmp_path)
    row = md_rows((tmp_path / "report" / "timings.md").read_text(), "MNIST")[0]
    assert row[1:] == ["Ours", "3.0", "1.0", "4.0", "2"]


def test_settings_changed_from_the_presets_are_listed(tmp_path):
    rec = make_record("mnist", "piad", 0, 0, scores=False)
    rec["overrides"] = {"allow_random_vgg": True, "iters": 50}
    write_json(tmp_path, job_path("mnist", "piad", 0, 0), rec)
    write_json(tmp_path, job_path("mnist", "ours", 0, 0), make_record("mnist", "ours", 0, 0, scores=False))
    result = build_report(tmp_path, tmp_path / "out", max_roc_classes=0)
    assert "- MNIST, PIAD (quick): `allow_random_vgg=true, iters=50`" in result.markdown
    assert "Ours (quick)" not in result.markdown  # no overrides: not listed
