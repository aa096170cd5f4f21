"""Self-supervised methods that are task sets of :class:`~fgad.Detector`.

- ``ours``: geometric + jigsaw, the paper's method;
- ``mhrot``: geometric only (MHRot, Hendrycks et al. 2019: the paper's "Geometric" column);
- ``jigsaw``: jigsaw only (the ablation's "Jigsaw" column);
- ``rotation``, ``translation``: single tasks for the task-suitability study (Fig. 1).
"""

from __future__ import annotations

from typing import Any

from ..core.detector import Detector

TASK_SETS = {
    "ours": ("geometric", "jigsaw"),
    "mhrot": ("geometric",),
    "jigsaw": ("jigsaw",),
    "rotation": ("rotation",),
    "translation": ("translation",),
}


def make_factory(method: str):
    def factory(preset: str = "quick", seed: int = 0, **overrides: Any) -> Detector:
        return Detector(preset=preset, **{"tasks": TASK_SETS[method], "seed": seed, **overrides})

    factory.__doc__ = f"Detector with tasks {TASK_SETS[method]}."
    return factory
