"""From user arrays to network input: validation, the model's size and channels, [-1, 1] scaling,
padding to the network's side.

Input images are uint8 arrays N×H×W (grey) or N×H×W×C with C ∈ {1, 3}. Images of another size
or channels than a model's are refused (:func:`check_image_shape`) or brought to it by the
model's rule (:func:`conform_images`, :mod:`fgad.io.conform`). Pixels map to 2·x/255 − 1.
Images smaller than the network's side ``image_size`` are zero-padded (pixel value 0, i.e. −1
after scaling, as GEOM pads MNIST 28 → 32); larger ones are resized (bilinear, antialiased).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .conform import Conversions, conform_image, shape_of


def as_image_array(images: Any, what: str = "images") -> np.ndarray:
    """Validate user images and return a uint8 N×H×W×C array (C = 1 or 3)."""
    if hasattr(images, "x_train") and not isinstance(images, np.ndarray):
        images = images.x_train  # an ImageDataset: its training images
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    if isinstance(images, (list, tuple)):
        try:
            images = np.stack([np.asarray(i) for i in images]) if images else np.zeros((0, 0, 0), np.uint8)
        except ValueError as exc:
            raise InputError(f"{what}: images of different shapes cannot be stacked ({exc})") from exc
    if not isinstance(images, np.ndarray):
        raise InputError(f"{what}: expected a uint8 array N×H×W or N×H×W×C, got {type(images).__name__}")
    if images.dtype != np.uint8:
        if images.dtype.kind in "iu" and images.size and (images.min() < 0 or images.max() > 255):
            raise InputError(f"{what}: integer pixel values must lie in 0..255")
        if images.dtype.kind in "iu" or (images.dtype == bool):
            images = images.astype(np.uint8)
        elif images.dtype.kind == "f":
            bad = "NaN or infinite values" if images.size and not np.isfinite(images).all() else "float pixels"
            raise InputError(f"{what}: expected uint8 pixels 0..255, got {images.dtype} with {bad}; "
                             "scale to 0..255 and cast to uint8")
        else:
            raise InputError(f"{what}: expected uint8 pixels, got dtype {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise InputError(f"{what}: expected N×H×W or N×H×W×C images, got an array of shape {images.shape}")
    if images.shape[-1] not in (1, 3):
        raise InputError(f"{what}: expected 1 or 3 channels (last axis), got shape {images.shape}")
    if images.shape[0] == 0:
        raise InputError(f"{what}: the set is empty")
    if images.shape[1] < 4 or images.shape[2] < 4:
        raise InputError(f"{what}: images of {images.shape[1]}x{images.shape[2]} pixels are too small")
    return images


def check_image_shape(x: np.ndarray, input_shape: tuple[int, int, int], what: str = "images to score") -> np.ndarray:
    """Refuse validated N×H×W×C images whose size or channels differ from the model's (H, W, C)."""
    h, w, c = input_shape
    if x.shape[3] != c:
        kinds = {1: "grey", 3: "colour"}
        raise InputError(f"{what}: the model was trained on {kinds[c]} images ({c} channel(s)) but got "
                         f"{kinds[x.shape[3]]} images ({x.shape[3]} channel(s))")
    if x.shape[1:3] != (h, w):
        raise InputError(f"{what}: the model was trained on {w}x{h} images, got {x.shape[2]}x{x.shape[1]}")
    return x


def to_tensor(images: np.ndarray, image_size: int | None, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 N×H×W×C → float N×C×S×S in [-1, 1] on ``device``."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).permute(0, 3, 1, 2).float()
    x = x.mul_(2.0 / 255.0).sub_(1.0)
    if image_size is None:
        return x.contiguous()
    h, w = x.shape[-2:]
    if h > image_size or w > image_size:
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    elif h < image_size or w < image_size:
        top, left = (image_size - h) // 2, (image_size - w) // 2
        x = F.pad(x, (left, image_size - w - left, top, image_size - h - top), value=-1.0)
    return x.contiguous()


def image_list(images: Any, what: str = "images") -> np.ndarray | list[np.ndarray]:
    """Validated images: a uint8 N×H×W×C array (:func:`as_image_array`), or, for a list of
    images of different sizes or channels, a list of uint8 H×W×C arrays, each validated."""
    if isinstance(images, (list, tuple)) and len({tuple(np.shape(i)) for i in images}) > 1:
        return [as_image_array(np.asarray(img)[None], f"{what} (image {k})")[0] for k, img in enumerate(images)]
    return as_image_array(images, what)


def conform_images(images: np.ndarray | Sequence[np.ndarray], shape: Sequence[int], resize: str = "stretch",
                   counts: Conversions | None = None) -> np.ndarray:
    """Validated images (:func:`image_list`) as a model's (H, W, C): uint8 N×H×W×C.

    The rule of :mod:`fgad.io.conform`: channels first (luma, or grey repeated), then the size
    by ``resize`` (``"crop"``, ``"pad"`` or ``"stretch"``; ``"stretch"`` is the rule of models
    saved before fgad had the others). ``counts``: conversions are added to it.
    """
    target = tuple(int(v) for v in shape)
    if isinstance(images, np.ndarray) and images.shape[1:] == target:
        return images
    out = np.empty((len(images), *target), np.uint8)
    for i, img in enumerate(images):
        if counts is not None:
            counts.note(shape_of(img))
        out[i] = conform_image(img, target, resize)
    return out
