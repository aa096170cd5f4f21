"""Crashes lose nothing: a training run and a benchmark sweep killed with SIGKILL, then rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

FGAD = [sys.executable, "-m", "fgad.cli"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]


def _write_npz(path: Path, n_per_class: int = 12, side: int = 16, classes: int = 3) -> Path:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (classes * n_per_class, side, side), dtype=np.uint8)
    y = np.repeat(np.arange(classes), n_per_class)
    np.savez(path, x_train=x, y_train=y, x_test=x[::-1].copy(), y_test=y[::-1].copy())
    return path


def _kill_when(predicate, proc: subprocess.Popen, timeout: float = 600.0) -> None:
    """SIGKILL ``proc`` as soon as ``predicate()`` holds (a file or state condition), however fast it runs.

    Each check runs with the process stopped (SIGSTOP), so it cannot move on between a true check and
    the kill; no timing window to hit. The timeout is only there to fail instead of hanging.
    """
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended before it could be killed (rc {proc.returncode}): {err[-2000:]}")
        proc.send_signal(signal.SIGSTOP)
        if predicate():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return
        proc.send_signal(signal.SIGCONT)
        if time.monotonic() - t0 > timeout:
            proc.kill()
            pytest.fail(f"the process made no progress in {timeout:.0f} s")
        time.sleep(0.02)


def _train_cmd(data: Path, out: Path) -> list[str]:
    return [*FGAD, "train", str(data), "--out", str(out), "--preset", "tiny", "--quiet",
            "--device", "cpu", "--set", "steps=60", "--set", "checkpoint_every=5", "--set", "image_size=16"]


def test_training_killed_with_sigkill_resumes_to_the_same_weights(tmp_path):
    data = _write_npz(tmp_path / "d.npz")
    reference = tmp_path / "reference"
    subprocess.run(_train_cmd(data, reference), check=True, env=ENV, capture_output=True)

    model = tmp_path / "model"
    state = tmp_path / "model.checkpoints" / "last" / "state.json"

    def mid_run() -> bool:
        try:
            return json.loads(state.read_text())["next_step"] >= 15
        except (OSError, ValueError, KeyError):
            return False

    proc = subprocess.Popen(_train_cmd(data, model), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(mid_run, proc)
    assert proc.returncode == -signal.SIGKILL
    assert not model.exists(), "a killed run must not leave a model folder"
    killed_at = json.loads(state.read_text())["next_step"]
    assert 15 <= killed_at < 60

    subprocess.run(_train_cmd(data, model), check=True, env=ENV, capture_output=True)
    a = load_file(str(reference / "model.safetensors"))
    b = load_file(str(model / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k
    assert not (tmp_path / "model.checkpoints").exists()


def test_sweep_killed_with_sigkill_redoes_only_unfinished_jobs(tmp_path):
    data = _write_npz(tmp_path / "d.npz", classes=4)
    out = tmp_path / "runs"
    cmd = [*FGAD, "benchmark", "--dataset", "npz", "--data-root", str(data), "--method", "ours",
           "--preset", "tiny", "--set", "steps=40", "--set", "image_size=16", "--out", str(out),
           "--quiet", "--no-report"]
    records = out / "records"

    def some_done() -> bool:
        return len(list(records.rglob("*.json"))) >= 1 if records.exists() else False

    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _kill_when(some_done, proc)
    done_before = sorted(records.rglob("*.json"))
    assert 1 <= len(done_before) < 4
    for p in done_before:  # every record there is whole: written atomically
        json.loads(p.read_text())
    mtimes = {p: p.stat().st_mtime_ns for p in done_before}

    rerun = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=True)
    assert f"{len(done_before)} already done" in rerun.stderr
    assert len(list(records.rglob("*.json"))) == 4
    assert {p: p.stat().st_mtime_ns for p in done_before} == mtimes, "finished jobs must not be redone"
    assert not list(out.rglob("*.tmp")), "no temporary files may be left behind"
