"""The floor: distance to the mean normal image.

A plain detector every reported AUROC must beat: the anomaly score of an image is the Euclidean
distance of its pixels (scaled to [-1, 1]) to the mean of the normal training images. It scores
about 0.87 mean AUROC one-vs-all on MNIST. It has no options.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..core.config import Config
from ..io.modelfolder import ModelFolder
from ..io.preprocess import as_image_array
from .base import AnomalyDetector, FitContext, SavedState
from .common import check_images


@dataclass
class MeanDistanceConfig(Config):
    seed: int = 0  # nothing is random; kept so that every method has one


class MeanDistance(AnomalyDetector):
    """Distance to the mean normal image; ``score``: higher = more anomalous."""

    name = "mean-distance"
    config_class = MeanDistanceConfig
    presets = {"paper": {}, "quick": {}, "tiny": {}}
    file_format = "fgad-mean-distance"

    def _setup(self, config: MeanDistanceConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.mean: np.ndarray | None = None  # H×W×C, in [-1, 1]

    @property
    def is_fitted(self) -> bool:
        return self.mean is not None

    def config_dict(self) -> dict[str, Any]:
        return {"method": self.name, **self.config.to_dict()}

    def fit(self, images: Any, context: FitContext | None = None) -> "MeanDistance":
        """The mean of the normal images (uint8 N×H×W[×C])."""
        self.fit_context(context)
        x = as_image_array(images, "training images").astype(np.float64) / 127.5 - 1.0
        self.mean = x.mean(0)
        self.input_shape = tuple(int(s) for s in self.mean.shape)
        return self

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores: distance to the mean normal image, higher = more anomalous."""
        x = check_images(images, self.input_shape)
        d = x.astype(np.float64) / 127.5 - 1.0 - self.mean
        return np.sqrt((d.reshape(len(d), -1) ** 2).sum(1))

    def fitted_state(self) -> SavedState:
        return SavedState({"mean": torch.from_numpy(self.mean.copy())})

    def restore_state(self, folder: ModelFolder) -> None:
        mean = folder.tensors()["mean"]
        if tuple(mean.shape) != self.input_shape:
            raise ValueError(f"mean image of shape {tuple(mean.shape)}, input_shape {self.input_shape}")
        self.mean = mean.numpy().astype(np.float64)
