"""Resuming training across scoring options: those that act only after training are free, those
that change the training images (the held-out split of the z-score / rank fusions) are not, and
a checkpoint written before the scoring options existed resumes at the paper's values."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

import fgad.core.training as training
from fgad import Detector, ModelFileError
from fgad.core.config import PAPER_SETTINGS

RUN = dict(preset="tiny", device="cpu", steps=2, checkpoint_every=1, image_size=16, batch_size=3,
           tasks=("rotation", "jigsaw"), **PAPER_SETTINGS)
X = np.random.default_rng(8).integers(0, 256, (10, 16, 16), dtype=np.uint8)
SCORING_KEYS = ("task_score", "score_fusion", "normal_stats", "heldout_fraction", "feature_knn", "feature_bank_max",
                "jigsaw_test_draws", "feature_weight", "pixel_knn", "test_mirror")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run's checkpoint folder (last = after step 1 of 2) and its weights, paper's scoring."""
    root = tmp_path_factory.mktemp("resume") / "ckpt"
    torch.set_num_threads(1)
    det = Detector(**RUN).fit(X, checkpoint_dir=root, progress=False)
    return root, {k: v.clone() for k, v in det.net.state_dict().items()}


def resume(finished, tmp_path, monkeypatch, edit=None, **change) -> Detector:
    """Fit with a copy of the finished checkpoint (its saved config edited by ``edit``); it must
    resume: run step 1 only and end with the finished run's weights."""
    src, _ = finished
    ckpt = tmp_path / "ckpt"
    shutil.copytree(src, ckpt)
    if edit is not None:
        state = ckpt / "last" / "state.json"
        meta = json.loads(state.read_text())
        edit(meta["config"])
        state.write_text(json.dumps(meta))

    steps_run, real = [], training.cosine_lr
    monkeypatch.setattr(training, "cosine_lr", lambda lr, step, total: steps_run.append(step) or real(lr, step, total))
    det = Detector(**{**RUN, **change}).fit(X, checkpoint_dir=ckpt, progress=False)
    assert steps_run == [1], "trained from the start instead of resuming"
    if det.heldout_indices is None:  # the same training images: the same weights
        for k, v in finished[1].items():
            assert torch.equal(det.net.state_dict()[k], v), k
    return det


@pytest.mark.parametrize("change", [
    {"task_score": "logprob"},
    {"task_score": "dirichlet", "jigsaw_test_draws": 2},
    {"score_fusion": "mean"},
    {"score_fusion": "zscore", "normal_stats": "train", "feature_knn": 2, "feature_bank_max": 5},  # no split
    {"score_fusion": "zscore", "normal_stats": "train", "feature_knn": 1, "feature_weight": 2.0, "pixel_knn": 2,
     "test_mirror": "on"},
])
def test_scoring_only_changes_resume(finished, tmp_path, monkeypatch, change):
    assert resume(finished, tmp_path, monkeypatch, **change).heldout_indices is None


@pytest.mark.parametrize("change", [{"score_fusion": "zscore"}, {"score_fusion": "rank", "heldout_fraction": 0.3}])
def test_a_held_out_split_is_another_training_set(finished, tmp_path, monkeypatch, change):
    with pytest.raises(ModelFileError, match=r"held-out split \(score_fusion, normal_stats, heldout_fraction\)"):
        resume(finished, tmp_path, monkeypatch, **change)


def test_the_same_split_under_another_standardised_fusion_resumes(finished, tmp_path, monkeypatch):
    def made_with_zscore(cfg):
        cfg["score_fusion"] = "zscore"

    det = resume(finished, tmp_path, monkeypatch, made_with_zscore, score_fusion="rank")
    assert det.normal_stats is not None and len(det.heldout_indices) == 2
    for change in ({"score_fusion": "sum"}, {"score_fusion": "rank", "heldout_fraction": 0.4},
                   {"score_fusion": "zscore", "normal_stats": "train"}):
        shutil.rmtree(tmp_path / "ckpt")
        with pytest.raises(ModelFileError, match="held-out split"):
            resume(finished, tmp_path, monkeypatch, made_with_zscore, **change)


def test_a_checkpoint_from_before_the_scoring_options_resumes_at_the_paper_values(finished, tmp_path, monkeypatch):
    def old(cfg):
        for k in SCORING_KEYS:
            del cfg[k]

    resume(finished, tmp_path, monkeypatch, old)
    shutil.rmtree(tmp_path / "ckpt")
    resume(finished, tmp_path, monkeypatch, old, task_score="logprob", jigsaw_test_draws=1)
    shutil.rmtree(tmp_path / "ckpt")
    with pytest.raises(ModelFileError, match="held-out split"):
        resume(finished, tmp_path, monkeypatch, old, score_fusion="zscore")
