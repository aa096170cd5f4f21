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
from .mean_distance import MeanDistance
from .selfsup import TASK_SETS, make_factory


@dataclass(frozen=True)
class Method:
    factory: Callable[..., Any]
    summary: str
    loader: Callable[..., Any]


def _detector_load(path, **kw):
    from ..detector import Detector

    return Detector.load(path, **kw)


METHODS: dict[str, Method] = {
    "ours": Method(make_factory("ours"), "geometric + jigsaw tasks (the paper's method)", _detector_load),
    "mhrot": Method(make_factory("mhrot"), "geometric task only (MHRot)", _detector_load),
    "jigsaw": Method(make_factory("jigsaw"), "jigsaw task only", _detector_load),
    "rotation": Method(make_factory("rotation"), "rotation task only (RotNet)", _detector_load),
    "translation": Method(make_factory("translation"), "translation task only", _detector_load),
    "mean-distance": Method(MeanDistance, "floor: distance to the mean normal image", MeanDistance.load),
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
