"""Any dataset stored as a NumPy ``.npz`` archive (loaded with ``allow_pickle=False``).

Layout: ``root`` is the ``.npz`` file itself, or a folder holding it (``$FGAD_DATA_DIR/npz`` by
default); in a folder, option ``file`` picks ``<folder>/<file>.npz``, and without it the
folder must hold exactly one ``.npz`` file::

    <root>/
    └── mnist.npz
        ├── x_train       uint8 N×H×W, N×H×W×1 or N×H×W×3 (integer arrays within 0..255 are
        ├── y_train       converted; float images are refused)
        ├── x_test        same H, W and channels as x_train
        ├── y_test        integer class indices ≥ 0, one per image
        └── class_names   optional: str array, at least max(label)+1 names (default "0", "1"...)

Other arrays in the file are ignored (listed in ``info["extra_arrays"]``). The dataset's name is
the file's stem (``"mnist"`` for ``mnist.npz``).

Options:
    file: file name (with or without ``.npz``) inside a folder ``root``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetNotFoundError, InputError
from .base import Adapter, ImageDataset, dataset_dir

REQUIRED = ("x_train", "y_train", "x_test", "y_test")


def _images(a: np.ndarray, key: str, path: Path) -> np.ndarray:
    if a.dtype.kind == "f" or a.dtype.kind == "c":
        what = "NaN values and " if a.dtype.kind == "f" and np.isnan(a).any() else ""
        raise InputError(
            f"{path}: {key} has {what}dtype {a.dtype}; images must be uint8 0..255 "
            f"(convert with np.clip(x * 255, 0, 255).round().astype('uint8') if they are in [0, 1])"
        )
    if a.dtype.kind not in "iub":
        raise InputError(f"{path}: {key} has dtype {a.dtype}; images must be uint8 0..255")
    if a.dtype != np.uint8:
        if a.size and (a.min() < 0 or a.max() > 255):
            raise InputError(f"{path}: {key} ({a.dtype}) has values outside 0..255 ({a.min()}..{a.max()})")
        a = a.astype(np.uint8)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3)):
        raise InputError(
            f"{path}: {key} has shape {a.shape}; expected N×H×W (grey), N×H×W×1 or N×H×W×3 (channels last)"
        )
    return a


def _labels(a: np.ndarray, key: str, path: Path, n: int) -> np.ndarray:
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise InputError(f"{path}: {key} must be a 1-D integer array of class indices, got {a.dtype} {a.shape}")
    if len(a) != n:
        raise InputError(f"{path}: {key} has {len(a)} labels but there are {n} images")
    if a.size and a.min() < 0:
        raise InputError(f"{path}: {key} has negative labels ({a.min()})")
    return a.astype(np.int64)


def _find_file(root, name) -> Path:
    if name is not None and not isinstance(name, str):
        raise ConfigError(f"option file must be a file name, got {name!r}")
    base = dataset_dir("npz", root)
    if base.is_file():
        if name is not None:
            raise ConfigError(f"option file is only used when root is a folder; {base} is a file")
        return base
    if not base.is_dir():
        raise DatasetNotFoundError(f"dataset 'npz' not found: no file or folder {base}; pass the path of a .npz file")
    if name is not None:
        fname = name if name.endswith(".npz") else f"{name}.npz"
        if Path(fname).name != fname:
            raise ConfigError(f"option file must be a plain file name, got {name!r}")
        path = base / fname
        if not path.is_file():
            raise DatasetNotFoundError(f"dataset 'npz' not found: put {fname} in {base}")
        return path
    found = sorted(base.glob("*.npz"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetNotFoundError(
            f"dataset 'npz' not found: put a .npz file with {', '.join(REQUIRED)} in {base}, or pass its path as root"
        )
    raise ConfigError(
        f"{base} holds {len(found)} .npz files ({', '.join(p.name for p in found)}); choose one with option file"
    )


def load(root=None, *, download: bool = False, file: str | None = None) -> ImageDataset:
    path = _find_file(root, file)
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            missing = [k for k in REQUIRED if k not in keys]
            if missing:
                raise InputError(f"{path}: missing arrays {', '.join(missing)} (has: {', '.join(keys) or 'none'})")
            arrays = {k: data[k] for k in (*REQUIRED, "class_names") if k in keys}
    except ValueError as exc:
        if "Object arrays" in str(exc) or "allow_pickle" in str(exc):
            raise InputError(f"{path}: holds object arrays, which are never unpickled; store plain arrays") from exc
        raise InputError(f"{path}: not a readable .npz file ({exc})") from exc
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz file ({exc})") from exc

    x_train = _images(arrays["x_train"], "x_train", path)
    x_test = _images(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise InputError(f"{path}: x_train images are {x_train.shape[1:]} but x_test images are {x_test.shape[1:]}")
    if len(x_train) == 0:
        raise InputError(f"{path}: x_train is empty")
    y_train = _labels(arrays["y_train"], "y_train", path, len(x_train))
    y_test = _labels(arrays["y_test"], "y_test", path, len(x_test))
    n_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1:
            raise InputError(f"{path}: class_names must be 1-D, got shape {names.shape}")
        class_names = [str(n) for n in names.tolist()]
        if len(class_names) < n_classes:
            raise InputError(f"{path}: {len(class_names)} class_names but labels go up to {n_classes - 1}")
    else:
        class_names = [str(i) for i in range(n_classes)]
    return ImageDataset(
        name=path.stem,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        class_names=class_names,
        info={
            "source": "npz file",
            "path": str(path),
            "extra_arrays": [k for k in keys if k not in (*REQUIRED, "class_names")],
        },
    )


ADAPTER = Adapter(
    load=load,
    options={"file": None},
    downloadable=False,
    summary="arrays x_train, y_train, x_test, y_test (+ class_names) in a .npz file",
)
