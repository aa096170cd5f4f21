"""Deep SAD's bias-free LeNet-type networks (Ruff et al. 2020, official PyTorch code) and a
bias-free WideResNet encoder.

No layer has a bias and batch norms have no affine parameters (``affine=False``, eps 1e-4): a
bias would let the network map everything onto the centre c (hypersphere collapse). Activations
are leaky ReLU (slope 0.01, PyTorch's default, as the official code), pooling is 2×2 max-pool.
Inputs are images in [0, 1] (the official ``ToTensor``). Decoders mirror the encoders with
transposed convolutions, 2× nearest-neighbour interpolation and a sigmoid output.

- :class:`MnistLeNet` (1×28×28 → 32): conv5 8 → BN → lrelu → pool → conv5 4 → BN → lrelu → pool
  → FC.
- :class:`Cifar10LeNet` (3×32×32 → 128): conv5 32 / 64 / 128, each BN → lrelu → pool → FC.
- :class:`BiasFreeWRN` (C×32×32 → 128): fgad's WideResNet with every batch norm replaced by a
  non-affine one (its convolutions have no bias already) and a bias-free linear projection.
  Not in the official code: an option to compare with the paper's backbone.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .wideresnet import WideResNet


def _bn2d(n: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(n, eps=1e-4, affine=False)


def _xavier_lrelu(conv: nn.Module) -> nn.Module:
    nn.init.xavier_uniform_(conv.weight, gain=nn.init.calculate_gain("leaky_relu"))
    return conv


class MnistLeNet(nn.Module):
    """Official ``MNIST_LeNet``: 1×28×28 → 32, no biases."""

    input_size = 28

    def __init__(self, rep_dim: int = 32):
        super().__init__()
        self.rep_dim = rep_dim
        self.conv1 = nn.Conv2d(1, 8, 5, bias=False, padding=2)
        self.bn1 = _bn2d(8)
        self.conv2 = nn.Conv2d(8, 4, 5, bias=False, padding=2)
        self.bn2 = _bn2d(4)
        self.fc1 = nn.Linear(4 * 7 * 7, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.leaky_relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.leaky_relu(self.bn2(self.conv2(x))), 2)
        return self.fc1(x.flatten(1))


class MnistLeNetDecoder(nn.Module):
    """Official ``MNIST_LeNet_Decoder``: 32 → 1×28×28 in [0, 1]."""

    def __init__(self, rep_dim: int = 32, out_channels: int = 1):
        super().__init__()
        self.rep_dim = rep_dim
        self.deconv1 = nn.ConvTranspose2d(rep_dim // 16, 4, 5, bias=False, padding=2)
        self.bn3 = _bn2d(4)
        self.deconv2 = nn.ConvTranspose2d(4, 8, 5, bias=False, padding=3)
        self.bn4 = _bn2d(8)
        self.deconv3 = nn.ConvTranspose2d(8, out_channels, 5, bias=False, padding=2)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.view(z.shape[0], self.rep_dim // 16, 4, 4)
        x = F.interpolate(F.leaky_relu(x), scale_factor=2)  # 8
        x = F.interpolate(F.leaky_relu(self.bn3(self.deconv1(x))), scale_factor=2)  # 16
        x = F.interpolate(F.leaky_relu(self.bn4(self.deconv2(x))), scale_factor=2)  # 14 -> 28
        return torch.sigmoid(self.deconv3(x))


class Cifar10LeNet(nn.Module):
    """Official ``CIFAR10_LeNet``: C×32×32 → 128, no biases (C = 3 in the official code)."""

    input_size = 32

    def __init__(self, rep_dim: int = 128, in_channels: int = 3):
        super().__init__()
        self.rep_dim = rep_dim
        self.conv1 = nn.Conv2d(in_channels, 32, 5, bias=False, padding=2)
        self.bn2d1 = _bn2d(32)
        self.conv2 = nn.Conv2d(32, 64, 5, bias=False, padding=2)
        self.bn2d2 = _bn2d(64)
        self.conv3 = nn.Conv2d(64, 128, 5, bias=False, padding=2)
        self.bn2d3 = _bn2d(128)
        self.fc1 = nn.Linear(128 * 4 * 4, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.leaky_relu(self.bn2d1(self.conv1(x))), 2)
        x = F.max_pool2d(F.leaky_relu(self.bn2d2(self.conv2(x))), 2)
        x = F.max_pool2d(F.leaky_relu(self.bn2d3(self.conv3(x))), 2)
        return self.fc1(x.flatten(1))


class Cifar10LeNetDecoder(nn.Module):
    """Official ``CIFAR10_LeNet_Decoder``: 128 → C×32×32 in [0, 1] (Xavier init, leaky-ReLU gain)."""

    def __init__(self, rep_dim: int = 128, out_channels: int = 3):
        super().__init__()
        self.rep_dim = rep_dim
        self.deconv1 = _xavier_lrelu(nn.ConvTranspose2d(rep_dim // 16, 128, 5, bias=False, padding=2))
        self.bn2d4 = _bn2d(128)
        self.deconv2 = _xavier_lrelu(nn.ConvTranspose2d(128, 64, 5, bias=False, padding=2))
        self.bn2d5 = _bn2d(64)
        self.deconv3 = _xavier_lrelu(nn.ConvTranspose2d(64, 32, 5, bias=False, padding=2))
        self.bn2d6 = _bn2d(32)
        self.deconv4 = _xavier_lrelu(nn.ConvTranspose2d(32, out_channels, 5, bias=False, padding=2))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(z.view(z.shape[0], self.rep_dim // 16, 4, 4))
        x = F.interpolate(F.leaky_relu(self.bn2d4(self.deconv1(x))), scale_factor=2)  # 8
        x = F.interpolate(F.leaky_relu(self.bn2d5(self.deconv2(x))), scale_factor=2)  # 16
        x = F.interpolate(F.leaky_relu(self.bn2d6(self.deconv3(x))), scale_factor=2)  # 32
        return torch.sigmoid(self.deconv4(x))


class BiasFreeWRN(nn.Module):
    """WideResNet-d-k encoder without biases or affine batch norms, projected to ``rep_dim``."""

    input_size = 32

    def __init__(self, depth: int = 16, width: int = 4, in_channels: int = 3, rep_dim: int = 128):
        super().__init__()
        self.rep_dim = rep_dim
        self.wrn = WideResNet(depth, width, in_channels)
        _strip_affine(self.wrn)
        self.fc = nn.Linear(self.wrn.out_features, rep_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.wrn(x))


def _strip_affine(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _bn2d(child.num_features))
        else:
            _strip_affine(child)
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            raise AssertionError("BiasFreeWRN: a layer has a bias")


class AutoEncoder(nn.Module):
    def __init__(self, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def build_deepsad_nets(net: str, channels: int, wrn_depth: int = 16, wrn_width: int = 4) -> tuple[nn.Module, nn.Module]:
    """(encoder, decoder) for Deep SAD: ``net`` = "lenet" (MNIST LeNet for grey images, CIFAR-10
    LeNet for colour ones) or "wrn" (bias-free WRN encoder with the CIFAR-10 LeNet decoder)."""
    if net == "lenet":
        if channels == 1:
            return MnistLeNet(32), MnistLeNetDecoder(32, 1)
        return Cifar10LeNet(128, channels), Cifar10LeNetDecoder(128, channels)
    if net == "wrn":
        return BiasFreeWRN(wrn_depth, wrn_width, channels, 128), Cifar10LeNetDecoder(128, channels)
    raise ValueError(f"unknown Deep SAD network {net!r}")


__all__ = ["MnistLeNet", "MnistLeNetDecoder", "Cifar10LeNet", "Cifar10LeNetDecoder", "BiasFreeWRN", "AutoEncoder",
           "build_deepsad_nets"]
