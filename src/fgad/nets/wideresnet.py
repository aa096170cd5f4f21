"""Wide residual network (Zagoruyko & Komodakis 2016), pre-activation, batch norm.

WRN-d-k has (d − 4)/6 blocks in each of three groups of widths 16k, 32k, 64k (strides 1, 2, 2)
after a 16-channel stem; the feature is the global average of the last group, 64k values.
WRN-16-4 (the paper's) has 2 blocks per group and about 2.75 M parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError


class PreActBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.relu(self.bn1(x))
        # With a projection, the shortcut also starts from the pre-activated input (WRN's code).
        shortcut = x if self.shortcut is None else self.shortcut(o)
        o = self.conv1(o)
        o = self.conv2(self.dropout(self.relu(self.bn2(o))))
        return o + shortcut


class WideResNet(nn.Module):
    """Feature extractor φ: images B×C×H×W → features B×(64·width)."""

    def __init__(self, depth: int = 16, width: int = 4, in_channels: int = 3, block_dropout: float = 0.0):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ConfigError(f"WideResNet depth must be 6n+4 with n >= 1 (10, 16, 22, 28...), got {depth}")
        if width < 1:
            raise ConfigError(f"WideResNet width must be >= 1, got {width}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)]
        for group, stride in zip(range(3), (1, 2, 2)):
            for i in range(n):
                layers.append(PreActBlock(widths[group] if i == 0 else widths[group + 1], widths[group + 1],
                                          stride if i == 0 else 1, block_dropout))
        layers += [nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        self.out_features = widths[3]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
