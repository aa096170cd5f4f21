"""The dataset registry: one literal dict, name -> adapter, and the one entry point to load.

Adding a dataset is one new module with an ``ADAPTER`` and one line in :data:`DATASETS`.
"""

from __future__ import annotations

import os

from ..errors import ConfigError
from . import antispoof, cifar10, cifar100, cub200, fashion_mnist, folder, fonts, mnist, npz
from .base import Adapter, ImageDataset

DATASETS: dict[str, Adapter] = {
    "mnist": mnist.ADAPTER,
    "fashion-mnist": fashion_mnist.ADAPTER,
    "cifar10": cifar10.ADAPTER,
    "cifar100": cifar100.ADAPTER,
    "cub200": cub200.ADAPTER,
    "fonts": fonts.ADAPTER,
    "antispoof": antispoof.ADAPTER,
    "folder": folder.ADAPTER,
    "npz": npz.ADAPTER,
}


def list_datasets() -> list[str]:
    """Names :func:`load_dataset` accepts, sorted."""
    return sorted(DATASETS)


def get_adapter(name: str) -> Adapter:
    if not isinstance(name, str) or name not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}")
    return DATASETS[name]


def dataset_options(name: str) -> dict:
    """The options dataset ``name`` takes, with their defaults."""
    return dict(get_adapter(name).options)


def load_dataset(
    name: str, root: str | os.PathLike | None = None, *, download: bool = False, **options
) -> ImageDataset:
    """Load a registered dataset.

    Args:
        name: one of :func:`list_datasets`.
        root: the dataset's folder (or file, for ``npz``); a parent folder holding ``<name>/``
            also works. Default: ``default_data_root() / name`` (``fonts``: matplotlib's fonts).
        download: fetch the official files first if they are missing (only where the licence
            allows: mnist, fashion-mnist, cifar10, cifar100, cub200).
        **options: adapter options (see each adapter module); unknown ones are an error, and
            ``None`` means the option's default.

    Raises:
        ConfigError: unknown dataset or option, bad option value, download not allowed.
        DatasetNotFoundError: files missing; the message says which files to put where.
        InputError: files present but corrupt or inconsistent.
    """
    adapter = get_adapter(name)
    unknown = [k for k in options if k not in adapter.options]
    if unknown:
        known = ", ".join(adapter.options) if adapter.options else "none"
        raise ConfigError(
            f"unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} for dataset "
            f"'{name}'; its options: {known}"
        )
    if download and not adapter.downloadable:
        allowed = ", ".join(n for n in list_datasets() if DATASETS[n].downloadable)
        raise ConfigError(
            f"dataset '{name}' cannot be downloaded (its files are not redistributable or are local); "
            f"download works for: {allowed}"
        )
    # An option given as None means "the default" (lets a CLI pass unset flags through).
    resolved = {**adapter.options, **{k: v for k, v in options.items() if v is not None}}
    ds = adapter.load(root, download=bool(download), **resolved)
    ds.info.setdefault("dataset", name)
    ds.info.setdefault("options", _jsonable(resolved))
    return ds


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return str(obj)
