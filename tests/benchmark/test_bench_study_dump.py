"""``benchmarks/study_dump.py``: one job trains on all of the study's training share and dumps what
the offline scoring needs (not a quality test)."""

from __future__ import annotations

import numpy as np
import pytest

from fgad.data.base import ImageDataset

from bench_helpers import load_script


@pytest.fixture(scope="module")
def study():
    return load_script("study_dump")


def tiny_dataset() -> ImageDataset:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat([0, 1], 20), np.repeat([0, 1], 6)
    return ImageDataset(name="tiny", x_train=rng.integers(0, 256, (40, 16, 16), dtype=np.uint8), y_train=y_train,
                        x_test=rng.integers(0, 256, (12, 16, 16), dtype=np.uint8), y_test=y_test,
                        class_names=["a", "b"])


def test_a_job_trains_on_the_whole_training_share(study, tmp_path, monkeypatch):
    """The study holds its own share out: the detector must not hold out another (it did once, with
    the improved default's scoring, and trained on 64% of the normals where the baselines had 80%)."""
    import fgad

    trained_on = []
    fit = fgad.Detector.fit

    def spy(self, images, *a, **kw):
        out = fit(self, images, *a, **kw)
        trained_on.append((len(images), self.info["n_train"]))
        return out

    monkeypatch.setattr(fgad.Detector, "fit", spy)
    ds = tiny_dataset()
    x_fit, x_held, _x_test, _y_test = study.split(ds, 0)
    assert len(x_fit) + len(x_held) == 20 and len(x_held) == 4
    line = study.run_job("tiny", ds, "ours", 0, 0, tmp_path, preset="tiny")
    assert trained_on == [(16, 16)]
    assert line.split("\t")[:4] == ["tiny", "ours", "0", "0"]
    dump = np.load(tmp_path / "tiny" / "ours" / "class0_seed0.npz")
    assert dump["test_logits_geometric"].shape[:2] == (12, 36) and dump["held_features"].shape[0] == 4
    assert study.run_job("tiny", ds, "ours", 0, 0, tmp_path, preset="tiny") is None  # done: skipped
    header, job = (tmp_path / "jobs.tsv").read_text().splitlines()
    assert header == study.JOBS_HEADER and job == line and line.split("\t")[6] == study.machine_id()


def test_the_jobs_file_gets_its_header_once_and_each_line_its_machine(study, tmp_path):
    study.append_job_line(tmp_path, "cub\tmhrot\t0\t0\t1.0\t2.0")
    study.append_job_line(tmp_path, "cub\tmhrot\t1\t0\t3.0\t4.0")
    lines = (tmp_path / "jobs.tsv").read_text().splitlines()
    assert lines[0] == study.JOBS_HEADER and len(lines) == 3
    machine = study.machine_id()
    assert machine and "\t" not in machine and all(ln.split("\t")[6] == machine for ln in lines[1:])
    fields = study.JOBS_HEADER.split("\t")
    assert tuple(fields) == load_script("study_eval").JOB_FIELDS  # the reader knows the writer's columns


def test_an_equal_time_baseline_trains_with_its_own_step_budget(study, tmp_path, monkeypatch):
    """``goad-eqtime`` is GOAD with fewer steps: the override reaches the method, and the dump is
    filed under the variant's name with the baseline's test scores and the floor's."""
    import fgad.methods

    made = []
    create = fgad.methods.create_method

    def spy(name, **kw):
        made.append((name, kw))
        return create(name, **kw)

    monkeypatch.setattr(fgad.methods, "create_method", spy)
    monkeypatch.setitem(study.BASELINES, "goad-eqtime", ("goad", {"steps": 3}))
    line = study.run_job("tiny", tiny_dataset(), "goad-eqtime", 0, 0, tmp_path, preset="tiny")
    assert made[0] == ("goad", {"preset": "tiny", "seed": 0, "steps": 3})
    assert line.split("\t")[:4] == ["tiny", "goad-eqtime", "0", "0"]
    dump = np.load(tmp_path / "tiny" / "goad-eqtime" / "class0_seed0.npz")
    assert dump["test_scores"].shape == (12,) and dump["floor_scores"].shape == (12,)


def colour_dataset() -> ImageDataset:
    rng = np.random.default_rng(1)
    return ImageDataset(name="tiny", x_train=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8),
                        y_train=np.repeat([0, 1], 20), x_test=rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8),
                        y_test=np.repeat([0, 1], 6), class_names=["a", "b"])


def test_pixel_scores_match_a_per_image_numpy_reference(study):
    rng = np.random.default_rng(2)
    x_fit, x = rng.integers(0, 256, (7, 5, 4, 3), dtype=np.uint8), rng.integers(0, 256, (3, 5, 4, 3), dtype=np.uint8)
    bank = [f.ravel() / 127.5 - 1.0 for f in x_fit]
    for got, image in zip(study.pixel_knn_distance(x_fit, x), x):
        q = image.ravel() / 127.5 - 1.0
        want = min(1.0 - q @ b / (np.linalg.norm(q) * np.linalg.norm(b)) for b in bank)
        assert got == pytest.approx(want, abs=1e-12)
    np.testing.assert_array_equal(study.mirrored(x)[1, :, 0], x[1, :, 3])  # column 0 ← column W − 1


def test_a_colour_job_dumps_mirrors_and_the_held_out_pixel_scores(study, tmp_path):
    ds = colour_dataset()
    study.run_job("tiny", ds, "ours-hflip", 0, 0, tmp_path, preset="tiny")
    dump = np.load(tmp_path / "tiny" / "ours-hflip" / "class0_seed0.npz")
    x_fit, x_held, x_test, _y = study.split(ds, 0)
    assert dump["mirror_test_logits_geometric"].shape == dump["test_logits_geometric"].shape
    assert dump["mirror_held_features"].shape == dump["held_features"].shape
    assert "mirror_train_logits_geometric" not in dump and dump["mirror_train_features"].shape[0] == len(x_fit)
    assert not any(k.startswith("mirror_") and k.endswith("_random") for k in dump)
    np.testing.assert_allclose(dump["held_floor_scores"], study.mean_distance(x_fit, x_held))
    np.testing.assert_allclose(dump["test_pixknn"], study.pixel_knn_distance(x_fit, x_test))
    assert dump["held_pixknn"].shape == (len(x_held),)


def test_a_grey_job_dumps_no_mirrors(study, tmp_path):
    study.run_job("tiny", tiny_dataset(), "ours", 0, 0, tmp_path, preset="tiny")
    dump = np.load(tmp_path / "tiny" / "ours" / "class0_seed0.npz")
    assert not any(k.startswith("mirror_") for k in dump) and "held_pixknn" in dump


def test_input_pixel_scores_are_added_to_an_older_dump_as_a_new_job_writes_them(study, tmp_path):
    ds = colour_dataset()
    study.run_job("tiny", ds, "ours-hflip", 0, 0, tmp_path, preset="tiny")
    path = tmp_path / "tiny" / "ours-hflip" / "class0_seed0.npz"
    fresh = dict(np.load(path))
    x_fit, x_held, _x_test, _y = study.split(ds, 0)
    np.testing.assert_allclose(fresh["held_pixknn_input"], study.pixel_knn_distance(x_fit, x_held, 32))  # tiny: side 32
    older = {k: v for k, v in fresh.items() if not k.endswith("_pixknn_input")}
    np.savez(path, **older)
    assert study.add_input_pixels("tiny", ds, path, "tiny")
    again = dict(np.load(path))
    for key in ("held_pixknn_input", "test_pixknn_input"):
        np.testing.assert_array_equal(again[key], fresh[key])
    assert not study.add_input_pixels("tiny", ds, path, "tiny")  # done already


def test_the_machine_tag_tells_two_boots_of_one_host_apart(study, monkeypatch):
    """Every machine here has one host name, so the boot is what separates two sessions' machines."""
    monkeypatch.setattr(study, "boot_id", lambda: "5e340351-ac46-4ba3-8c02-f5af5a44aaf4")
    first = study.machine_id()
    monkeypatch.setattr(study, "boot_id", lambda: "0b7c1e2a-9d4f-4c3b-8a1e-6f5d4c3b2a19")
    second = study.machine_id()
    assert first != second and first.rsplit(" ", 1)[0] == second.rsplit(" ", 1)[0]
    assert first.split()[-1].startswith("boot-") and first.split()[-2].startswith("cpu-") and "\t" not in first
    monkeypatch.setattr(study, "boot_id", lambda: "")  # no boot id to read: the tag still stands
    assert study.machine_id() == first.rsplit(" ", 1)[0]
    assert load_script("study_eval").machine_label(first) == first.split()[-1]
