"""What every pretext task provides: its views of a batch and the labels of those views.

A task turns a batch ``x`` of B images (B×C×H×W, any device) into ``V`` transformed views of
every image, shaped B×V×C×H×W, and a label table V×n_heads: view ``v`` of every image carries
``labels[v]``, one class index per softmax head. The table is the same for all images, so a
batch of views is built with a few whole-batch tensor operations and no per-image loop.
"""

from __future__ import annotations

from typing import Any

import torch


class Task:
    """Base class of a pretext task. Subclasses set ``name`` and ``head_sizes``."""

    name: str = ""
    head_sizes: tuple[int, ...] = ()

    @property
    def n_views(self) -> int:
        return int(self.labels().shape[0])

    @property
    def n_outputs(self) -> int:
        """Width of the task's dense layer: the head sizes side by side."""
        return sum(self.head_sizes)

    @property
    def n_score_terms(self) -> int:
        """How many softmax values the task's score sums: views × heads (eq. 4 / eq. 2)."""
        return self.n_views * len(self.head_sizes)

    def labels(self) -> torch.Tensor:
        """V×n_heads long tensor: the true class of each view for each head."""
        raise NotImplementedError

    def views(self, x: torch.Tensor, *, train: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """All V views of every image: B×C×H×W → B×V×C×H×W.

        ``train`` and ``generator`` only matter for tasks with random parts (the jigsaw offsets).
        """
        raise NotImplementedError

    def test_views(self, x: torch.Tensor, draw: int = 0) -> torch.Tensor:
        """Test views of draw ``draw`` (B×V×C×H×W): draw 0 is ``views(x)``; tasks with random parts
        (the jigsaw) give other seeded draws for d >= 1, the same for every image. Tasks without
        random parts give ``views(x)`` for every draw."""
        return self.views(x)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable parameters that rebuild this exact task (saved with the model)."""
        return {}
