"""VGG-19 feature layers (Simonyan & Zisserman 2015) with torchvision's parameter names.

Only the convolutional ``features`` part, cut after a named layer (``relu4_2`` for PIAD's
perceptual loss). Module indices follow torchvision's ``vgg19().features`` exactly, so the
parameters are called ``features.<index>.weight`` / ``.bias`` and a torchvision ``vgg19`` state
dict (ImageNet weights) loads as is; keys of other layers (deeper features, the classifier) are
ignored. No torchvision import: the weights come from a file the user supplies
(:func:`load_vgg19_weights`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError

# torchvision's configuration "E" (VGG-19): channels, "M" = 2×2 max-pool.
VGG19_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def layer_names() -> list[str]:
    """Names of the modules of ``features`` in order: conv1_1, relu1_1, conv1_2, relu1_2, pool1..."""
    names, block, i = [], 1, 1
    for v in VGG19_CFG:
        if v == "M":
            names.append(f"pool{block}")
            block, i = block + 1, 1
        else:
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
            i += 1
    return names


LAYER_INDEX = {n: i for i, n in enumerate(layer_names())}


class VGG19Features(nn.Module):
    """``features`` of VGG-19 up to and including ``last`` (e.g. ``"relu4_2"`` = index 22)."""

    def __init__(self, last: str = "relu4_2"):
        super().__init__()
        if last not in LAYER_INDEX:
            raise ConfigError(f"unknown VGG-19 layer {last!r}; known: {', '.join(LAYER_INDEX)}")
        self.last = last
        layers: list[nn.Module] = []
        in_ch = 3
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=False)]
                in_ch = v
        self.features = nn.Sequential(*layers[: LAYER_INDEX[last] + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalise(self, x01: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (1 or 3 channels; grey repeated to 3) → ImageNet-normalised input."""
        if x01.shape[1] == 1:
            x01 = x01.expand(-1, 3, -1, -1)
        return (x01 - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Features of already normalised input (see :meth:`normalise`)."""
        return self.features(x)


def load_vgg19_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A VGG-19 state dict from ``path``: safetensors, or a torch ``.pt``/``.pth`` state dict
    (read with ``weights_only=True``: tensors only, never arbitrary pickled objects).

    Keys may be torchvision's (``features.0.weight``...) or those of ``vgg19().features`` alone
    (``0.weight``...). Raises ConfigError (one line) when the file cannot be read.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"VGG-19 weights file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # any reader error is a bad user file
        raise ConfigError(f"{path}: cannot read VGG-19 weights ({str(exc).splitlines()[0] if str(exc) else exc})") \
            from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{path}: not a VGG-19 state dict (a mapping of names to tensors)")
    if not any(k.startswith("features.") for k in state):
        state = {f"features.{k}": v for k, v in state.items()}
    return state


def vgg_state_for(model: VGG19Features, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """The entries of ``state`` that ``model`` needs, checked; extra keys are ignored."""
    need = model.state_dict()
    missing = [k for k in need if k not in state]
    if missing:
        raise ConfigError(f"{source}: not VGG-19 weights (missing {', '.join(missing[:3])})")
    out = {}
    for k, v in need.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ConfigError(f"{source}: {k} is {tuple(state[k].shape)}, VGG-19 needs {tuple(v.shape)}")
        out[k] = state[k].to(v.dtype)
    return out


__all__ = ["VGG19Features", "load_vgg19_weights", "vgg_state_for", "layer_names", "LAYER_INDEX"]
