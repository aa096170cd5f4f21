"""Scores recorded before the restructure: a fixed-seed ``quick`` model and DeepGEO, bit-identical.

``fixtures/reference_scores.json`` was written by the code before the package was regrouped
(48 MNIST training images of class 3, 40 test images, seed 0). Any change to the arithmetic of
training or scoring shows here as a changed bit.

The bits also depend on which vector instructions torch, oneDNN, OpenBLAS and NumPy pick for the
CPU: the reference was recorded on an AVX2 machine, and on an AVX-512 one a few steps of training
turn the last bits into a 1e-3 difference. So each model is trained in a child process limited to
AVX2 through the libraries' own switches, which must be set before they load.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# Each library's switch down to AVX2 (a machine without AVX-512 runs these paths anyway).
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "OPENBLAS_CORETYPE": "Haswell", "OMP_NUM_THREADS": "1"}

QUICK = """
import torch
from fgad import Detector
from fgad.core.config import PAPER_SETTINGS
torch.set_num_threads(1)  # the reference was recorded with one thread
det = Detector(preset="quick", steps=12, seed=0, **PAPER_SETTINGS).fit(x_train, progress=False)
out = {"ours_quick_steps12": hexes(det.score(x_test)),
       "ours_task_sums": {k: hexes(v) for k, v in det.score_tasks(x_test).items()}}
"""

DEEPGEO = """
import torch
from fgad.methods import FitContext, create_method
torch.set_num_threads(1)
geo = create_method("deepgeo", preset="quick", seed=0, steps=6, dirichlet_max_images=48)
geo.fit(x_train, FitContext(progress=False))
out = {"deepgeo_quick_steps6": hexes(geo.score(x_test))}
"""

PROLOGUE = """
import json, sys
import numpy as np
d = np.load(sys.argv[1])
x_train, x_test = d["x_train"], d["x_test"]
hexes = lambda values: [float(v).hex() for v in values]
"""


def numpy_avx2_only() -> dict[str, str]:
    """NumPy's switch: disable its AVX-512 loops, naming only groups this NumPy dispatches and this
    CPU has (NumPy refuses to disable others)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    off = [f for f in __cpu_dispatch__ if f.startswith(("AVX512", "X86_V4")) and __cpu_features__.get(f)]
    return {"NPY_DISABLE_CPU_FEATURES": " ".join(off)} if off else {}


def run_pinned(code: str) -> dict:
    env = {**os.environ, **AVX2_ONLY, **numpy_avx2_only()}
    done = subprocess.run([sys.executable, "-c", PROLOGUE + code + "\nprint(json.dumps(out))",
                           str(FIXTURES / "mnist_small.npz")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def reference():
    return json.loads((FIXTURES / "reference_scores.json").read_text())


@pytest.mark.slow
def test_quick_detector_scores_are_bit_identical(reference):
    out = run_pinned(QUICK)
    assert out["ours_quick_steps12"] == reference["ours_quick_steps12"]
    assert out["ours_task_sums"] == reference["ours_task_sums"]


@pytest.mark.slow
def test_deepgeo_scores_are_bit_identical(reference):
    out = run_pinned(DEEPGEO)
    assert out["deepgeo_quick_steps6"] == reference["deepgeo_quick_steps6"]
