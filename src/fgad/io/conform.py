"""The one rule by which an image of any size and channels becomes a model's input.

A model takes images of one size H×W and one channel mode (grey, C = 1, or colour, C = 3):
its ``input_shape``, chosen when it is trained. Every other image is brought to it by the same
steps, in this order, wherever it comes from (a folder, an ``.npz``, an array given to the
library with ``conform=True``, the scikit-learn wrapper):

1. channels: colour → grey is ITU-R 601-2 luma (0.299 R + 0.587 G + 0.114 B, rounded), the
   formula of Pillow's ``convert("L")``; grey → colour repeats the grey value;
2. size, by the model's resize rule (``DetectorConfig.resize``), with Pillow's bilinear filter
   (which antialiases when it shrinks); new sizes are rounded half up:

   - ``crop`` (default): scale so that the image covers H×W (for a square model: its shorter
     side becomes the side), then keep the centre (offsets rounded down);
   - ``pad``: scale so that the image fits inside H×W (its longer side becomes the side), then
     pad around the centre with black (0);
   - ``stretch``: resize both sides to H×W, ignoring the aspect ratio. Models saved before
     fgad had a rule load with this one: it is what ``conform=True`` did then.

   An image that already has H×W is left as it is, whatever the rule.

When a model is trained, its size and channels default to those of the training images
(:func:`choose_input_shape`): their one size when they all share it, else
``DEFAULT_SIDE`` × ``DEFAULT_SIDE``; colour when any of them is colour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError

RESIZE_RULES = ("crop", "pad", "stretch")
DEFAULT_SIDE = 64  # the side of a model trained on images of several sizes, unless --size says otherwise
CHANNELS = {"grey": 1, "colour": 3}
KINDS = {1: "grey", 3: "colour"}


@dataclass(frozen=True)
class InputRule:
    """How images are brought to a model's input.

    ``size`` (H, W) and ``channels`` (1 or 3): the model's; ``None`` when a model is being
    trained and they are still to be chosen from the images (:func:`choose_input_shape`).
    ``resize``: one of :data:`RESIZE_RULES`. ``strict``: refuse an image of another size
    instead of resizing it (channels are still converted).
    """

    size: tuple[int, int] | None = None
    channels: int | None = None
    resize: str = "crop"
    strict: bool = False

    def __post_init__(self) -> None:
        check_resize(self.resize)
        if self.channels not in (None, 1, 3):
            raise InputError(f"channels must be 1 (grey) or 3 (colour), got {self.channels!r}")
        if self.size is not None and min(self.size) < 4:
            raise InputError(f"the image size must be at least 4x4 pixels, got {self.size[1]}x{self.size[0]}")

    @classmethod
    def of_model(cls, input_shape: Sequence[int], resize: str, strict: bool = False) -> "InputRule":
        """The rule of a trained model: its ``input_shape`` (H, W, C) and its resize rule."""
        h, w, c = (int(v) for v in input_shape)
        return cls((h, w), c, resize, strict)


def check_resize(resize: str) -> str:
    if resize not in RESIZE_RULES:
        raise InputError(f"unknown resize rule {resize!r}; known: {', '.join(RESIZE_RULES)}")
    return resize


def choose_input_shape(shapes: Sequence[Sequence[int]], rule: InputRule) -> tuple[int, int, int]:
    """(H, W, C) of a model trained on images of ``shapes`` (H, W, C each) under ``rule``: the
    rule's size and channels where it sets them; else the images' one size when they all share it
    (else ``DEFAULT_SIDE`` square), and colour when any image is colour."""
    if not shapes:
        raise InputError("no images")
    if rule.size is not None:
        h, w = rule.size
    elif len({tuple(s[:2]) for s in shapes}) == 1:
        h, w = shapes[0][:2]
    else:
        h = w = DEFAULT_SIDE
    c = rule.channels or (3 if any(s[2] == 3 for s in shapes) else 1)
    return int(h), int(w), int(c)


def shape_of(img: np.ndarray) -> tuple[int, int, int]:
    """(H, W, C) of a uint8 H×W or H×W×C image."""
    return int(img.shape[0]), int(img.shape[1]), 1 if img.ndim == 2 else int(img.shape[2])


def to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """A uint8 H×W or H×W×C image as H×W×``channels`` (luma for grey, repetition for colour)."""
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == channels:
        return img
    if channels == 1:
        # ITU-R 601-2 luma, the formula of Pillow's convert("L").
        luma = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114 + 0.5
        return luma.astype(np.uint8)[..., None]
    return np.repeat(img, 3, axis=2)


def _round_div(a: int, b: int) -> int:
    """a / b rounded half up, in integers (no floating-point ties)."""
    return (2 * a + b) // (2 * b)


def bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """A uint8 H×W×C image resized to h×w by Pillow's bilinear filter."""
    from PIL import Image

    if img.shape[:2] == (h, w):
        return img
    out = np.asarray(Image.fromarray(img[..., 0] if img.shape[2] == 1 else img).resize((w, h), Image.BILINEAR))
    return out.reshape(h, w, img.shape[2])


def fit_size(img: np.ndarray, size: tuple[int, int], resize: str = "crop") -> np.ndarray:
    """A uint8 H×W×C image brought to ``size`` (h, w) by the resize rule (module docstring)."""
    h, w = size
    H, W = img.shape[:2]
    if (H, W) == (h, w):
        return img
    if check_resize(resize) == "stretch":
        return bilinear(img, h, w)
    wider = W * h >= H * w  # the image is at least as wide as the target, in aspect
    if (resize == "crop") == wider:  # scale to the target's height
        sh, sw = h, max(_round_div(W * h, H), 1)
    else:  # scale to the target's width
        sh, sw = max(_round_div(H * w, W), 1), w
    scaled = bilinear(img, sh, sw)
    if resize == "crop":
        top, left = (sh - h) // 2, (sw - w) // 2
        return scaled[top : top + h, left : left + w]
    out = np.zeros((h, w, img.shape[2]), np.uint8)
    top, left = (h - sh) // 2, (w - sw) // 2
    out[top : top + sh, left : left + sw] = scaled
    return out


def conform_image(img: np.ndarray, shape: Sequence[int], resize: str = "crop") -> np.ndarray:
    """A uint8 H×W or H×W×C image as the model's (h, w, c): channels first, then the size rule."""
    h, w, c = (int(v) for v in shape)
    return np.ascontiguousarray(fit_size(to_channels(img, c), (h, w), resize))


@dataclass
class Conversions:
    """How many images a rule changed, for one line of output."""

    shape: tuple[int, int, int]
    resize: str
    to_grey: int = 0
    to_colour: int = 0
    resized: int = 0

    def note(self, shape_in: Sequence[int]) -> None:
        """Count an image of ``shape_in`` (H, W, C) brought to :attr:`shape`."""
        if shape_in[2] != self.shape[2]:
            if self.shape[2] == 1:
                self.to_grey += 1
            else:
                self.to_colour += 1
        if tuple(shape_in[:2]) != tuple(self.shape[:2]):
            self.resized += 1

    def __bool__(self) -> bool:
        return bool(self.to_grey or self.to_colour or self.resized)

    def __str__(self) -> str:
        parts = []
        if self.to_grey:
            parts.append(f"converted {self.to_grey} colour image(s) to grey")
        if self.to_colour:
            parts.append(f"converted {self.to_colour} grey image(s) to colour")
        if self.resized:
            h, w, _ = self.shape
            parts.append(f"resized {self.resized} image(s) to {w}x{h} (rule: {self.resize})")
        return ", ".join(parts) if parts else "no image converted"
