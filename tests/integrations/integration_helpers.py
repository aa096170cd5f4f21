"""Shared pieces of the performance-feature suite (DDP, Ray, throughput script): tiny data, CPU."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import torch

# Two shared cores: one intra-op thread per process keeps runs fast and predictable.
torch.set_num_threads(1)

CLASS_NAMES = ["disc", "bar", "stripes"]
SIDE = 16


def class_images(k: int, n: int, seed: int = 0) -> np.ndarray:
    """n uint8 SIDE×SIDE images of class k: a class pattern plus noise."""
    rng = np.random.default_rng(seed + 7 * k)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    base = [255.0 * (((yy - SIDE / 2) ** 2 + (xx - SIDE / 2) ** 2) < (SIDE / 3) ** 2),
            255.0 * (xx < SIDE / 3), 255.0 * ((yy // 2) % 2)][k]
    return np.clip(base[None] + rng.normal(0, 30, (n, SIDE, SIDE)), 0, 255).astype(np.uint8)


def write_npz(path: Path, per_class: int = 8) -> Path:
    xs_tr = [class_images(k, per_class, 0) for k in range(3)]
    xs_te = [class_images(k, per_class, 1) for k in range(3)]
    ys = np.repeat(np.arange(3), per_class)
    np.savez(path, x_train=np.concatenate(xs_tr), y_train=ys, x_test=np.concatenate(xs_te), y_test=ys,
             class_names=np.array(CLASS_NAMES))
    return path


def read_records(out_dir: Path) -> dict[str, dict]:
    root = Path(out_dir) / "records"
    return {p.relative_to(root).as_posix(): json.loads(p.read_text()) for p in sorted(root.rglob("*.json"))}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
