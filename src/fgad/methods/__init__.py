"""Method registry: every detector the benchmark can run, by name.

A method is a factory ``(preset, seed, **overrides) -> detector`` whose detector has
``fit(images)``, ``score(images)`` (anomaly scores, higher = more anomalous), ``save(path)`` and
a ``load(path)`` classmethod; self-supervised ones also have ``score_tasks`` and ``task_terms``.
A new method is one module plus one entry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError
from . import classical, deepgeo, deepsad, piad
from .mean_distance import MeanDistance
from .selfsup import TASK_SETS, make_factory


@dataclass(frozen=True)
class Method:
    factory: Callable[..., Any]
    summary: str
    loader: Callable[..., Any]


def _detector_load(path, **kw):
    from ..core.detector import Detector

    return Detector.load(path, **kw)


METHODS: dict[str, Method] = {
    "ours": Method(make_factory("ours"), "geometric + jigsaw tasks (the paper's method)", _detector_load),
    "mhrot": Method(make_factory("mhrot"), "geometric task only (MHRot)", _detector_load),
    "jigsaw": Method(make_factory("jigsaw"), "jigsaw task only", _detector_load),
    "rotation": Method(make_factory("rotation"), "rotation task only (RotNet)", _detector_load),
    "translation": Method(make_factory("translation"), "translation task only", _detector_load),
    "mean-distance": Method(MeanDistance, "floor: distance to the mean normal image", MeanDistance.load),
    "deepgeo": Method(deepgeo.factory, "DeepGEO/GEOM: 72 geometric transformations, Dirichlet scoring",
                      deepgeo.DeepGEO.load),
    "deepsvdd": Method(deepsad.svdd_factory, "Deep SVDD: bias-free encoder, distance to a centre (no labels)",
                       deepsad.load),
    "deepsad-10": Method(deepsad.sad_factory(0.10), "Deep SAD, 10% of the anomaly classes labelled", deepsad.load),
    "deepsad-25": Method(deepsad.sad_factory(0.25), "Deep SAD, 25% of the anomaly classes labelled", deepsad.load),
    "deepsad-75": Method(deepsad.sad_factory(0.75), "Deep SAD, 75% of the anomaly classes labelled", deepsad.load),
    "piad": Method(piad.factory, "PIAD: adversarial autoencoder, relative perceptual L1 (needs VGG-19 weights)",
                   piad.PIAD.load),
    "ocsvm": Method(classical.ocsvm_factory, "one-class SVM (RBF) on raw pixels or backbone features",
                    classical.OCSVM.load),
    "iforest": Method(classical.iforest_factory, "Isolation Forest on raw pixels or backbone features",
                      classical.IForest.load),
}


def list_methods() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]


def create_method(name: str, preset: str = "quick", seed: int = 0, **overrides: Any) -> Any:
    """A fresh, unfitted detector of method ``name``."""
    return get_method(name).factory(preset=preset, seed=seed, **overrides)


__all__ = ["METHODS", "Method", "TASK_SETS", "create_method", "get_method", "list_methods", "MeanDistance"]
