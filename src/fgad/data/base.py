"""The dataset type every adapter returns, the one-vs-all split, and helpers shared by adapters.

Every adapter yields the same thing: uint8 images (N×H×W grey or N×H×W×3 colour) with int64
class indices, for a train and a test split. The one-vs-all protocol then takes one class as
normal: train on its training images, test on the whole test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ConfigError, DatasetNotFoundError, ImageReadError, InputError
from ..io.imageio import map_files, read_images


@dataclass
class ImageDataset:
    """Images and labels of one dataset, split into train and test.

    Attributes:
        name: registry name of the dataset (``"cifar100"``, ``"fonts"``...).
        x_train, x_test: uint8 images, N×H×W (grey) or N×H×W×3 (RGB).
        y_train, y_test: int64 class indices into ``class_names``.
        class_names: one name per class.
        groups_test: optional str array, one group per test image (e.g. the attack type).
        info: JSON-serialisable record of where the data came from and the options used.
        ids_test: optional id per test image (relative file path, or ``"<class>/<char>"``...).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    groups_test: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    ids_test: list[str] | None = None

    def __post_init__(self) -> None:
        self.class_names = [str(c) for c in self.class_names]
        for split in ("train", "test"):
            x = getattr(self, f"x_{split}")
            y = getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8:
                raise InputError(f"{self.name}: x_{split} must be a uint8 array, got {getattr(x, 'dtype', type(x))}")
            if not (x.ndim == 3 or (x.ndim == 4 and x.shape[-1] == 3)):
                raise InputError(f"{self.name}: x_{split} must be N×H×W or N×H×W×3, got shape {x.shape}")
            y = np.asarray(y)
            if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
                raise InputError(f"{self.name}: y_{split} must be a 1-D integer array, got {y.dtype} {y.shape}")
            y = y.astype(np.int64, copy=False)
            if len(y) != len(x):
                raise InputError(f"{self.name}: {len(x)} images in x_{split} but {len(y)} labels in y_{split}")
            if y.size and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise InputError(
                    f"{self.name}: y_{split} has labels outside 0..{len(self.class_names) - 1} "
                    f"({len(self.class_names)} class names)"
                )
            setattr(self, f"y_{split}", y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InputError(
                f"{self.name}: train images are {self.x_train.shape[1:]} but test images are {self.x_test.shape[1:]}"
            )
        if self.groups_test is not None:
            self.groups_test = np.asarray(self.groups_test, dtype=str)
            if self.groups_test.shape != (len(self.x_test),):
                raise InputError(f"{self.name}: groups_test must have one entry per test image")
        if self.ids_test is not None:
            self.ids_test = [str(i) for i in self.ids_test]
            if len(self.ids_test) != len(self.x_test):
                raise InputError(f"{self.name}: ids_test must have one entry per test image")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, ...]:
        """H×W or H×W×3."""
        return tuple(self.x_train.shape[1:])

    def class_index(self, cls: int | str) -> int:
        """Index of a class given by index or name; unknown -> ConfigError."""
        if isinstance(cls, (bool, np.bool_)):
            raise ConfigError(f"{self.name}: class must be an index or a name, got {cls!r}")
        if isinstance(cls, (int, np.integer)):
            if 0 <= int(cls) < len(self.class_names):
                return int(cls)
            raise ConfigError(f"{self.name}: class index {cls} out of range 0..{len(self.class_names) - 1}")
        if isinstance(cls, str):
            if cls in self.class_names:
                return self.class_names.index(cls)
            if cls.strip().isdigit() and int(cls) < len(self.class_names):
                return int(cls)
            raise ConfigError(f"{self.name}: unknown class {cls!r}; known: {short_list(self.class_names)}")
        raise ConfigError(f"{self.name}: class must be an index or a name, got {cls!r}")

    def __repr__(self) -> str:
        return (
            f"ImageDataset(name={self.name!r}, train={self.x_train.shape}, test={self.x_test.shape}, "
            f"classes={len(self.class_names)})"
        )


def one_vs_all(ds: ImageDataset, normal_class: int | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The one-vs-all protocol for one normal class.

    Args:
        ds: a dataset.
        normal_class: the normal class, as an index or a class name (a numeric string that is not
            a class name is read as an index).

    Returns:
        ``(x_train, x_test, y_test_anomaly)``: the training images of the normal class only, the
        whole test split, and int64 labels with 1 = anomaly (any other class), 0 = normal.
    """
    k = ds.class_index(normal_class)
    x_train = ds.x_train[ds.y_train == k]
    if len(x_train) == 0:
        raise InputError(f"{ds.name}: class {ds.class_names[k]!r} has no training images")
    y = (ds.y_test != k).astype(np.int64)
    return x_train, ds.x_test, y


def capped_test_indices(y_test: np.ndarray, max_images: int | None,
                        rng: np.random.Generator | int = 0) -> np.ndarray:
    """Which test images a capped one-vs-all test keeps: all of them when there are at most
    ``max_images`` (or no cap); else every normal image (label 0) and a random share of the
    anomalies (label 1), ``max_images`` in all but never fewer than half of it as anomalies.
    Sorted indices; ``rng`` is a NumPy generator or a seed (fixed: both runs of a comparison
    keep the same images)."""
    n = len(y_test)
    if max_images is None or n <= max_images:
        return np.arange(n)
    if max_images < 2:
        raise ConfigError(f"the test cap must be >= 2 images, got {max_images}")
    rng = np.random.default_rng(rng)
    normal, anomalous = np.flatnonzero(y_test == 0), np.flatnonzero(y_test == 1)
    n_anomalous = max(max_images - len(normal), min(len(anomalous), max_images // 2))
    return np.sort(np.concatenate([normal, rng.choice(anomalous, n_anomalous, replace=False)]))


def default_data_root() -> Path:
    """Where datasets live by default: ``$FGAD_DATA_DIR``, else ``~/.cache/fgad/data``.

    Each dataset looks in ``<root>/<name>/``.
    """
    env = os.environ.get("FGAD_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "fgad" / "data"


# ---------------------------------------------------------------------------------------------
# helpers shared by adapters


def short_list(items: Sequence[str], limit: int = 20) -> str:
    items = [str(i) for i in items]
    if len(items) <= limit:
        return ", ".join(items)
    return ", ".join(items[:limit]) + f", ... ({len(items)} in all)"


def dataset_dir(name: str, root: str | os.PathLike | None) -> Path:
    """The folder a dataset is read from: ``root`` if given, else ``default_data_root()/name``."""
    return Path(root).expanduser() if root is not None else default_data_root() / name


def find_dir(folder: Path, name: str, has_files) -> Path | None:
    """``folder`` or ``folder/<name>``, whichever ``has_files`` accepts first; else None.

    Lets a user point ``root`` at the dataset folder itself or at a parent holding ``<name>/``.
    """
    for cand in (folder, folder / name):
        if cand.is_dir() and has_files(cand):
            return cand
    return None


def not_found(
    name: str, folder: Path, files: Iterable[str], *, download: bool = False, extra: str = ""
) -> DatasetNotFoundError:
    """The error for a dataset whose files are missing: which files go in which folder (one line)."""
    msg = f"dataset '{name}' not found: put {', '.join(files)} in {folder}"
    if extra:
        msg += f" {extra}"
    if download:
        msg += f"; or pass download=True (command line: --download) to fetch them into {folder}"
    return DatasetNotFoundError(msg)


def safe_relpath(rel: str, where: str) -> PurePosixPath:
    """A relative path from an index file, refused if absolute or climbing out with ``..``."""
    rel = rel.strip()
    if not rel:
        raise InputError(f"{where}: empty path")
    p = PurePosixPath(rel.replace("\\", "/"))
    if p.is_absolute() or PureWindowsPath(rel).drive or PureWindowsPath(rel).is_absolute() or ".." in p.parts:
        raise InputError(f"{where}: path {rel!r} escapes the dataset folder (absolute or '..' paths are refused)")
    return p


# ---- option validation ----------------------------------------------------------------------


def opt_size(
    value: Any, name: str = "size", allow_none: bool = False, allow_pair: bool = False
) -> tuple[int, int] | None:
    """An image size: positive int (square) or, where allowed, an (H, W) pair."""
    if value is None:
        if allow_none:
            return None
        raise ConfigError(f"option {name} must be a positive integer, got None")
    if isinstance(value, (list, tuple)) and allow_pair:
        if len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value
        ):
            return int(value[0]), int(value[1])
        raise ConfigError(f"option {name} must be a positive integer or (height, width), got {value!r}")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0:
        return int(value), int(value)
    kind = "a positive integer or (height, width)" if allow_pair else "a positive integer"
    raise ConfigError(f"option {name} must be {kind}, got {value!r}")


def opt_fraction(value: Any, name: str = "test_fraction") -> float:
    """A fraction strictly between 0 and 1."""
    try:
        if isinstance(value, bool):
            raise TypeError
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"option {name} must be a number between 0 and 1, got {value!r}") from None
    if not 0.0 < f < 1.0:
        raise ConfigError(f"option {name} must be strictly between 0 and 1, got {value!r}")
    return f


def opt_int(value: Any, name: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    raise ConfigError(f"option {name} must be an integer, got {value!r}")


def opt_bool(value: Any, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ConfigError(f"option {name} must be true or false, got {value!r}")


def opt_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if isinstance(value, str) and value in choices:
        return value
    raise ConfigError(f"option {name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


# ---- splits and image reading ---------------------------------------------------------------


def split_indices(n: int, test_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random (train, test) index arrays, each sorted; ``round(n * test_fraction)`` go to test.

    With two or more items each side gets at least one; a single item goes to train.
    """
    n_test = int(round(n * test_fraction))
    if n >= 2:
        n_test = min(max(n_test, 1), n - 1)
    else:
        n_test = 0
    perm = rng.permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def read_files(
    paths: Sequence[Path],
    *,
    size: tuple[int, int] | None,
    mode: str | None = None,
    skip_unreadable: bool = False,
    desc: str = "reading images",
    workers: int | None = None,
) -> tuple[np.ndarray, list[int], list[Path]]:
    """Decode image files with :mod:`fgad.io.imageio`; returns (images, indices kept, paths skipped).

    Without ``size`` all files are read in one :func:`fgad.io.imageio.read_images` call, so mixed
    sizes are an error naming the file. With ``size`` each file is decoded and resized at once
    (memory stays small for big photos), with a progress bar; grey files become RGB when any
    file is colour, unless ``mode`` forces ``"L"`` or ``"RGB"``. ``workers``: decoding threads
    (:func:`fgad.io.imageio.map_files`; default: by the number of files and CPUs).
    """
    paths = list(paths)
    if not paths:
        raise InputError("no image files to read")
    if size is None:
        x, kept, skipped = read_images(paths, mode=mode, skip_unreadable=skip_unreadable, workers=workers)
        kept_set = {str(p) for p in kept}
        idx = [i for i, p in enumerate(paths) if str(p) in kept_set]
        return x, idx, skipped
    from tqdm.auto import tqdm

    def one(p):
        try:
            return read_images([p], size=size, mode=mode, workers=1)[0][0]
        except ImageReadError:
            if not skip_unreadable:
                raise
            return None

    out: list[np.ndarray] = []
    idx: list[int] = []
    skipped: list[Path] = []
    decoded = map_files(one, paths, workers)  # a thread pool for many files
    for i, (p, img) in enumerate(tqdm(zip(paths, decoded), total=len(paths), desc=desc, unit="img",
                                      disable=None, leave=False)):
        if img is None:
            skipped.append(Path(p))
            continue
        out.append(img)
        idx.append(i)
    if not out:
        raise InputError(f"no readable images ({len(skipped)} unreadable skipped)")
    if any(o.ndim == 3 for o in out):
        out = [np.repeat(o[..., None], 3, axis=-1) if o.ndim == 2 else o for o in out]
    return np.stack(out), idx, skipped


# ---- adapters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Adapter:
    """One registry entry.

    Attributes:
        load: ``load(root, *, download, **options) -> ImageDataset``; ``root`` is the value the
            user gave (``None`` for the default), options arrive complete (defaults filled in).
        options: every option the adapter takes, with its default.
        downloadable: whether ``download=True`` is allowed (licence permits redistribution).
        summary: one line for listings.
    """

    load: Any
    options: dict = field(default_factory=dict)
    downloadable: bool = False
    summary: str = ""
