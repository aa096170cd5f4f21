"""Files and folders fgad writes get the mode an ordinary write would give under the umask.

``tempfile`` makes its files 0600 and its folders 0700; an atomic write renames such a temporary
into place, so without care a saved model could be read by its writer only. Each file must be
``0o666 & ~umask`` and each folder ``0o777 & ~umask`` (0644/0755 with umask 022), as ``open``
and ``mkdir`` give. The umask is process-wide, so the commands run in a child process that sets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fgad.io import fileio
from fgad.io.fileio import atomic_directory, atomic_write_bytes, current_umask, file_mode, folder_mode

# Runs in a child process: set the umask, run the commands, list the mode of everything written.
CHILD = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path

    import torch

    torch.set_num_threads(1)
    os.umask(int(sys.argv[1], 8))
    from fgad.cli import main

    data, out = Path(sys.argv[2]), Path(sys.argv[3])
    fast = ["--preset", "tiny", "--quiet", "--set", "steps=2", "--set", "image_size=16", "--device", "cpu"]
    commands = [
        ["train", str(data), "--out", str(out / "model"), *fast],
        ["export", str(out / "model"), "--out", str(out / "exports" / "model.onnx")],
        ["score", str(out / "model"), str(data), "--key", "x_test", "--quiet", "--out", str(out / "scores.csv")],
        ["benchmark", "--dataset", "npz", "--data-root", str(data), "--method", "mean-distance", "--classes", "0",
         "--quiet", "--out", str(out / "runs")],
    ]
    for argv in commands:
        status = main(argv)
        assert status == 0, (argv, status)
    modes = {str(p.relative_to(out)): [p.is_dir(), p.stat().st_mode & 0o7777] for p in sorted(out.rglob("*"))}
    print(json.dumps(modes))
""")


def _written(tmp_path, umask: int) -> dict[str, tuple[bool, int]]:
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x_train=rng.integers(0, 256, (8, 16, 16), dtype=np.uint8), y_train=np.arange(8) % 2,
             x_test=rng.integers(0, 256, (6, 16, 16), dtype=np.uint8), y_test=np.arange(6) % 2)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FGAD_DATA_DIR": str(tmp_path / "fgad-data")}
    proc = subprocess.run([sys.executable, "-c", CHILD, f"{umask:o}", str(data), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {k: (d, m) for k, (d, m) in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_every_output_gets_the_umask_mode(tmp_path, umask):
    written = _written(tmp_path, umask)
    # What the commands write, at least (the benchmark may add more: every entry is checked).
    for name in ("model", "model/config.json", "model/model.safetensors", "model/training_log.json",
                 "exports", "exports/model.onnx", "exports/model.onnx.json", "scores.csv", "runs", "runs/records",
                 "runs/report", "runs/report/report.md"):
        assert name in written, sorted(written)
    assert any(n.startswith("runs/records/") and n.endswith(".json") for n in written), sorted(written)
    wrong = {name: f"{mode:04o}" for name, (is_dir, mode) in written.items()
             if mode != (0o777 if is_dir else 0o666) & ~umask}
    assert not wrong, f"umask {umask:03o}: {wrong}"
    assert not any(n.rsplit("/", 1)[-1].startswith(".") and n.endswith(".tmp") for n in written)  # no temporary


def test_atomic_writes_take_the_ordinary_modes(tmp_path):
    """In this process, whatever its umask: as open() and mkdir() would."""
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    with atomic_directory(tmp_path / "folder") as tmp:
        (tmp / "f.txt").write_text("y")
        (tmp / "private.bin").write_bytes(b"w")
        (tmp / "private.bin").chmod(0o600)  # as safetensors writes its files
    (tmp_path / "plain.txt").write_text("z")
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777 == file_mode()
    assert (tmp_path / "folder").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777 == folder_mode()
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "folder").iterdir()} == {file_mode()}


@pytest.mark.parametrize("proc", [True, False], ids=["proc-status", "os-umask"])
def test_reading_the_umask_does_not_change_it(proc, monkeypatch):
    if not proc:  # as on a system without /proc/self/status
        def no_proc(*args, **kwargs):
            raise OSError("no /proc")

        monkeypatch.setattr(fileio, "open", no_proc, raising=False)
    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        assert file_mode() == 0o640 and folder_mode() == 0o750
        assert os.umask(0o027) == 0o027  # still set
    finally:
        os.umask(before)


def test_a_downloaded_file_takes_the_ordinary_mode(tmp_path):
    import hashlib

    from fgad.data import download

    src = tmp_path / "src.bin"
    src.write_bytes(b"dataset bytes")
    remote = download.RemoteFile((src.as_uri(),), "got.bin", sha256=hashlib.sha256(src.read_bytes()).hexdigest())
    got = download.download_file(remote, tmp_path / "dl", progress=False)
    assert got.stat().st_mode & 0o777 == file_mode()
