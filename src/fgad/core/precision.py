"""The arithmetic precision of every forward pass: training, scoring and diagnostics alike.

One rule, so that a model is trained and scored in the same precision: bf16 autocast when the
config asks for it and the device is a GPU (on a CPU without bf16 matrix units it is several times
slower than float32: ``docs/performance.md``, ``--cpu-bf16-probe``); otherwise plain float32.
"""

from __future__ import annotations

import torch

from .config import DetectorConfig

__all__ = ["autocast"]


def autocast(cfg: DetectorConfig, device: torch.device) -> torch.autocast:
    """The autocast context of a forward pass on ``device`` under ``cfg`` (``cfg.bf16``, CUDA only)."""
    if cfg.bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)
