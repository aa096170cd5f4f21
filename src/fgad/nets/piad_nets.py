"""PIAD's networks (Tuluptceva et al., "Perceptual image anomaly detection", official code
ninatu/piad): residual encoder, generator and image discriminator, and an MLP latent discriminator.

All convolutions have biases, leaky ReLU slope 0.2, no normalisation. Encoder and generator
weights are Kaiming-normal (fan-out, leaky ReLU 0.2); the latent discriminator keeps the Xavier
init of its 1×1 convolutions. For an image side S (a power of two) and a 1×1 latent:

- encoder (channels d0..d3): 3×3 conv C→d0; pre-activation residual down-blocks (avg-pool)
  d0→d0, d0→d1, d1→d2 ... until 4×4; lrelu; 4×4 conv (valid) → d3 + lrelu; 1×1 conv → latent.
- generator (channels g0..g3): 4×4 conv with padding 3 on the 1×1 latent → 4×4×g0; residual
  up-blocks (nearest 2×) g0→g1→g2→g3 up to S; a residual block; lrelu; 1×1 conv → C.
- image discriminator: the encoder's architecture with a latent of 1 and a minibatch-stddev
  channel before the last convolutions.
- latent discriminator: 1×1 convolutions latent → h1 → h2 → 1 (lrelu between).

``len(dims)`` must be ``log2(2·S/4)``: 4 for 32×32 images.
"""

from __future__ import annotations

import math

import torch
from torch import nn

SLOPE = 0.2


def _conv(cin: int, cout: int, k: int, stride: int = 1, pad: int = 0, act: bool = False) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, k, stride, pad)
    gain = nn.init.calculate_gain("leaky_relu", SLOPE) if act else 1.0
    nn.init.xavier_uniform_(conv.weight, gain=gain)
    layers: list[nn.Module] = [conv]
    if act:
        layers.append(nn.LeakyReLU(SLOPE))
    return nn.Sequential(*layers)


class ResBlock(nn.Module):
    """Pre-activation residual block: lrelu → conv3 → lrelu → conv3, plus a (1×1) shortcut;
    ``resample`` = "up" (nearest 2× first), "down" (2×2 average pool last) or None."""

    def __init__(self, cin: int, cout: int, resample: str | None = None):
        super().__init__()
        main: list[nn.Module] = [nn.LeakyReLU(SLOPE)]
        skip: list[nn.Module] = []
        if resample == "up":
            main.append(nn.Upsample(scale_factor=2, mode="nearest"))
            skip.append(nn.Upsample(scale_factor=2, mode="nearest"))
        main += [_conv(cin, cout, 3, 1, 1, act=True), _conv(cout, cout, 3, 1, 1)]
        if resample == "down":
            main.append(nn.AvgPool2d(2, 2))
            skip.append(nn.AvgPool2d(2, 2))
        if cin != cout:
            skip.append(_conv(cin, cout, 1))
        self.main = nn.Sequential(*main)
        self.skip = nn.Sequential(*skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.main(x)


class MinibatchStdDev(nn.Module):
    """Appends one channel: the mean over features of the batch standard deviation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(((x - x.mean(0, keepdim=True)) ** 2).mean(0, keepdim=True) + 1e-8).mean()
        return torch.cat([x, std.expand(x.shape[0], 1, *x.shape[2:])], 1)


def _check(image_size: int, dims: tuple[int, ...], what: str) -> None:
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"PIAD {what}: the image side must be a power of two >= 8, got {image_size}")
    want = int(math.log2(image_size * 2 / 4))
    if len(dims) != want:
        raise ValueError(f"PIAD {what}: {image_size}x{image_size} images need {want} channel sizes, got {len(dims)}")


def _kaiming(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, a=SLOPE, mode="fan_out", nonlinearity="leaky_relu")
    return model


class Encoder(nn.Module):
    """Image C×S×S → latent latent_dim×1×1."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, dims: tuple[int, ...],
                 minibatch_std: bool = False):
        super().__init__()
        _check(image_size, dims, "encoder")
        chans = [dims[0]] + list(dims)
        layers: list[nn.Module] = [_conv(channels, dims[0], 3, 1, 1)]
        res, i = image_size, 0
        while res > 4:
            layers.append(ResBlock(chans[i], chans[i + 1], "down"))
            i, res = i + 1, res // 2
        if minibatch_std:
            layers.append(MinibatchStdDev())
        layers += [nn.LeakyReLU(SLOPE), _conv(chans[i] + int(minibatch_std), chans[i + 1], 4, act=True),
                   _conv(chans[i + 1], latent_dim, 1)]
        self.model = _kaiming(nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Generator(nn.Module):
    """Latent latent_dim×1×1 → image C×S×S (unbounded output; images live in [−1, 1])."""

    def __init__(self, image_size: int, channels: int, latent_dim: int, dims: tuple[int, ...]):
        super().__init__()
        _check(image_size, dims, "generator")
        layers: list[nn.Module] = [_conv(latent_dim, dims[0], 4, 1, 3)]
        res, i = 4, 0
        while res < image_size:
            layers.append(ResBlock(dims[i], dims[i + 1], "up"))
            i, res = i + 1, res * 2
        layers += [ResBlock(dims[i], dims[i]), nn.LeakyReLU(SLOPE), _conv(dims[i], channels, 1)]
        self.model = _kaiming(nn.Sequential(*layers))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)


class LatentDiscriminator(nn.Module):
    """Latent → critic value, through 1×1 convolutions (an MLP)."""

    def __init__(self, latent_dim: int, dims: tuple[int, ...]):
        super().__init__()
        chans = [latent_dim] + list(dims)
        layers = [_conv(chans[i], chans[i + 1], 1, act=True) for i in range(len(dims))]
        layers.append(_conv(chans[-1], 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z.reshape(z.shape[0], -1, 1, 1))


__all__ = ["Encoder", "Generator", "LatentDiscriminator", "ResBlock", "MinibatchStdDev"]
