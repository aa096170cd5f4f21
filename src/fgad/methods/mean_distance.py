"""The floor: distance to the mean normal image.

A plain detector every reported AUROC must beat: the anomaly score of an image is the Euclidean
distance of its pixels (scaled to [-1, 1]) to the mean of the normal training images. It scores
about 0.87 mean AUROC one-vs-all on MNIST.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import InputError, ModelFileError
from ..io.fileio import atomic_directory
from ..io.preprocess import as_image_array


class MeanDistance:
    name = "mean-distance"

    def __init__(self, preset: str = "quick", seed: int = 0, **overrides: Any):
        if overrides:
            from ..errors import ConfigError

            raise ConfigError(f"mean-distance takes no options, got: {', '.join(overrides)}")
        self.config = {"method": "mean-distance", "seed": seed}
        self.mean: np.ndarray | None = None

    def fit(self, images: Any, *, progress: bool = False, **_: Any) -> "MeanDistance":
        x = as_image_array(images, "training images").astype(np.float64) / 127.5 - 1.0
        self.mean = x.mean(0)
        return self

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores: distance to the mean normal image, higher = more anomalous."""
        if self.mean is None:
            raise InputError("the detector is not fitted")
        x = as_image_array(images, "images to score")
        if x.shape[1:] != self.mean.shape:
            raise InputError(f"images to score are {x.shape[1:]}, the model was fitted on {self.mean.shape}")
        d = x.astype(np.float64) / 127.5 - 1.0 - self.mean
        return np.sqrt((d.reshape(len(d), -1) ** 2).sum(1))

    def save(self, path: str | Path) -> Path:
        with atomic_directory(path) as tmp:
            save_file({"mean": torch.from_numpy(self.mean.copy())}, str(tmp / "model.safetensors"))
            (tmp / "config.json").write_text(json.dumps({"format": "fgad-mean-distance", **self.config}))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "MeanDistance":
        path = Path(path)
        try:
            meta = json.loads((path / "config.json").read_text())
            mean = load_file(str(path / "model.safetensors"))["mean"]
        except (OSError, ValueError, KeyError) as exc:
            raise ModelFileError(f"{path}: not a saved mean-distance model ({exc})") from exc
        if meta.get("format") != "fgad-mean-distance" or mean.ndim != 3:
            raise ModelFileError(f"{path}: not a saved mean-distance model")
        obj = cls(seed=int(meta.get("seed", 0)))
        obj.mean = mean.numpy().astype(np.float64)
        return obj
