"""Datasets: adapters that all yield uint8 images and int64 labels with train/test splits.

>>> from fgad.data import load_dataset, one_vs_all
>>> ds = load_dataset("fonts")                      # offline: fonts bundled with matplotlib
>>> x_train, x_test, y_anomaly = one_vs_all(ds, "DejaVuSans")

Every dataset is one module here and one entry in :data:`fgad.data.registry.DATASETS`. This
package imports nothing from fgad but :mod:`fgad.errors`, :mod:`fgad.io.imageio` and
:mod:`fgad.io.fileio`, and never imports torch.
"""

from .antispoof import leave_one_attack_out
from .base import ImageDataset, default_data_root, one_vs_all
from .registry import DATASETS, dataset_options, list_datasets, load_dataset

__all__ = [
    "DATASETS",
    "ImageDataset",
    "dataset_options",
    "default_data_root",
    "leave_one_attack_out",
    "list_datasets",
    "load_dataset",
    "one_vs_all",
]
