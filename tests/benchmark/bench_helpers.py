"""Shared fixtures of the benchmark suite: a tiny 3-class .npz dataset and helpers (CPU, seconds)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

# Two shared cores: one intra-op thread keeps runs fast and predictable.
torch.set_num_threads(1)

CLASS_NAMES = ["round", "a/b c:*", "stripes"]
SIDE = 16
PER_CLASS = 10
# Tiny self-supervised runs: the "tiny" preset cut to 2 steps on 16×16 images.
FAST = {"steps": 2, "image_size": 16}

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (not a package) imported as a module, e.g. ``"throughput"``."""
    spec = importlib.util.spec_from_file_location(f"fgad_{name}_script", BENCHMARKS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _class_images(k: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """Class k has its own mean pattern plus noise, so mean-distance separates classes."""
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    if k == 0:
        base = 255.0 * (((yy - SIDE / 2) ** 2 + (xx - SIDE / 2) ** 2) < (SIDE / 3) ** 2)
    elif k == 1:
        base = 255.0 * (xx < SIDE / 2)
    else:
        base = 255.0 * ((yy // 2) % 2)
    noise = rng.normal(0, 30, (n, SIDE, SIDE))
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def write_npz(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    xs_tr, ys_tr, xs_te, ys_te = [], [], [], []
    for k in range(len(CLASS_NAMES)):
        xs_tr.append(_class_images(k, PER_CLASS, rng))
        ys_tr.append(np.full(PER_CLASS, k))
        xs_te.append(_class_images(k, PER_CLASS, rng))
        ys_te.append(np.full(PER_CLASS, k))
    np.savez(path, x_train=np.concatenate(xs_tr), y_train=np.concatenate(ys_tr),
             x_test=np.concatenate(xs_te), y_test=np.concatenate(ys_te), class_names=np.array(CLASS_NAMES))
    return path


@pytest.fixture(scope="session")
def npz_path(tmp_path_factory) -> Path:
    """``tiny3.npz``: 3 classes (one with an awkward name), 10 train + 10 test 16×16 images each."""
    return write_npz(tmp_path_factory.mktemp("data") / "tiny3.npz")


@pytest.fixture(scope="session")
def ref(npz_path):
    from fgad.benchmark.runner import DataRef

    return DataRef("npz", str(npz_path))


def read_records(out_dir: Path) -> dict[str, dict]:
    """Every record under ``out_dir/records``, by its path relative to that folder."""
    root = Path(out_dir) / "records"
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


class LogSink(list):
    def __call__(self, line: str) -> None:
        self.append(line)
