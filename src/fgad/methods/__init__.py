"""Method registry: every detector the benchmark can run, by name.

Every method is an :class:`~fgad.methods.base.AnomalyDetector`: ``fit(images, context)``,
``score(images)`` (anomaly scores, higher = more anomalous), optional ``score_components``,
``save(path)`` and a ``load(path)`` classmethod. A new method is one module plus one entry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from .base import AnomalyDetector, ComponentScores, FitContext
from .classical import OCSVM, IForest
from .deepgeo import DeepGEO
from .deepsad import DeepSAD10, DeepSAD25, DeepSAD75, DeepSVDD
from .goad import GOAD
from .mean_distance import MeanDistance
from .piad import PIAD
from .selfsup import TASK_SETS, Calibrated, JigsawOnly, MHRot, Ours, RotationOnly, TranslationOnly


@dataclass(frozen=True)
class Method:
    """A registered method: ``factory(preset, seed, **options)`` makes an unfitted detector,
    ``loader(path, device=None)`` loads a saved one."""

    factory: type[AnomalyDetector]
    summary: str
    loader: Callable[..., AnomalyDetector]

    @property
    def options(self) -> tuple[str, ...]:
        """The option names the method takes."""
        return self.factory.options()


def _entry(cls: type[AnomalyDetector], summary: str) -> Method:
    return Method(cls, summary, cls.load)


METHODS: dict[str, Method] = {m.factory.name: m for m in [
    _entry(Calibrated, "the default detector: geometric + jigsaw, log-space task scores and a feature-space kNN "
                       "component, fused relative to held-out normal images (fgad's improvement on the paper)"),
    _entry(Ours, "geometric + jigsaw tasks (the paper's method)"),
    _entry(MHRot, "geometric task only (MHRot)"),
    _entry(JigsawOnly, "jigsaw task only"),
    _entry(RotationOnly, "rotation task only (RotNet)"),
    _entry(TranslationOnly, "translation task only"),
    _entry(MeanDistance, "floor: distance to the mean normal image"),
    _entry(DeepGEO, "DeepGEO/GEOM: 72 geometric transformations, Dirichlet scoring"),
    _entry(GOAD, "GOAD: 72 geometric transformations, distances to per-transformation centres"),
    _entry(DeepSVDD, "Deep SVDD: bias-free encoder, distance to a centre (no labels)"),
    _entry(DeepSAD10, "Deep SAD, 10% of the anomaly classes labelled"),
    _entry(DeepSAD25, "Deep SAD, 25% of the anomaly classes labelled"),
    _entry(DeepSAD75, "Deep SAD, 75% of the anomaly classes labelled"),
    _entry(PIAD, "PIAD: adversarial autoencoder, relative perceptual L1 (needs VGG-19 weights)"),
    _entry(OCSVM, "one-class SVM (RBF) on raw pixels or backbone features"),
    _entry(IForest, "Isolation Forest on raw pixels or backbone features"),
]}


def list_methods() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def create_method(name: str, preset: str = "quick", seed: int = 0, **options: Any) -> AnomalyDetector:
    """A fresh, unfitted detector of method ``name``."""
    return get_method(name).factory(preset=preset, seed=seed, **options)


__all__ = ["METHODS", "Method", "TASK_SETS", "AnomalyDetector", "ComponentScores", "FitContext", "create_method",
           "get_method", "list_methods", "MeanDistance"]
