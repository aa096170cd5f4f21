"""Self-supervised methods: task sets of :class:`~fgad.Detector` behind the method contract.

- ``ours``: geometric + jigsaw, the paper's method, its score fixed to the paper's (eqs. 2–4)
  and its training too (no flips);
- ``calibrated``: fgad's improved detector, geometric + jigsaw with the settings of
  :data:`fgad.core.config.IMPROVED` (log-space task scores, a feature-space kNN component, fusion
  relative to held-out normal images) and the config's defaults for flips of colour training
  images, test-time mirrors and the pixel component (left free so that models saved before them
  still load);
- ``mhrot``: geometric only (MHRot, Hendrycks et al. 2019: the paper's "Geometric" column);
- ``jigsaw``: jigsaw only (the ablation's "Jigsaw" column);
- ``rotation``, ``translation``: single tasks for the task-suitability study (Fig. 1).

The method fixes the task set and the scoring settings (``calibrated`` the improved detector's,
the others the paper's, with no flips: they are the paper's methods and baselines); every other
:class:`~fgad.core.config.DetectorConfig` field is an option. ``detector`` is the
:class:`~fgad.Detector` itself (calibration, explanations, export).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.config import IMPROVED, PAPER_SETTINGS, PRESETS, DetectorConfig
from ..core.detector import Detector
from ..errors import ConfigError, ModelFileError
from .base import AnomalyDetector, ComponentScores, FitContext

__all__ = ["SelfSupervised", "Ours", "Calibrated", "MHRot", "JigsawOnly", "RotationOnly", "TranslationOnly",
           "TASK_SETS"]


class SelfSupervised(AnomalyDetector):
    """A :class:`~fgad.Detector` as a method; ``score`` returns its anomaly scores (higher = more
    anomalous), ``score_components`` also each fused component's normality (higher = more normal)."""

    name = "selfsup"
    config_class = DetectorConfig
    presets = PRESETS
    file_format = "fgad-detector"
    resumable = True

    def _setup(self, config: DetectorConfig, preset: str) -> None:
        self.detector = Detector.from_config(config, preset)

    @classmethod
    def wrap(cls, detector: Detector) -> "SelfSupervised":
        """``detector`` as this method; its tasks must be the method's."""
        tasks = cls.fixed.get("tasks")
        if tasks is not None and detector.config.tasks != tasks:
            raise ConfigError(f"{cls.name}: the method's tasks are {', '.join(tasks)}; "
                              f"the detector's are {', '.join(detector.config.tasks)}")
        obj = cls.from_config(detector.config, detector.preset)
        obj.detector = detector
        return obj

    # The detector holds the state.
    config = property(lambda self: self.detector.config)
    preset = property(lambda self: self.detector.preset)
    input_shape = property(lambda self: self.detector.input_shape)
    info = property(lambda self: self.detector.info)
    device = property(lambda self: self.detector.device)
    is_fitted = property(lambda self: self.detector.is_fitted)

    def config_dict(self) -> dict[str, Any]:
        """The resolved config and, once fitted, ``task_terms`` (score terms per task)."""
        return {**self.config.to_dict(), "task_terms": self.detector.task_terms}

    def fit(self, images: Any, context: FitContext | None = None) -> "SelfSupervised":
        """Train on normal images; checkpoints in ``context.checkpoint_dir``, resumed from when there."""
        context = self.fit_context(context)
        self.detector.fit(images, checkpoint_dir=context.checkpoint_dir, progress=context.progress)
        return self

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous (the paper's score negated)."""
        return self.detector.score(images)

    def score_components(self, images: Any, *, progress: bool = False) -> ComponentScores:
        """The anomaly scores and each fused component's normality (higher = more normal): per
        task its score (the paper's: the sum of eq. 4), and the feature component when there is one."""
        parts = self.detector.score_components(images, progress=progress)
        return ComponentScores(-self.detector.fuse_components(parts), parts)

    def save(self, path: str | Path) -> Path:
        """The detector's folder (see :meth:`fgad.Detector.save`)."""
        return self.detector.save(path)

    @classmethod
    def load(cls, path: str | Path, *, device: str | None = None) -> "SelfSupervised":
        """A saved :class:`~fgad.Detector` folder whose tasks are this method's."""
        detector = Detector.load(path, device=device)
        tasks = cls.fixed.get("tasks")
        if tasks is not None and detector.config.tasks != tasks:
            raise ModelFileError(f"{path}: a model of tasks {', '.join(detector.config.tasks)}, "
                                 f"not {cls.name!r} (tasks {', '.join(tasks)})")
        other = {k: getattr(detector.config, k) for k, v in cls.fixed.items() if getattr(detector.config, k) != v}
        if other:
            raise ModelFileError(f"{path}: not a {cls.name!r} model (its "
                                 f"{', '.join(f'{k}={v!r}' for k, v in other.items())})")
        return cls.wrap(detector)


class Ours(SelfSupervised):
    """Geometric + jigsaw tasks: the paper's method, scored as the paper (fixed: it never drifts)."""

    name = "ours"
    fixed = {"tasks": ("geometric", "jigsaw"), **PAPER_SETTINGS}


class Calibrated(SelfSupervised):
    """fgad's improved detector: the settings of :data:`fgad.core.config.IMPROVED` (fixed)."""

    name = "calibrated"
    fixed = IMPROVED


class MHRot(SelfSupervised):
    """The geometric task only (MHRot)."""

    name = "mhrot"
    fixed = {"tasks": ("geometric",), **PAPER_SETTINGS}


class JigsawOnly(SelfSupervised):
    """The jigsaw task only."""

    name = "jigsaw"
    fixed = {"tasks": ("jigsaw",), **PAPER_SETTINGS}


class RotationOnly(SelfSupervised):
    """The rotation task only (RotNet)."""

    name = "rotation"
    fixed = {"tasks": ("rotation",), **PAPER_SETTINGS}


class TranslationOnly(SelfSupervised):
    """The translation task only."""

    name = "translation"
    fixed = {"tasks": ("translation",), **PAPER_SETTINGS}


#: The task set of each self-supervised method.
TASK_SETS: dict[str, tuple[str, ...]] = {
    c.name: c.fixed["tasks"] for c in (Ours, Calibrated, MHRot, JigsawOnly, RotationOnly, TranslationOnly)}
