"""Builders for tiny datasets in their real on-disk formats, shared by the tests/data suite."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(autouse=True)
def _isolated_data_root(tmp_path_factory, monkeypatch):
    """No test ever reads the user's real data folder."""
    monkeypatch.setenv("FGAD_DATA_DIR", str(tmp_path_factory.mktemp("fgad_data_root")))


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    arr = np.asarray(arr, dtype=np.uint8)
    data = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if gz:
        data = gzip.compress(data)
        path = path.with_name(path.name + ".gz")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def idx_writer():
    """idx_writer(path, array, gz=False) -> path written (``.gz`` appended when gz)."""
    return write_idx


def mnist_arrays(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    return (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    )


@pytest.fixture
def make_mnist():
    """make_mnist(folder, gz=True) -> (x_train, y_train, x_test, y_test) written as IDX files."""

    def make(folder: Path, gz: bool = True, seed: int = 0):
        xtr, ytr, xte, yte = mnist_arrays(seed=seed)
        write_idx(folder / "train-images-idx3-ubyte", xtr, gz)
        write_idx(folder / "train-labels-idx1-ubyte", ytr, gz)
        write_idx(folder / "t10k-images-idx3-ubyte", xte, gz)
        write_idx(folder / "t10k-labels-idx1-ubyte", yte, gz)
        return xtr, ytr, xte, yte

    return make


def cifar_records(images: np.ndarray, labels: list[tuple[int, ...]]) -> bytes:
    """CIFAR binary records: label bytes then the R, G, B planes (images are N×32×32×3)."""
    out = bytearray()
    for img, lab in zip(images, labels):
        out += bytes(lab)
        out += np.ascontiguousarray(img.transpose(2, 0, 1)).tobytes()
    return bytes(out)


@pytest.fixture
def make_cifar10():
    """make_cifar10(folder) -> (x_train, y_train, x_test, y_test); writes cifar-10-batches-bin/."""

    def make(folder: Path, per_batch: int = 3, n_test: int = 4, meta: bool = True):
        rng = np.random.default_rng(1)
        d = folder / "cifar-10-batches-bin"
        d.mkdir(parents=True, exist_ok=True)
        xs, ys = [], []
        for b in range(1, 6):
            x = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8)
            y = [(b + i) % 10 for i in range(per_batch)]
            (d / f"data_batch_{b}.bin").write_bytes(cifar_records(x, [(v,) for v in y]))
            xs.append(x)
            ys += y
        xt = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
        yt = [i % 10 for i in range(n_test)]
        (d / "test_batch.bin").write_bytes(cifar_records(xt, [(v,) for v in yt]))
        if meta:
            names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
            (d / "batches.meta.txt").write_text("\n".join(names) + "\n\n")
        return np.concatenate(xs), np.array(ys), xt, np.array(yt)

    return make


@pytest.fixture
def make_cifar100():
    """make_cifar100(folder) -> (x_train, coarse, fine, x_test, coarse, fine); writes cifar-100-binary/."""

    def make(folder: Path, n_train: int = 6, n_test: int = 4):
        rng = np.random.default_rng(2)
        d = folder / "cifar-100-binary"
        d.mkdir(parents=True, exist_ok=True)
        out = []
        for fname, n in (("train.bin", n_train), ("test.bin", n_test)):
            x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
            fine = rng.integers(0, 100, n)
            coarse = fine % 20
            (d / fname).write_bytes(cifar_records(x, list(zip(coarse.tolist(), fine.tolist()))))
            out += [x, coarse, fine]
        return tuple(out)

    return make


def save_image(path: Path, arr: np.ndarray, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)
    return path


@pytest.fixture
def save_img():
    return save_image


@pytest.fixture
def rand_img():
    rng = np.random.default_rng(3)

    def make(h=12, w=10, channels=3):
        shape = (h, w, channels) if channels == 3 else (h, w)
        return rng.integers(0, 256, shape, dtype=np.uint8)

    return make


@pytest.fixture(scope="session")
def mpl_font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"
