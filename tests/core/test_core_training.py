"""The training loop: batches, schedule, loss, checkpoints and exact resume."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

import fgad.core.training as training
from fgad import ConfigError, Detector, ModelFileError
from fgad.core.config import resolve_config
from fgad.core.training import batch_indices, cosine_lr, task_loss, total_steps

RUN = dict(preset="tiny", device="cpu", steps=6, checkpoint_every=2, image_size=16, batch_size=3)


def test_batch_indices_cover_every_image_once_per_epoch():
    n, bs = 10, 4  # 3 steps per epoch: 4 + 4 + 2
    for epoch in range(3):
        parts = [batch_indices(5, epoch * 3 + i, n, bs) for i in range(3)]
        assert [len(p) for p in parts] == [4, 4, 2]
        assert sorted(torch.cat(parts).tolist()) == list(range(n))
    assert torch.equal(batch_indices(5, 4, n, bs), batch_indices(5, 4, n, bs))  # a function of (seed, step)
    epochs = [torch.cat([batch_indices(5, e * 3 + i, n, bs) for i in range(3)]).tolist() for e in range(3)]
    assert len({tuple(e) for e in epochs}) > 1  # reshuffled between epochs
    assert not torch.equal(torch.cat([batch_indices(6, i, n, bs) for i in range(3)]), torch.tensor(epochs[0]))


def test_batch_indices_when_batch_exceeds_the_set():
    assert sorted(batch_indices(0, 0, 3, 8).tolist()) == [0, 1, 2]
    assert sorted(batch_indices(0, 1, 3, 8).tolist()) == [0, 1, 2]


def test_total_steps_epochs_versus_steps():
    assert total_steps(resolve_config("tiny", {"steps": 7}), 10) == 7
    assert total_steps(resolve_config("tiny", {"epochs": 2.5}), 10) == 8  # ceil(2.5 × ceil(10/4))
    assert total_steps(resolve_config("tiny", {"epochs": 2}), 12) == 6
    assert total_steps(resolve_config("tiny", {"epochs": 0.1}), 10) == 1
    assert total_steps(resolve_config("tiny", {"epochs": 1, "steps": 9}), 10) == 9  # steps win
    assert resolve_config("tiny", {"epochs": 3}).steps is None


def test_cosine_lr_endpoints():
    assert cosine_lr(0.1, 0, 100) == pytest.approx(0.1)
    assert cosine_lr(0.1, 50, 100) == pytest.approx(0.05)
    assert cosine_lr(0.1, 100, 100) == pytest.approx(0.0, abs=1e-15)
    assert cosine_lr(0.1, 25, 100) == pytest.approx(0.05 * (1 + math.sqrt(0.5)))
    values = [cosine_lr(0.2, s, 10) for s in range(11)]
    assert all(a > b for a, b in zip(values, values[1:]))


def test_task_loss_by_hand():
    # All-zero logits: each head's cross-entropy is log(size); the task loss is their mean.
    logits = torch.zeros(5, 10)
    labels = torch.tensor([[0, 1, 2], [1, 1, 3], [2, 0, 0], [0, 2, 1], [1, 2, 3]])
    loss, accs = task_loss(logits, labels, (3, 3, 4))
    assert loss.item() == pytest.approx((2 * math.log(3) + math.log(4)) / 3, rel=1e-6)
    assert len(accs) == 3
    # A confident correct third head: its cross-entropy is ~0 and its accuracy 1.
    logits[torch.arange(5), 6 + labels[:, 2]] = 50.0
    loss, accs = task_loss(logits, labels, (3, 3, 4))
    assert loss.item() == pytest.approx(2 * math.log(3) / 3, rel=1e-5)
    assert accs[2] == 1.0
    assert accs[0] == pytest.approx(2 / 5)  # argmax of equal logits is class 0: labels 0 at rows 0 and 3


def _weights(det: Detector) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in det.net.state_dict().items()}


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def small_images():
    return np.random.default_rng(3).integers(0, 256, (7, 16, 16), dtype=np.uint8)


@pytest.fixture(scope="module")
def full_run(small_images, tmp_path_factory):
    """An uninterrupted 6-step run with checkpoints every 2 steps; its folder keeps the step-4 one."""
    ckpt = tmp_path_factory.mktemp("full") / "ckpt"
    det = Detector(**RUN).fit(small_images, checkpoint_dir=ckpt, progress=False)
    return det, _weights(det), ckpt


def test_checkpoint_contents(full_run):
    det, _, ckpt = full_run
    meta = json.loads((ckpt / "last" / "state.json").read_text())
    assert meta["next_step"] == 4  # written after steps 2 and 4, not after the last one
    assert meta["config"] == det.config.to_dict()
    from safetensors.torch import load_file

    tensors = load_file(str(ckpt / "last" / "state.safetensors"))
    assert any(k.startswith("momentum.") for k in tensors)
    assert {k[len("model."):] for k in tensors if k.startswith("model.")} == set(det.net.state_dict())
    assert det.history[-1]["step"] == 6
    assert det.history[-1]["lr"] == pytest.approx(cosine_lr(det.config.lr, 5, 6))


def test_resume_from_copied_step4_checkpoint_matches_uninterrupted_run(full_run, small_images, tmp_path,
                                                                      monkeypatch):
    _, want, ckpt = full_run
    shutil.copytree(ckpt, tmp_path / "ckpt")
    steps_run = []
    real = training.cosine_lr
    monkeypatch.setattr(training, "cosine_lr", lambda lr, step, total: steps_run.append(step) or real(lr, step, total))
    det = Detector(**RUN).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert steps_run == [4, 5]
    _assert_same_weights(_weights(det), want)


def test_interrupted_run_resumes_to_identical_weights(full_run, small_images, tmp_path, monkeypatch):
    _, want, _ = full_run
    real = training.cosine_lr

    def crash_at_step_3(lr, step, total):
        if step == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(lr, step, total)

    monkeypatch.setattr(training, "cosine_lr", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        Detector(**RUN).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert json.loads((tmp_path / "ckpt" / "last" / "state.json").read_text())["next_step"] == 2

    steps_run = []
    monkeypatch.setattr(training, "cosine_lr", lambda lr, step, total: steps_run.append(step) or real(lr, step, total))
    # A resume may differ in keys that do not change training (here score_batch_size).
    det = Detector(**RUN, score_batch_size=7).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)
    assert steps_run == [2, 3, 4, 5]
    _assert_same_weights(_weights(det), want)


def test_uninterrupted_runs_are_identical_and_training_moves_weights(full_run, small_images):
    det0, want, _ = full_run
    det = Detector(**RUN).fit(small_images, progress=False)  # no checkpoint folder
    _assert_same_weights(_weights(det), want)
    short = Detector(**{**RUN, "steps": 1}).fit(small_images, progress=False)
    assert not torch.equal(short.net.heads["jigsaw"][1].weight, want["heads.jigsaw.1.weight"])


@pytest.mark.parametrize("change", [{"lr": 0.05}, {"seed": 3}, {"tasks": ("geometric",)}])
def test_checkpoint_from_another_config_is_refused(full_run, small_images, tmp_path, change):
    _, _, ckpt = full_run
    shutil.copytree(ckpt, tmp_path / "ckpt")
    key = next(iter(change))
    with pytest.raises(ModelFileError, match=key):
        Detector(**{**RUN, **change}).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)


def test_unreadable_checkpoint_config_is_refused(full_run, small_images, tmp_path):
    _, _, ckpt = full_run
    shutil.copytree(ckpt, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "last" / "state.json").write_text("{ truncated")
    with pytest.raises(ModelFileError, match="unreadable training checkpoint"):
        Detector(**RUN).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)


def test_unreadable_checkpoint_weights_are_refused(full_run, small_images, tmp_path):
    _, _, ckpt = full_run
    shutil.copytree(ckpt, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "last" / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelFileError):
        Detector(**RUN).fit(small_images, checkpoint_dir=tmp_path / "ckpt", progress=False)


def test_evaluation_hook_steps():
    # every 2 steps of a 5-step run: before the first, 2, 4, after the last
    assert [d for d in range(6) if training.eval_due(d, 0, 5, 2)] == [0, 2, 4, 5]
    assert [d for d in range(2, 6) if training.eval_due(d, 2, 5, 4)] == [2, 4, 5]  # resumed at step 2
    assert [d for d in range(6) if training.eval_due(d, 0, 5, None)] == [0, 5]
    assert [d for d in range(6) if training.eval_due(d, 0, 5, {1, 3})] == [1, 3]
    for bad in (0, -1, True):
        with pytest.raises(ConfigError):
            training.check_eval_every(bad)


def test_evaluation_hook_sees_the_network_and_leaves_the_weights(full_run, small_images):
    _, want, _ = full_run
    seen = []
    det = Detector(**RUN).fit(small_images, progress=False, eval_every=4,
                              evaluate=lambda done, net: seen.append((done, net.training)))
    assert seen == [(0, True), (4, True), (6, True)]
    _assert_same_weights(_weights(det), want)
