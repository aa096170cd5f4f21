"""CIFAR-10 from the official *binary* version (no pickle is ever loaded).

Folder layout (``<root>`` defaults to ``$FGAD_DATA_DIR/cifar10``)::

    <root>/
    ├── cifar-10-binary.tar.gz          (optional: extracted here on first use)
    └── cifar-10-batches-bin/
        ├── data_batch_1.bin ... data_batch_5.bin
        ├── test_batch.bin
        └── batches.meta.txt            (class names; optional, the official names are built in)

``<root>`` may also be the ``cifar-10-batches-bin`` folder itself. Each record of a ``.bin``
file is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32×32).
Images come out 32×32×3 RGB. ``download=True`` fetches the archive and checks its size and MD5
(the CIFAR page publishes only MD5); extraction refuses unsafe members and caps the bytes written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Adapter, ImageDataset, dataset_dir, not_found

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

SUBDIR = "cifar-10-batches-bin"
ARCHIVE = "cifar-10-binary.tar.gz"
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILES = ["test_batch.bin"]
PIXELS = 32 * 32 * 3


def read_records(path: Path, label_bytes: int, label_index: int, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Parse a CIFAR binary file: ``label_bytes`` label bytes then 3072 pixels per record.

    Returns (N×32×32×3 uint8 images, int64 labels taken from byte ``label_index``).
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    rec = label_bytes + PIXELS
    if not raw or len(raw) % rec:
        raise InputError(
            f"{path}: corrupt or truncated CIFAR binary file: {len(raw)} bytes is not a whole number of "
            f"{rec}-byte records"
        )
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(-1, rec)
    labels = arr[:, label_index].astype(np.int64)
    if labels.max() >= num_classes:
        bad = int(np.argmax(labels >= num_classes))
        raise InputError(f"{path}: record {bad} has label {labels[bad]}, expected 0..{num_classes - 1}")
    images = arr[:, label_bytes:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_names(path: Path, default: list[str]) -> list[str]:
    """Class names, one per line (blank lines ignored); the built-in list if the file is absent."""
    if not path.is_file():
        return list(default)
    names = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    if len(names) != len(default):
        raise InputError(f"{path}: {len(names)} class names, expected {len(default)}")
    return names


def locate(name: str, root, *, subdir: str, archive: str, required: list[str], download: bool) -> tuple[Path, dict]:
    """Find the folder holding ``required`` files; extract the archive or download it if needed.

    Looks in ``<base>/<subdir>``, ``<base>`` itself, and the same under ``<base>/<name>``.
    Returns (folder, info about extraction).
    """
    from .download import fetch, safe_extract

    base = dataset_dir(name, root)

    def find() -> Path | None:
        for cand in (base / subdir, base, base / name / subdir, base / name):
            if cand.is_dir() and all((cand / f).is_file() for f in required):
                return cand
        return None

    folder = find()
    if folder is not None:
        return folder, {}
    for arch in (base / archive, base / name / archive):
        if arch.is_file():
            safe_extract(arch, arch.parent)
            folder = find()
            if folder is not None:
                return folder, {"extracted_from": str(arch)}
            raise InputError(f"{arch}: archive does not contain {subdir}/ with {', '.join(required)}")
    if download:
        (arch,) = fetch(name, base)
        safe_extract(arch, base)
        folder = find()
        if folder is not None:
            return folder, {"downloaded": str(arch)}
        raise InputError(f"{arch}: downloaded archive does not contain {subdir}/ with {', '.join(required)}")
    raise not_found(
        name, base, [f"{subdir}/{f}" for f in required], download=True, extra=f"(or put the archive {archive} there)"
    )


def load(root=None, *, download: bool = False) -> ImageDataset:
    folder, extra = locate(
        "cifar10", root, subdir=SUBDIR, archive=ARCHIVE, required=TRAIN_FILES + TEST_FILES, download=download
    )
    train = [read_records(folder / f, 1, 0, 10) for f in TRAIN_FILES]
    x_test, y_test = read_records(folder / TEST_FILES[0], 1, 0, 10)
    return ImageDataset(
        name="cifar10",
        x_train=np.concatenate([t[0] for t in train]),
        y_train=np.concatenate([t[1] for t in train]),
        x_test=x_test,
        y_test=y_test,
        class_names=read_names(folder / "batches.meta.txt", CLASS_NAMES),
        info={"source": "CIFAR-10 binary version (Krizhevsky 2009)", "folder": str(folder), **extra},
    )


ADAPTER = Adapter(load=load, options={}, downloadable=True, summary="CIFAR-10, 32×32 RGB, 10 classes")
