"""The paper's network: a shared backbone φ and one dense layer per task, each after dropout.

A task with several heads (MHRot's 3|3|4) has one dense layer whose outputs are split into the
heads' slices; each slice gets its own softmax (never one softmax over all of them).
"""

from __future__ import annotations

import torch
from torch import nn


class MultiTaskNet(nn.Module):
    def __init__(self, backbone: nn.Module, task_outputs: dict[str, int], dropout: float = 0.3):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({
            name: nn.Sequential(nn.Dropout(dropout), nn.Linear(backbone.out_features, n))
            for name, n in task_outputs.items()
        })
        for head in self.heads.values():
            nn.init.zeros_(head[1].bias)

    def forward(self, views: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Views per task (N_t×C×H×W) → logits per task (N_t×outputs), one backbone pass for all."""
        names = list(views)
        feats = self.backbone(torch.cat([views[n] for n in names]))
        out, start = {}, 0
        for n in names:
            size = views[n].shape[0]
            out[n] = self.heads[n](feats[start : start + size])
            start += size
        return out
