"""``benchmarks/study_eval.py``'s pre-registered rule for the training-side candidates, and
``study_dump.py``'s candidate variants (valid configurations at about the default's step cost)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fgad.core.config import resolve_config

from bench_helpers import load_script


@pytest.fixture(scope="module")
def study_eval():
    return load_script("study_eval")


def write_tsvs(tmp_path, aurocs: dict[tuple[str, str, int], float], fit_s: dict[tuple[str, str, int], float],
               machines: dict[tuple[str, str, int], str] | None = None):
    """An evaluation TSV and a jobs TSV; every job ran on machine "cpu ×2 aaaa" unless ``machines`` says."""
    score = "logp+knn1|z-w3"
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for (ds, v, c), a in aurocs.items():
        rows.append(f"{ds}\t{v}\t{c}\t0\t{score}\t{a}\t0.5\t")
        rows.append(f"{ds}\t{v}\t{c}\t0\tp|mean\t0.1\t0.5\t")  # another candidate: must be ignored
    machines = machines or {}
    jobs = ["dataset\tvariant\tclass\tseed\tfit_s\ttotal_s\tmachine"]
    jobs += [f"{ds}\t{v}\t{c}\t0\t{t}\t{t}\t{machines.get((ds, v, c), 'cpu ×2 aaaa')}"
             for (ds, v, c), t in fit_s.items()]
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    (tmp_path / "jobs.tsv").write_text("\n".join(jobs) + "\n")
    return tmp_path / "eval.tsv", tmp_path / "jobs.tsv"


def verdicts(text: str) -> dict[str, list[str]]:
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("ours-vpi9", "ours-hflip", "ours-jigrand10", "mhrot"):
            out[cells[0]] = cells
    return out


def test_the_rule_needs_a_mean_gain_no_big_loss_and_equal_time(study_eval, tmp_path):
    aurocs, fit = {}, {}
    for c in range(3):
        for ds in ("cub", "fonts"):
            aurocs[(ds, "ours", c)] = 0.80
            fit[(ds, "ours", c)] = 100.0
        # vpi9: +2 on CUB, -0.4 on fonts (mean +0.8, no loss > 0.5), 10% slower: passes
        aurocs[("cub", "ours-vpi9", c)], aurocs[("fonts", "ours-vpi9", c)] = 0.82, 0.796
        fit[("cub", "ours-vpi9", c)] = fit[("fonts", "ours-vpi9", c)] = 110.0
        # jigrand10: +3 on CUB but -1 on fonts: one dataset loses more than 0.5, fails
        aurocs[("cub", "ours-jigrand10", c)], aurocs[("fonts", "ours-jigrand10", c)] = 0.83, 0.79
        fit[("cub", "ours-jigrand10", c)] = fit[("fonts", "ours-jigrand10", c)] = 100.0
        # hflip: +1.2 on CUB, equal to ours on fonts by construction (mean +0.6), but 1.5x slower: fails
        aurocs[("cub", "ours-hflip", c)] = 0.812
        fit[("cub", "ours-hflip", c)] = 150.0
    # mhrot ran one CUB class only: not decided
    aurocs[("cub", "mhrot", 0)] = 0.9
    fit[("cub", "mhrot", 0)] = 90.0
    text = study_eval.training_rule(*write_tsvs(tmp_path, aurocs, fit))
    rows = verdicts(text)
    assert rows["ours-vpi9"][-1] == "passes" and rows["ours-vpi9"][-3] == "+0.8"
    assert rows["ours-vpi9"][-2] == "1.10"
    assert rows["ours-jigrand10"][-1] == "fails" and rows["ours-jigrand10"][-3] == "+1.0"
    assert rows["ours-hflip"][2] == "= ours" and rows["ours-hflip"][-3] == "+0.6"
    assert rows["ours-hflip"][-2] == "1.50" and rows["ours-hflip"][-1] == "fails"
    assert rows["mhrot"][1] == "partial (1 of 3)" and rows["mhrot"][2] == "not run"
    assert rows["mhrot"][-1].startswith("not decided")


def test_rule_classes_restrict_the_jobs(study_eval, tmp_path):
    aurocs = {("cub", "ours", c): 0.8 for c in (50, 60)}
    aurocs |= {("cub", "mhrot", 50): 0.7, ("cub", "mhrot", 60): 0.92}  # loses on 50, gains on 60
    fit = {(ds, v, c): 100.0 for ds, v, c in aurocs}
    paths = write_tsvs(tmp_path, aurocs, fit)
    assert verdicts(study_eval.training_rule(*paths))["mhrot"][1].startswith("+1.0 ")
    only_60 = verdicts(study_eval.training_rule(*paths, study_eval.parse_classes("cub:60-69")))["mhrot"]
    assert only_60[1].startswith("+12.0 ") and only_60[-1] == "passes"
    assert study_eval.parse_classes("cub:60-62,mnist:8") == {"cub": {60, 61, 62}, "mnist": {8}}


def test_the_time_ratio_compares_jobs_of_one_machine_where_there_are_any(study_eval, tmp_path):
    """Machines differ in speed: a candidate run on a faster machine than its reference must not
    pass the time condition on that alone, nor fail it on a slower one."""
    aurocs = {("cub", v, c): a for c in range(4) for v, a in (("ours", 0.80), ("ours-vpi9", 0.82))}
    fit = {("cub", "ours", c): 100.0 for c in range(4)}
    fit |= {("cub", "ours-vpi9", c): t for c, t in enumerate((110.0, 110.0, 300.0, 300.0))}
    # classes 0-1: both on machine A (1.1x); classes 2-3: the candidate on a slower machine B (3x)
    machines = {("cub", "ours-vpi9", c): "cpu ×2 bbbb" for c in (2, 3)}
    row = verdicts(study_eval.training_rule(*write_tsvs(tmp_path, aurocs, fit, machines)))["ours-vpi9"]
    assert row[-2] == "1.10" and row[-1] == "passes"
    # no pair on one machine: every pair counts, and the cell says so
    machines = {("cub", "ours-vpi9", c): "cpu ×2 bbbb" for c in range(4)}
    row = verdicts(study_eval.training_rule(*write_tsvs(tmp_path, aurocs, fit, machines)))["ours-vpi9"]
    assert row[-2] == "2.05 (across machines)" and row[-1] == "fails"
    # lines from before the machine column: said so
    machines = {k: "" for k in fit}
    row = verdicts(study_eval.training_rule(*write_tsvs(tmp_path, aurocs, fit, machines)))["ours-vpi9"]
    assert row[-2] == "2.05 (machines unrecorded)"


def test_job_lines_from_before_the_header_and_machine_column_still_read(study_eval, tmp_path):
    (tmp_path / "jobs.tsv").write_text("cub\tmhrot\t0\t0\t100.0\t200.0\n"
                                       "cub\tmhrot\t1\t0\t300.0\t400.0\tEPYC ×2 abcd1234\n")
    jobs = study_eval.read_jobs(tmp_path / "jobs.tsv")
    assert jobs[("cub", "mhrot", 0, 0)]["machine"] == "" and jobs[("cub", "mhrot", 1, 0)]["fit_s"] == "300.0"
    assert study_eval.job_times(tmp_path / "jobs.tsv").splitlines()[2:] == [
        "| cub | mhrot | abcd1234 | 1 | 300 | 400 |", "| cub | mhrot | unrecorded | 1 | 100 | 200 |"]


def views_per_step(cfg) -> int:
    """Training views per step of the paper's tasks: each image brings every geometric view (36)
    and every jigsaw permutation, or a random ``views_per_image`` of each."""
    m = cfg.views_per_image or 10**9
    return cfg.batch_size * (min(36, m) + min(cfg.jigsaw_k, m))


def test_training_candidates_are_valid_and_cost_about_a_default_step():
    study = load_script("study_dump")
    default = views_per_step(resolve_config("quick", study.VARIANTS["ours"]))
    assert default == 8 * 39
    for name in ("ours-vpi9", "ours-hflip", "ours-jigrand10"):
        cfg = resolve_config("quick", study.VARIANTS[name])
        assert cfg.tasks == ("geometric", "jigsaw")
        assert abs(views_per_step(cfg) / default - 1) <= 0.05, name
    assert set(load_script("study_eval").TRAINING_CANDIDATES) >= {"ours-vpi9", "ours-hflip", "ours-jigrand10"}


def test_squashes_bound_each_z_score_as_registered(study_eval):
    z = np.array([-150.0, -3.5, -1.0, 0.0, 2.0, 10.0])
    np.testing.assert_allclose(study_eval.SQUASHES["log"](z), [-np.log(151), -np.log(4.5), -np.log(2), 0, np.log(3),
                                                                np.log(11)])
    np.testing.assert_array_equal(study_eval.SQUASHES["clip"](z), [-3, -3, -1, 0, 2, 3])
    held = {"geometric": {"held": np.array([0.0, 2.0]), "test": np.array([1.0, -99.0])},
            "feat": {"held": np.array([0.0, 1.0]), "test": np.array([0.5, -1.0])}}
    # z: geometric (s - 1) / sqrt(2), feat (s - 0.5) / sqrt(0.5); weights 1 and 3
    zg, zf = np.array([0.0, -100 / np.sqrt(2)]), np.array([0.0, -1.5 / np.sqrt(0.5)])
    np.testing.assert_allclose(study_eval.fuse_weighted(held, {"feat": 3.0}), -(zg + 3 * zf) / 4)
    np.testing.assert_allclose(study_eval.fuse_weighted(held, {"feat": 3.0}, "clip"),
                               -(np.clip(zg, -3, 3) + 3 * np.clip(zf, -3, 3)) / 4)


def test_the_score_rule_compares_candidates_on_the_same_trainings(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for c in range(3):
        for ds, base, zlog, zclip in (("cub", 0.80, 0.82, 0.81), ("mnist", 0.95, 0.95, 0.93)):
            for cand, a in (("logp+knn1|z-w3", base), ("logp+knn1|zlog-w3", zlog), ("logp+knn1|zclip-w3", zclip)):
                rows.append(f"{ds}\tours\t{c}\t0\t{cand}\t{a}\t0.5\t")
                rows.append(f"{ds}\tmhrot\t{c}\t0\t{cand}\t0.99\t0.5\t")  # another network: ignored
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    text = study_eval.score_rule(tmp_path / "eval.tsv")
    got = {r[0]: r for r in ([c.strip() for c in line.strip("| ").split(" | ")] for line in text.splitlines()
                             if line.startswith("| `"))}
    zlog, zclip = got["`logp+knn1\\|zlog-w3`"], got["`logp+knn1\\|zclip-w3`"]
    assert zlog[1].startswith("+2.0 ") and zlog[2].startswith("+0.0 ") and zlog[-2:] == ["+1.0", "passes"]
    assert zclip[2].startswith("-2.0 ") and zclip[-2:] == ["-0.5", "fails"]


def test_the_report_takes_the_plain_variants_rows_where_flips_change_nothing(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for c in range(2):
        for ds, variant, cand, auc in (("cub", "ours", "logp+knn1|z-w3", 0.80),
                                       ("cub", "ours-hflip", "logp+knn1|z-w3", 0.90),
                                       ("fonts", "ours", "logp+knn1|z-w3", 0.70), ("cub", "mhrot", "p|mean", 0.85),
                                       ("fonts", "mhrot", "p|mean", 0.60), ("cub", "mhrot-hflip", "p|mean", 0.88)):
            rows.append(f"{ds}\t{variant}\t{c}\t0\t{cand}\t{auc}\t0.5\t")
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    text = study_eval.report(tmp_path / "eval.tsv", "ours-hflip:logp+knn1|z-w3")
    cub, fonts = text.split("**fonts**")
    assert "| improved (calibrated) | 90.0 | 2 × 1 |" in cub and "| MHRot | 85.0 | 2 × 1 | +5.0" in cub
    assert "| improved (calibrated) | 70.0 | 2 × 1 |" in fonts and "| MHRot | 60.0 | 2 × 1 | +10.0" in fonts
    # MHRot with flips: its own rows on colour images, MHRot's on grey ones
    assert "| MHRot with flips | 88.0 | 2 × 1 | +2.0" in cub and "| MHRot with flips | 60.0 | 2 × 1 | +10.0" in fonts


def test_a_mirror_candidate_takes_its_unmirrored_rows_on_grey_datasets(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for c in range(2):
        for ds, variant, cand, auc in (("cub", "ours-hflip", "logp+knn1|z-w3", 0.80),
                                       ("cub", "ours-hflip", "logp+knn1|z-w3+mirror-bank", 0.83),
                                       ("fonts", "ours", "logp+knn1|z-w3", 0.70)):
            rows.append(f"{ds}\t{variant}\t{c}\t0\t{cand}\t{auc}\t0.5\t")
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    cub, fonts = study_eval.report(tmp_path / "eval.tsv", "ours-hflip:logp+knn1|z-w3+mirror-bank").split("**fonts**")
    assert "| improved (calibrated) | 83.0 | 2 × 1 |" in cub and "| improved (calibrated) | 70.0 | 2 × 1 |" in fonts
    assert study_eval.scored_as("logp+knn1|z-w3+mirror+pix-knn", "mnist") == "logp+knn1|z-w3+pix-knn"


def test_the_report_means_over_classes_when_seeds_differ_between_classes(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    # class 0 ran seeds 0-2 at 0.90, 0.80, 0.70 (mean 0.80); class 1 ran seed 0 only, at 0.60
    for c, s, a in ((0, 0, 0.90), (0, 1, 0.80), (0, 2, 0.70), (1, 0, 0.60)):
        rows.append(f"cub\tours-hflip\t{c}\t{s}\tlogp+knn1|z-w3\t{a}\t0.5\t")
        rows.append(f"cub\tmhrot\t{c}\t{s}\tp|mean\t{a - 0.1}\t0.5\t")
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    text = study_eval.report(tmp_path / "eval.tsv", "ours-hflip:logp+knn1|z-w3")
    assert "| improved (calibrated) | 70.0 | 2 × 1–3 |" in text  # (0.80 + 0.60) / 2, not the job mean 0.75
    assert "| MHRot | 60.0 | 2 × 1–3 | +10.0" in text


def test_job_times_are_medians_per_dataset_and_job_counting_a_rerun_once(study_eval, tmp_path):
    jobs = ["dataset\tvariant\tclass\tseed\tfit_s\ttotal_s",
            "cub\tmhrot\t0\t0\t100.0\t200.0", "cub\tmhrot\t1\t0\t300.0\t400.0",
            "cub\tmhrot\t2\t0\t900.0\t950.0", "cub\tmhrot\t2\t0\t200.0\t260.0",  # class 2 rerun: its last line
            "fonts\tgoad\t3\t0\t500.4\t560.6"]
    (tmp_path / "jobs.tsv").write_text("\n".join(jobs) + "\n")
    lines = study_eval.job_times(tmp_path / "jobs.tsv").splitlines()
    assert lines[2:] == ["| cub | mhrot | unrecorded | 3 | 200 | 260 |",
                         "| fonts | goad | unrecorded | 1 | 500 | 561 |"]


def test_checks_table_means_each_check_over_jobs_counting_a_job_once(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    for cand in ("p|mean", "logp+knn1|z-w3"):  # one job's checks repeat on each candidate's line
        rows.append(f"cub\tours\t50\t0\t{cand}\t0.8\t0.5\tacc_jigsaw_0=1.0000;jigsaw_ties_at_max=0.0100")
        rows.append(f"cub\tours\t51\t0\t{cand}\t0.8\t0.5\tacc_jigsaw_0=0.5000;jigsaw_ties_at_max=0.0300")
        rows.append(f"cub\tmhrot\t50\t0\t{cand}\t0.8\t0.5\tacc_geometric_0=0.4000")
    rows.append("cub\tdeepgeo\t50\t0\town\t0.9\t0.5\t")  # a baseline: no checks
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    table = study_eval.checks_table(tmp_path / "eval.tsv")
    lines = {line.split("|")[2].strip(): [c.strip() for c in line.strip("|").split("|")]
             for line in table.splitlines() if line.startswith("| cub")}
    assert set(lines) == {"ours", "mhrot"}
    assert lines["ours"][2:] == ["2", "–", "75.0 [50.0, 100.0]", "2.0 [1.0, 3.0]"]
    assert lines["mhrot"][2:] == ["1", "40.0 [40.0, 40.0]", "–", "–"]
    only = study_eval.checks_table(tmp_path / "eval.tsv", ["mhrot"])
    assert "| cub | ours |" not in only and "| cub | mhrot |" in only


def test_the_weight_rule_compares_with_the_flip_default_and_its_grey_stand_in(study_eval, tmp_path):
    aurocs = {("cub", "ours-hflip", c): 0.80 for c in range(3)}
    aurocs |= {("fonts", "ours", c): 0.70 for c in range(3)}  # ours-hflip's training on grey faces
    aurocs |= {("cub", "ours", c): 0.10 for c in range(3)}  # not the reference on colour: must be ignored
    aurocs |= {("cub", "ours-jw05", c): 0.81 for c in range(3)} | {("fonts", "ours-jw05", c): 0.71 for c in range(3)}
    aurocs |= {("cub", "ours-jw2", c): 0.83 for c in range(2)}  # ran two CUB classes only
    fit = {(ds, v, c): 100.0 for ds, v, c in aurocs}
    text = study_eval.training_rule(*write_tsvs(tmp_path, aurocs, fit), reference="ours-hflip",
                                    candidates=study_eval.WEIGHT_CANDIDATES)
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.strip("|").split("|")]
                                          for line in text.splitlines() if line.startswith("| ours-jw"))}
    assert rows["ours-jw05"][1].startswith("+1.0 ") and rows["ours-jw05"][2].startswith("+1.0 ")
    assert rows["ours-jw05"][-3:] == ["+1.0", "1.00", "passes"]
    assert rows["ours-jw2"][1] == "partial (2 of 3)" and rows["ours-jw2"][-1].startswith("not decided")


def test_weight_candidates_change_only_the_loss_weights_of_the_default():
    study = load_script("study_dump")
    default = resolve_config("quick", study.VARIANTS["ours-hflip"])
    for name, weight in (("ours-jw05", 0.5), ("ours-jw2", 2.0)):
        cfg = resolve_config("quick", study.VARIANTS[name])
        assert cfg.task_weights == {"jigsaw": weight}
        assert dataclasses.replace(cfg, task_weights=None) == default, name
    assert set(load_script("study_eval").WEIGHT_CANDIDATES) == {"ours-jw05", "ours-jw2"}


@pytest.fixture(scope="module")
def colour_dump(tmp_path_factory):
    """One tiny colour job of the improved default's training, dumped by ``study_dump.py``."""
    study = load_script("study_dump")
    rng = np.random.default_rng(1)
    from fgad.data.base import ImageDataset

    ds = ImageDataset(name="tiny", x_train=rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8),
                      y_train=np.repeat([0, 1], 20), x_test=rng.integers(0, 256, (12, 16, 16, 3), dtype=np.uint8),
                      y_test=np.repeat([0, 1], 6), class_names=["a", "b"])
    out = tmp_path_factory.mktemp("dumps")
    study.run_job("tiny", ds, "ours-hflip", 0, 0, out, preset="tiny")
    return out / "tiny" / "ours-hflip" / "class0_seed0.npz"


def candidate_scores(study_eval, path) -> dict[str, np.ndarray]:
    return dict(study_eval.candidates(study_eval.Job(path)))


def test_a_pixel_component_is_one_more_z_scored_term_of_weight_one(study_eval, colour_dump):
    scores = candidate_scores(study_eval, colour_dump)
    d = np.load(colour_dump)
    job = study_eval.Job(colour_dump)
    terms = {t: (job.task_score(t, "held", "logp"), job.task_score(t, "test", "logp"), 1.0) for t in job.tasks}
    terms["feat"] = (job.knn("held", 1), job.knn("test", 1), 3.0)
    terms["pix"] = (-d["held_floor_scores"], -d["floor_scores"], 1.0)

    def z_mean(names):  # by hand: z-scores on the held-out normals (sample std), weighted mean, negated
        return -sum(w * (test - held.mean()) / held.std(ddof=1) for n, (held, test, w) in terms.items()
                    if n in names) / sum(terms[n][2] for n in names)

    np.testing.assert_allclose(scores["logp+knn1|z-w3"], z_mean({*job.tasks, "feat"}), rtol=1e-9)
    np.testing.assert_allclose(scores["logp+knn1|z-w3+pix-mean"], z_mean({*job.tasks, "feat", "pix"}), rtol=1e-9)


def test_mirrors_identical_to_the_images_leave_the_default_score(study_eval, colour_dump, tmp_path):
    """With every mirror output a copy of the image's, ``+mirror`` is the default score exactly; the
    mirror bank (each training normal twice) changes only ties, not the nearest distance."""
    d = dict(np.load(colour_dump))
    for key in [k for k in d if k.startswith("mirror_")]:
        d[key] = d[key.removeprefix("mirror_")][: len(d[key])]
    path = tmp_path / "class0_seed0.npz"
    np.savez(path, **d)
    scores = candidate_scores(study_eval, path)
    for mirror, plain in (("+mirror", ""), ("+mirror-bank", ""), ("+mirror+pix-knn", "+pix-knn")):
        np.testing.assert_allclose(scores[f"logp+knn1|z-w3{mirror}"], scores[f"logp+knn1|z-w3{plain}"],
                                   rtol=1e-12, atol=1e-10)
    real = candidate_scores(study_eval, colour_dump)  # the real mirrors differ
    assert not np.allclose(real["logp+knn1|z-w3+mirror"], real["logp+knn1|z-w3"])


def test_the_mirror_rule_spans_the_colour_datasets_only(study_eval, tmp_path):
    rows = ["dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"]
    base = "logp+knn1|z-w3"
    for c in range(3):
        for ds, b, m in (("cub", 0.80, 0.82), ("cifar10", 0.60, 0.60), ("mnist", 0.95, 0.90)):
            for cand, a in ((base, b), (base + "+mirror", m), (base + "+mirror-bank", b - 0.01)):
                rows.append(f"{ds}\tours-hflip\t{c}\t0\t{cand}\t{a}\t0.5\t")
    (tmp_path / "eval.tsv").write_text("\n".join(rows) + "\n")
    cands, variant, only = study_eval.SCORE_RULES["mirror"]
    text = study_eval.score_rule(tmp_path / "eval.tsv", variant, candidates=cands, only=only)
    assert "mnist" not in text and "cifar10 Δ | cub Δ" in text
    got = {r[0]: r for r in ([c.strip() for c in line.strip("| ").split(" | ")] for line in text.splitlines()
                             if line.startswith("| `"))}
    assert got["`logp+knn1\\|z-w3+mirror`"][-2:] == ["+1.0", "passes"]
    assert got["`logp+knn1\\|z-w3+mirror-bank`"][-2:] == ["-1.0", "fails"]


def test_rescore_replaces_the_rows_of_rerun_jobs_and_keeps_the_others(study_eval, colour_dump, tmp_path, monkeypatch):
    dumps = colour_dump.parents[2]
    header = "dataset\tvariant\tclass\tseed\tcandidate\tauroc\tfloor\tchecks"
    old = [header, "tiny\tours-hflip\t0\t0\tp|mean\t0.1\t0.5\t", "cub\tours\t3\t0\tp|mean\t0.7\t0.6\t"]
    out = tmp_path / "eval.tsv"
    for flags, rerun_scored in (([], False), (["--rescore"], True)):
        out.write_text("\n".join(old) + "\n")
        monkeypatch.setattr("sys.argv", ["study_eval.py", str(dumps), "--out", str(out), *flags])
        assert study_eval.main() == 0
        rows = out.read_text().splitlines()
        assert rows[0] == header and old[2] in rows  # a job not in the dumps keeps its rows
        assert (old[1] in rows) is not rerun_scored
        assert any(r.startswith("tiny\tours-hflip\t0\t0\tlogp+knn1|z-w3+mirror\t") for r in rows) is rerun_scored
