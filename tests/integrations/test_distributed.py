"""Data-parallel training on CPU with gloo: 2 processes against 1, slices, torchrun entry point.

Equality design: with dropout off, a 2-process run must give the weights (and batch-norm running
statistics) of a 1-process run of the same global batch up to float rounding. Both runs use the
global batch-norm formula of ``fgad.integrations.distributed`` (the 1-process reference runs in a world of
one, in this process), so they differ only in the order of float sums: 1e-5 is a tight bound.
torch's own batch-norm kernel rounds differently (about 1e-5 per step, amplified by training), so
against a plain ``Detector.fit`` the bound is looser; it is checked too, as a sanity check.
The uneven case is covered: 7 images in batches of 5 → slices 3|2, then 1|1, then an epoch turn.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist

from fgad import Detector
from fgad.core.config import PAPER_SETTINGS
from fgad.core.seeding import seed_everything
from fgad.core.training import rank_share
from fgad.integrations.distributed import GlobalBatchNorm2d, fit_distributed, train_ddp

from integration_helpers import class_images, free_port

# The paper's score: all 7 images train (held out, 5 would train, and with so few the 2-process
# batch-norm sums drift to ~2e-4 from the 1-process ones, paper score or not).
RUN = dict(preset="tiny", device="cpu", steps=3, image_size=16, batch_size=5, head_dropout=0.0, **PAPER_SETTINGS)


def _state(det: Detector) -> dict[str, torch.Tensor]:
    return {k: v.detach().float().clone() for k, v in det.net.state_dict().items()}


def _max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_rank_share_slices_partition_the_batch():
    for n in range(1, 12):
        for world in (1, 2, 3, 4):
            parts = [rank_share(n, r, world) for r in range(world)]
            got = [i for lo, hi, size in parts if size for i in range(lo, hi)]
            assert got == list(range(n))  # disjoint, contiguous, in rank order
            sizes = [size for _, _, size in parts]
            assert sum(sizes) == n and max(sizes) - min(sizes) <= 1
            for lo, hi, size in parts:
                assert hi - lo == max(size, 1) and 0 <= lo < hi <= n  # an empty share still gets one image


def _one_process_reference(images: np.ndarray) -> Detector:
    """The 1-process run, with the same batch-norm formula: a gloo world of one, in this process."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        det = fit_distributed(Detector(**RUN), images, progress=False, local_rank=0)
    finally:
        dist.destroy_process_group()
    return det


@pytest.mark.distributed
@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    images = class_images(0, 7)
    train_ddp(images, tmp_path / "model", nprocs=2, threads=1, progress=False, **RUN)
    two = Detector.load(tmp_path / "model")
    assert two.info["distributed"] == {"world_size": 2, "backend": "gloo", "sync_batchnorm": True}
    assert all(not isinstance(m, GlobalBatchNorm2d) for m in two.net.modules())

    one = _one_process_reference(images)
    assert all(not isinstance(m, GlobalBatchNorm2d) for m in one.net.modules())  # plain again after fit
    diff = _max_diff(_state(two), _state(one))
    assert diff < 1e-5, diff

    plain = Detector(**RUN).fit(images, progress=False)  # torch's batch-norm kernel
    assert _max_diff(_state(one), _state(plain)) < 5e-3
    assert _max_diff(_state(two), _state(plain)) < 5e-3
    # Training moved the weights by far more than these differences.
    untrained = Detector(**RUN)
    seed_everything(untrained.config.seed)
    untrained.build_network(1)  # the initial weights of every run above (fit seeds, then builds)
    assert _max_diff(_state(plain), _state(untrained)) > 1e-2
    # Scores of the 2-process model match the 1-process one.
    test = class_images(1, 4)
    np.testing.assert_allclose(two.score(test), one.score(test), rtol=1e-4, atol=1e-4)


@pytest.mark.distributed
@pytest.mark.subprocess
@pytest.mark.slow
def test_torchrun_with_dropout_keeps_replicas_equal_and_learns(tmp_path):
    """torchrun entry point, dropout on (masks differ by rank), per-rank batch norm, checkpoints
    by rank 0: training runs, the replicas agree bitwise at the end (checked inside; a mismatch
    fails the run), rank 0 writes the model and removes its checkpoints, and the loss goes down."""
    images = class_images(2, 8)
    np.savez(tmp_path / "normal.npz", x_train=images)
    out, ckpt = tmp_path / "model", tmp_path / "ckpt"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "fgad.cli.distributed", str(tmp_path / "normal.npz"), "--out", str(out), "--preset", "tiny",
           "--device", "cpu", "--checkpoint-dir", str(ckpt), "--quiet", "--no-sync-bn",
           "--set", "steps=20", "--set", "image_size=16", "--set", "batch_size=4", "--set", "checkpoint_every=8",
           "--channels", "colour"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "2 processes" in res.stderr
    det = Detector.load(out)
    assert det.info["distributed"] == {"world_size": 2, "backend": "gloo", "sync_batchnorm": False}
    assert det.input_shape == (16, 16, 3)  # --channels: grey images became colour, as with fgad train
    assert res.stderr.count("grey") == 1, res.stderr  # the conversion is reported once (by rank 0)
    assert not ckpt.exists()
    # The default (improved) detector: trained without its held-out share, its scoring state
    # fitted after training as Detector.fit does, and so it scores like any saved model.
    assert det.info["n_train"] == 6 and det.info["n_heldout"] == 2 and len(det.heldout_indices) == 2
    # colour images: the feature bank holds the 6 training normals and their mirrors
    assert det.mirrors and det.feature_bank.shape[0] == 12 and det.pixel_bank.shape[0] == 6
    assert det.normal_stats is not None
    assert np.isfinite(det.score(np.repeat(images[..., None], 3, axis=-1))).all()
    log = json.loads((out / "training_log.json").read_text())
    assert [e["step"] for e in log] == [10, 20]
    assert log[-1]["loss"] < log[0]["loss"]


def test_torchrun_entry_takes_every_option_of_fgad_train():
    """The input rule (--size, --resize, --channels), --method and the image reading options."""
    import argparse

    from fgad.cli.distributed import build_parser
    from fgad.cli.train import add_command

    sub = argparse.ArgumentParser().add_subparsers()
    add_command(sub)
    train = {o for a in sub.choices["train"]._actions for o in a.option_strings}
    torchrun = {o for a in build_parser()._actions for o in a.option_strings}
    assert train - torchrun == {"--deterministic"}
    assert {"--size", "--resize", "--channels", "--method", "--skip-unreadable"} <= torchrun


def test_torchrun_entry_refuses_to_run_without_torchrun(tmp_path, monkeypatch, capsys):
    from fgad.cli.distributed import main

    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert main(["x.npz", "--out", str(tmp_path / "m")]) == 2
    assert "torchrun" in capsys.readouterr().err
    assert not dist.is_initialized()
