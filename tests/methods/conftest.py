"""Fixtures of the methods suite: tiny random image sets and a tiny 3-class dataset (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgad.data.base import ImageDataset

# Two shared cores: one intra-op thread keeps runs fast, predictable and deterministic.
torch.set_num_threads(1)


def _images(n: int, shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture(autouse=True)
def _no_user_vgg(monkeypatch):
    """No test reads a VGG weights file from the user's environment."""
    monkeypatch.delenv("FGAD_VGG19_WEIGHTS", raising=False)


@pytest.fixture(scope="session")
def image_sets() -> dict[str, np.ndarray]:
    """6 grey 28×28 and 6 colour 32×32 random images."""
    return {"grey": _images(6, (28, 28), 1), "colour": _images(6, (32, 32, 3), 2)}


def tiny_dataset(kind: str, n_per_class: int = 4, seed: int = 3) -> ImageDataset:
    """3 classes of random images (grey 28×28 or colour 32×32), train and test."""
    shape = (28, 28) if kind == "grey" else (32, 32, 3)
    y = np.repeat(np.arange(3), n_per_class)
    return ImageDataset(name=f"tiny-{kind}", x_train=_images(len(y), shape, seed), y_train=y,
                        x_test=_images(len(y), shape, seed + 1), y_test=y, class_names=["a", "b", "c"])


@pytest.fixture(scope="session")
def make_dataset():
    return tiny_dataset
