"""Backbones and heads. Every backbone exposes ``out_features``."""

from .multitask import MultiTaskNet
from .wideresnet import WideResNet

__all__ = ["MultiTaskNet", "WideResNet"]
