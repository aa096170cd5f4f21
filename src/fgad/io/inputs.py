"""Images for the command line: an ``.npz`` archive or a folder of image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .imageio import list_images, read_images


def load_images(path: str | Path, *, key: str | None = None, label: int | None = None,
                label_key: str | None = None, size: tuple[int, int] | None = None,
                skip_unreadable: bool = False) -> tuple[np.ndarray, list[str], list[Path]]:
    """Images and their ids from an ``.npz`` file or a folder.

    For ``.npz``: array ``key`` (default ``x_train``, else the only array); with ``label``,
    only the images whose ``label_key`` entry (default ``y_`` + the key's suffix) equals it.
    For a folder: every image file under it, ids = paths relative to it.
    Returns (images, ids, skipped files).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise InputError(f"{path}: no image files in this folder")
        images, kept, skipped = read_images(files, size=size, skip_unreadable=skip_unreadable,
                                            on_mismatch="resize" if size else "error")
        return images, [str(p.relative_to(path)) for p in kept], skipped
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: expected an .npz file or a folder of images")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable .npz file ({exc})") from exc
    if key is None:
        key = "x_train" if "x_train" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise InputError(f"{path}: several arrays ({', '.join(arrays)}); choose one with --key")
    if key not in arrays:
        raise InputError(f"{path}: no array {key!r} (has: {', '.join(arrays)})")
    x = arrays[key]
    ids = [str(i) for i in range(len(x))]
    if label is not None:
        lk = label_key or ("y" + key[1:] if key.startswith("x") else None)
        if lk not in arrays:
            raise InputError(f"{path}: no label array {lk!r} to select class {label}")
        y = arrays[lk]
        if len(y) != len(x):
            raise InputError(f"{path}: {key} has {len(x)} images but {lk} has {len(y)} labels")
        keep = np.flatnonzero(y == label)
        if keep.size == 0:
            raise InputError(f"{path}: no image of class {label} in {lk}")
        x, ids = x[keep], [str(i) for i in keep]
    return x, ids, []
