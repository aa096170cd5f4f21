"""Geometric pretext tasks: shifts by a quarter of the side and quarter-turn rotations.

- ``geometric`` (MHRot, Hendrycks et al. 2019): 3 vertical × 3 horizontal shifts, then 4
  rotations = 36 views, three softmax heads (vertical 3 | horizontal 3 | rotation 4).
- ``rotation``: the 4 rotations alone, one head of 4.
- ``translation``: the 9 shifts alone, heads vertical 3 | horizontal 3.
- ``geom72`` (GEOM / DeepGEO, Golan & El-Yaniv 2018): horizontal flip × 3 vertical × 3
  horizontal shifts × 4 rotations = 72 views, one 72-way head.

Shift classes are 0 = none, 1 = −t, 2 = +t, where +t moves the content down (vertical) or right
(horizontal) by t = side/4 pixels; uncovered pixels are filled by reflection without repeating the
edge pixel (PyTorch ``reflect`` = OpenCV ``BORDER_REFLECT_101``, as MHRot's code). The shift is
applied first, then ``torch.rot90`` k times (counter-clockwise, as ``np.rot90``).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Task

SHIFT_SIGNS = (0, -1, 1)  # class index -> direction of the shift


def shift_amount(side: int, fraction: float) -> int:
    return max(1, int(round(side * fraction)))


def shifted_grid(x: torch.Tensor, fraction: float = 0.25) -> torch.Tensor:
    """B×C×H×W → B×3×3×C×H×W: entry [:, i, j] is shifted vertically by class i, horizontally by j."""
    h, w = x.shape[-2:]
    tv, th = shift_amount(h, fraction), shift_amount(w, fraction)
    if tv >= h or th >= w:
        raise InputError(f"images of {h}x{w} are too small to shift by {tv}x{th} pixels")
    padded = F.pad(x, (th, th, tv, tv), mode="reflect")
    # Content moved by +s means out[i] = in[i - s] = padded[i + t - s]: the crop starts at t - s.
    rows = [padded[..., tv - s * tv : tv - s * tv + h, :] for s in SHIFT_SIGNS]
    grid = [torch.stack([r[..., th - s * th : th - s * th + w] for s in SHIFT_SIGNS], 1) for r in rows]
    return torch.stack(grid, 1)


def all_rotations(x: torch.Tensor) -> torch.Tensor:
    """…×C×H×W → …×4×C×H×W: the 4 quarter turns stacked on a new axis before the channel axis."""
    if x.shape[-1] != x.shape[-2]:
        raise InputError(f"rotations need square images, got {x.shape[-2]}x{x.shape[-1]}")
    return torch.stack([torch.rot90(x, k, dims=(-2, -1)) for k in range(4)], dim=-4)


def _label_table(*sizes: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(*[range(s) for s in sizes])), dtype=torch.long)


class GeometricTask(Task):
    """MHRot's task: 36 views (vertical shift, horizontal shift, rotation), heads 3|3|4."""

    name = "geometric"
    head_sizes = (3, 3, 4)

    def __init__(self, shift_fraction: float = 0.25):
        self.shift_fraction = float(shift_fraction)

    def labels(self) -> torch.Tensor:
        return _label_table(3, 3, 4)  # view v = (vertical * 3 + horizontal) * 4 + rotation

    def views(self, x, *, train=False, generator=None):
        b, c, h, w = x.shape
        shifted = shifted_grid(x, self.shift_fraction)  # B×3×3×C×H×W
        return all_rotations(shifted).reshape(b, 36, c, h, w)  # B×3×3×4×C×H×W

    def state(self):
        return {"shift_fraction": self.shift_fraction}


class RotationTask(Task):
    """The 4 quarter turns alone (RotNet); one head of 4."""

    name = "rotation"
    head_sizes = (4,)

    def labels(self):
        return _label_table(4)

    def views(self, x, *, train=False, generator=None):
        return all_rotations(x)


class TranslationTask(Task):
    """The 9 shifts alone; heads vertical 3 | horizontal 3."""

    name = "translation"
    head_sizes = (3, 3)

    def __init__(self, shift_fraction: float = 0.25):
        self.shift_fraction = float(shift_fraction)

    def labels(self):
        return _label_table(3, 3)

    def views(self, x, *, train=False, generator=None):
        b, c, h, w = x.shape
        return shifted_grid(x, self.shift_fraction).reshape(b, 9, c, h, w)

    def state(self):
        return {"shift_fraction": self.shift_fraction}


class Geom72Task(Task):
    """GEOM's 72 transformations: flip × vertical shift × horizontal shift × rotation, one head.

    Order as GEOM's ``itertools.product`` (its Keras ``tx`` moves rows, i.e. is the vertical
    shift): index = ((flip * 3 + vertical) * 3 + horizontal) * 4 + rotation.
    """

    name = "geom72"
    head_sizes = (72,)

    def __init__(self, shift_fraction: float = 0.25):
        self.shift_fraction = float(shift_fraction)

    def labels(self):
        return torch.arange(72, dtype=torch.long)[:, None]

    def views(self, x, *, train=False, generator=None):
        b, c, h, w = x.shape
        both = torch.stack([x, torch.flip(x, dims=(-1,))], 1).reshape(b * 2, c, h, w)
        return all_rotations(shifted_grid(both, self.shift_fraction)).reshape(b, 72, c, h, w)

    def state(self):
        return {"shift_fraction": self.shift_fraction}
