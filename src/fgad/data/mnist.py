"""MNIST from the official IDX files (gzipped or not), parsed with NumPy.

Folder layout (``<root>`` defaults to ``$FGAD_DATA_DIR/mnist``)::

    <root>/
    ├── train-images-idx3-ubyte.gz     (or without .gz)
    ├── train-labels-idx1-ubyte.gz
    ├── t10k-images-idx3-ubyte.gz
    └── t10k-labels-idx1-ubyte.gz

Images are 28×28 grey, white digit on black. ``download=True`` fetches the four files and checks
their size, their MD5 and the SHA-256 of their decompressed contents. The IDX reader checks the
magic number, the type byte and that the file holds exactly the bytes its header announces; a
corrupt or truncated file is a one-line error, and so is a .gz that decompresses to more than
:data:`MAX_IDX_BYTES`.
"""

from __future__ import annotations

import gzip
import io
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Adapter, ImageDataset, dataset_dir, find_dir, not_found

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

CLASS_NAMES = [str(i) for i in range(10)]

# A decompression cap against gzip bombs: the largest MNIST-format file (60,000 images) is 47 MB.
MAX_IDX_BYTES = 1 << 30


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Decompress ``raw``, refusing content past :data:`MAX_IDX_BYTES` (read at most one byte more)."""
    chunks, n = [], 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as g:
            # in chunks: one read(MAX_IDX_BYTES + 1) would allocate the whole cap up front
            while block := g.read(min(1 << 24, MAX_IDX_BYTES + 1 - n)):
                chunks.append(block)
                n += len(block)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"{path}: corrupt or truncated gzip file ({exc})") from exc
    if n > MAX_IDX_BYTES:
        raise InputError(f"{path}: decompresses to more than {MAX_IDX_BYTES} bytes; not an MNIST-format IDX file")
    return b"".join(chunks)


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file of unsigned bytes (type 0x08), optionally gzipped, to a uint8 array.

    Args:
        path: the file; gzip is detected from its first two bytes, not its name.
        ndim: the number of dimensions expected (3 for images, 1 for labels).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip(raw, path)
    if len(raw) < 4:
        raise InputError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise InputError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    dtype_code, nd = raw[2], raw[3]
    if dtype_code != 0x08:
        raise InputError(f"{path}: IDX data type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    if ndim is not None and nd != ndim:
        raise InputError(f"{path}: IDX file has {nd} dimensions, expected {ndim} (magic {raw[:4].hex()})")
    header = 4 + 4 * nd
    if len(raw) < header:
        raise InputError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=nd, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise InputError(
            f"{path}: {what}: header says {'×'.join(map(str, dims))} = {expected} bytes of data, file has {got}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _locate(folder: Path, stem: str) -> Path | None:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def _has_all(folder: Path) -> bool:
    return all(_locate(folder, s) for s in FILES.values())


def load_idx_dataset(
    name: str, root, *, download: bool, class_names: list[str], source: str
) -> ImageDataset:
    """Load an MNIST-format dataset (four IDX files) from ``root`` or its default folder."""
    base = dataset_dir(name, root)
    folder = find_dir(base, name, _has_all)
    if folder is None and download:
        from .download import fetch

        fetch(name, base)
        folder = base
    if folder is None:
        files = [f"{s}.gz" for s in FILES.values()]
        raise not_found(name, base, files, download=True, extra="(uncompressed files without .gz work too)")
    paths = {k: _locate(folder, s) for k, s in FILES.items()}
    x_train = read_idx(paths["train_images"], 3)
    y_train = read_idx(paths["train_labels"], 1)
    x_test = read_idx(paths["test_images"], 3)
    y_test = read_idx(paths["test_labels"], 1)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise InputError(f"{name}: {len(x)} {split} images but {len(y)} {split} labels in {folder}")
        if y.size and y.max() >= len(class_names):
            raise InputError(f"{name}: {split} label {int(y.max())} out of range 0..{len(class_names) - 1}")
    return ImageDataset(
        name=name,
        x_train=x_train,
        y_train=y_train.astype(np.int64),
        x_test=x_test,
        y_test=y_test.astype(np.int64),
        class_names=list(class_names),
        info={"source": source, "folder": str(folder), "files": {k: p.name for k, p in paths.items()}},
    )


def load(root=None, *, download: bool = False) -> ImageDataset:
    return load_idx_dataset(
        "mnist", root, download=download, class_names=CLASS_NAMES, source="MNIST (LeCun, Cortes), IDX files"
    )


ADAPTER = Adapter(load=load, options={}, downloadable=True, summary="MNIST digits, 28×28 grey, 10 classes")
