"""Reading and checking benchmark records; display names and table order."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from fgad.errors import InputError
from fgad.report import (
    RecordWarning,
    dataset_display_name,
    find_record_files,
    load_records,
    method_display_name,
    validate_record,
)
from fgad.report.names import dataset_sort_key, method_sort_key, safe_file_stem


def record(**over):
    rec = {
        "fgad_record": 1,
        "job": {"dataset": "mnist", "method": "ours", "normal_class": 3, "class_name": "3", "seed": 0,
                "preset": "quick"},
        "config": {},
        "versions": {"fgad": "0.1.0"},
        "git_revision": None,
        "timings": {"fit_s": 1.0, "score_s": 1.0, "total_s": 2.0},
        "metrics": {"auroc": 0.75},
        "task_metrics": {"geometric": {"auroc": 0.7}},
        "labels": [0, 0, 1, 1],
        "scores": [0.1, 0.4, 0.35, 0.8],
        "task_scores": {"geometric": [1.0, 2.0, 3.0, 4.0], "jigsaw": [0.1, 0.2, 0.3, 0.4]},
        "groups": ["live", "live", "print", "replay"],
    }
    rec.update(over)
    return rec


def put(root: Path, rel: str, obj) -> Path:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


def test_load_records_arrays_paths_and_skips(tmp_path):
    good = put(tmp_path, "a/records/x/good.json", record())
    put(tmp_path, "a/records/bad.json", '{"fgad_record": 1, "job": {"dataset": "mni')
    put(tmp_path, "a/elsewhere/ignored.json", record())
    with pytest.warns(RecordWarning, match=r"skipped 1 of 2 record file\(s\)"):
        recs = load_records(tmp_path)
    assert len(recs) == 1
    rec = recs[0]
    assert rec["_path"] == str(good)
    assert rec["labels"].dtype == np.int8 and rec["labels"].tolist() == [0, 0, 1, 1]
    assert rec["scores"].dtype == np.float64
    assert set(rec["task_scores"]) == {"geometric", "jigsaw"}
    assert rec["job"]["normal_class"] == 3

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        light = load_records(tmp_path, with_scores=False)
    assert not {"labels", "scores", "task_scores", "groups"} & set(light[0])
    assert light[0]["metrics"]["auroc"] == 0.75


def test_load_records_no_warning_when_all_valid(tmp_path):
    put(tmp_path, "records/a.json", record())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_records(tmp_path)) == 1
    assert load_records(tmp_path / "records")[0]["job"]["method"] == "ours"  # a records folder itself


def test_load_records_duplicates_keep_the_last(tmp_path):
    put(tmp_path, "run1/records/a.json", record(metrics={"auroc": 0.6}))
    put(tmp_path, "run2/records/a.json", record(metrics={"auroc": 0.7}))
    with pytest.warns(RecordWarning, match="duplicate"):
        recs = load_records(tmp_path)
    assert [r["metrics"]["auroc"] for r in recs] == [0.7]


def test_find_record_files_and_missing_folder(tmp_path):
    put(tmp_path, "records/b.json", {})
    put(tmp_path, "records/a.json", {})
    put(tmp_path, "records/.hidden.json", {})
    put(tmp_path, ".cache/records/c.json", {})
    put(tmp_path, "records/notes.txt", "x")
    assert [p.name for p in find_record_files(tmp_path)] == ["a.json", "b.json"]
    with pytest.raises(InputError, match="not found"):
        find_record_files(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert load_records(tmp_path / "empty") == []


def _without(key):
    r = record()
    del r[key]
    return r


def _job(**over):
    r = record()
    r["job"] = {**r["job"], **over}
    return r


@pytest.mark.parametrize(
    ("rec", "match"),
    [
        ([1, 2], "not a JSON object"),
        ({"x": 1}, "fgad_record"),
        (record(fgad_record=2), "unsupported record version 2"),
        (record(fgad_record=True), "unsupported record version"),
        (_without("job"), "'job'"),
        (_job(dataset=""), "job.dataset"),
        (_job(method=3), "job.method"),
        (_job(normal_class=None), "job.normal_class"),
        (_job(seed="0"), "job.seed"),
        (_job(seed=True), "job.seed"),
        (_without("scores"), "together"),
        (record(labels=[0, 1, 2, 1]), "0 .normal. or 1 .anomaly."),
        (record(scores=[0.1, 0.2, 0.3]), "scores has 3 values, labels have 4"),
        (record(scores=[0.1, None, 0.3, 0.4]), "null"),
        (record(scores=[0.1, "x", 0.3, 0.4]), "not numbers"),
        (record(scores=[0.1, float("inf"), 0.3, 0.4]), "infinite"),
        (record(task_scores={"geometric": [1.0]}), "task_scores.geometric has 1 values"),
        (record(task_scores=[1, 2]), "'task_scores' is not an object"),
        (record(groups=["a"]), "'groups'"),
        (record(labels=[], scores=[]), "empty"),
        (record(metrics={"auroc": 1.5}), "metrics.auroc"),
        (record(metrics={"auroc": float("nan")}), "metrics.auroc"),
        (record(metrics="x"), "'metrics' is not an object"),
    ],
)
def test_validate_record_rejects(rec, match):
    with pytest.raises(InputError, match=match):
        validate_record(rec)


def test_validate_record_accepts_minimal_forms():
    no_arrays = {k: v for k, v in record().items() if k not in ("labels", "scores", "task_scores", "groups")}
    assert validate_record(no_arrays)["metrics"]["auroc"] == 0.75
    with pytest.raises(InputError, match="no finite metrics.auroc and no labels/scores"):
        validate_record({**no_arrays, "metrics": {}})
    only_scores = record(metrics={})
    out = validate_record(only_scores)
    assert out["labels"].tolist() == [0, 0, 1, 1]
    assert isinstance(only_scores["labels"], list)  # the input is left alone
    assert validate_record(_job(normal_class="live", preset=None))["job"]["normal_class"] == "live"


def test_display_names():
    assert method_display_name("ours") == "Ours"
    assert method_display_name("mhrot") == "MHRot"
    assert method_display_name("jigsaw") == "Jigsaw only"
    assert method_display_name("deepgeo") == "DeepGEO"
    assert method_display_name("deepsad-10") == "Deep SAD (10%)"
    assert method_display_name("deepsad-75") == "Deep SAD (75%)"
    assert method_display_name("my-method") == "my-method"
    assert dataset_display_name("cifar100") == "CIFAR-100"
    assert dataset_display_name("fashion-mnist") == "F-MNIST"
    assert dataset_display_name("cub200") == "Caltech-Birds 200"
    assert dataset_display_name("something") == "something"


def test_method_and_dataset_order():
    methods = ["mean-distance", "ours", "zeta", "iforest", "jigsaw", "mhrot", "deepsad-5", "deepgeo", "piad",
               "deepsad-10", "ocsvm", "deepsad-25", "alpha", "deepsad-75"]
    assert sorted(methods, key=method_sort_key) == [
        "deepsad-75", "deepsad-25", "deepsad-10", "piad", "deepgeo", "mhrot", "ours",
        "jigsaw", "deepsad-5", "alpha", "zeta", "ocsvm", "iforest", "mean-distance",
    ]
    datasets = ["zzz", "fonts", "mnist", "cifar100", "cub200", "fashion-mnist", "cifar10"]
    assert sorted(datasets, key=dataset_sort_key) == ["cifar100", "mnist", "fashion-mnist", "cub200", "fonts",
                                                      "cifar10", "zzz"]


def test_safe_file_stem():
    assert safe_file_stem("cub200") == "cub200"
    assert safe_file_stem("001.Black footed/Albatross") == "001.Black_footed_Albatross"
    assert safe_file_stem("..") == "_"
    assert safe_file_stem("../etc") == "_etc"
