"""A generic folder of images, in one of two layouts (detected from the folder names).

Normal / anomalous (the practitioner's layout)::

    <root>/
    ├── normal/**/*.png|jpg|...         class 0 "normal"; test_fraction of them held out to test
    └── anomalous/**/*                  class 1 "anomalous"; optional, all go to test

One subfolder per class (one-vs-all benchmarks on your own classes)::

    <root>/
    ├── cats/**/*.jpg                   each class split by test_fraction, seeded per class
    ├── dogs/...
    └── ...

Classes are sorted by folder name (hidden folders ignored). ``ids_test`` holds each test
image's path relative to ``<root>``.

Options:
    size: resize every image to ``size``×``size`` (or ``(height, width)``); without it all images
        must share one size, and the first one that differs is an error naming the file.
    test_fraction: fraction held out for test (default 0.3).
    split_seed: seed of the split (default 0).
    skip_unreadable: skip files that cannot be decoded instead of failing; how many were
        skipped, and which, goes in ``info`` (default False).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetNotFoundError, InputError
from ..io.imageio import list_images
from .base import (
    Adapter,
    ImageDataset,
    dataset_dir,
    opt_bool,
    opt_fraction,
    opt_int,
    opt_size,
    read_files,
    split_indices,
)


def load(
    root=None,
    *,
    download: bool = False,
    size=None,
    test_fraction: float = 0.3,
    split_seed: int = 0,
    skip_unreadable: bool = False,
) -> ImageDataset:
    hw = opt_size(size, allow_none=True, allow_pair=True)
    test_fraction = opt_fraction(test_fraction)
    split_seed = opt_int(split_seed, "split_seed")
    skip_unreadable = opt_bool(skip_unreadable, "skip_unreadable")
    folder = dataset_dir("folder", root)
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"dataset 'folder' not found: {folder} is not a folder; put normal images in {folder / 'normal'} "
            f"(and optionally anomalous ones in {folder / 'anomalous'}), or one subfolder per class in {folder}"
        )
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    items: list[tuple[Path, int, bool]] = []  # (path, label, is_test)
    if (folder / "normal").is_dir():
        layout = "normal/anomalous"
        class_names = ["normal", "anomalous"]
        normal = list_images(folder / "normal")
        if not normal:
            raise DatasetNotFoundError(f"dataset 'folder': no images in {folder / 'normal'}")
        _, te = split_indices(len(normal), test_fraction, np.random.default_rng([split_seed, 0]))
        te_set = set(te.tolist())
        items += [(p, 0, i in te_set) for i, p in enumerate(normal)]
        if (folder / "anomalous").is_dir():
            items += [(p, 1, True) for p in list_images(folder / "anomalous")]
        ignored = [p.name for p in subdirs if p.name not in ("normal", "anomalous")]
    else:
        layout = "class folders"
        per_class = [(d.name, list_images(d)) for d in subdirs]
        per_class = [(n, f) for n, f in per_class if f]
        if len(per_class) < 2:
            raise DatasetNotFoundError(
                f"dataset 'folder': found {len(per_class)} class folder(s) with images in {folder}; put normal "
                f"images in {folder / 'normal'} (and optionally anomalous ones in {folder / 'anomalous'}), or "
                f"at least two class subfolders in {folder}"
            )
        class_names = [n for n, _ in per_class]
        for k, (_, files) in enumerate(per_class):
            _, te = split_indices(len(files), test_fraction, np.random.default_rng([split_seed, k]))
            te_set = set(te.tolist())
            items += [(p, k, i in te_set) for i, p in enumerate(files)]
        ignored = [p.name for p in subdirs if p.name not in class_names]

    x, kept, skipped = read_files([p for p, _, _ in items], size=hw, skip_unreadable=skip_unreadable, desc="folder")
    items = [items[i] for i in kept]
    y = np.array([c for _, c, _ in items], dtype=np.int64)
    is_test = np.array([t for _, _, t in items], dtype=bool)
    if not (~is_test).any():
        raise InputError(f"{folder}: no readable training images")
    return ImageDataset(
        name="folder",
        x_train=x[~is_test],
        y_train=y[~is_test],
        x_test=x[is_test],
        y_test=y[is_test],
        class_names=class_names,
        ids_test=[p.relative_to(folder).as_posix() for p, _, t in items if t],
        info={
            "source": "image folder",
            "folder": str(folder),
            "layout": layout,
            "size": list(hw) if hw else None,
            "test_fraction": test_fraction,
            "split_seed": split_seed,
            "skipped_unreadable": len(skipped),
            "skipped_files": [Path(p).relative_to(folder).as_posix() for p in skipped],
            **({"ignored_folders": ignored} if ignored else {}),
        },
    )


ADAPTER = Adapter(
    load=load,
    options={"size": None, "test_fraction": 0.3, "split_seed": 0, "skip_unreadable": False},
    downloadable=False,
    summary="your own images: normal/ (+ anomalous/) or one subfolder per class",
)
