"""Helpers the methods share: image checks, resizing, timing."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, InputError
from ..io.preprocess import as_image_array, check_image_shape

__all__ = ["check_images", "check_geom72_options", "resize_to", "Timer"]


def check_images(images: Any, input_shape: tuple[int, int, int] | None, what: str = "images to score") -> np.ndarray:
    """Validated uint8 N×H×W×C images of the shape the model was fitted on (``input_shape``;
    None: not fitted, an InputError)."""
    if input_shape is None:
        raise InputError("the detector is not fitted: call fit() or load() first")
    return check_image_shape(as_image_array(images, what), input_shape, what)


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of N×C×H×W to size×size; a no-op when already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Timer:
    """``with Timer() as t: ...``; then ``t.seconds``, rounded to milliseconds."""

    def __enter__(self) -> "Timer":
        self.seconds = 0.0
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = round(time.perf_counter() - self.t0, 3)


def check_geom72_options(cfg: Any) -> None:
    """The options every GEOM-72 method shares (DeepGEO, GOAD): a training length, a shift below
    half the side, a WideResNet depth of 6n+4."""
    if cfg.steps is None and cfg.epochs is None:
        raise ConfigError("set a training length: 'epochs' or 'steps'")
    if not 0.0 < cfg.shift_fraction < 0.5:
        raise ConfigError(f"option 'shift_fraction' must be in (0, 0.5), got {cfg.shift_fraction}")
    if cfg.depth < 10 or (cfg.depth - 4) % 6:
        raise ConfigError(f"option 'depth' must be 6n+4 with n >= 1 (10, 16, 22...), got {cfg.depth}")
