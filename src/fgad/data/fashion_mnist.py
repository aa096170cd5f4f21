"""Fashion-MNIST from the official IDX files (same format and file names as MNIST).

Folder layout (``<root>`` defaults to ``$FGAD_DATA_DIR/fashion-mnist``)::

    <root>/
    ├── train-images-idx3-ubyte.gz     (or without .gz)
    ├── train-labels-idx1-ubyte.gz
    ├── t10k-images-idx3-ubyte.gz
    └── t10k-labels-idx1-ubyte.gz

Images are 28×28 grey. ``download=True`` fetches the four files and checks their size and MD5
(MD5 only: no SHA-256 is published for them).
"""

from __future__ import annotations

from .base import Adapter, ImageDataset
from .mnist import load_idx_dataset

CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load(root=None, *, download: bool = False) -> ImageDataset:
    return load_idx_dataset(
        "fashion-mnist", root, download=download, class_names=CLASS_NAMES, source="Fashion-MNIST (Zalando), IDX files"
    )


ADAPTER = Adapter(load=load, options={}, downloadable=True, summary="Fashion-MNIST, 28×28 grey, 10 classes")
