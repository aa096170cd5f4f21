"""Pretext tasks, as batched tensor operations. A new task is one module plus one entry below."""

from __future__ import annotations

from typing import Any, Callable

from ..errors import ConfigError
from .base import Task
from .geometric import Geom72Task, GeometricTask, RotationTask, TranslationTask
from .jigsaw import PERMUTATION_CHOICES, JigsawTask, choose_permutations, random_permutations

TASKS: dict[str, Callable[..., Task]] = {
    "geometric": GeometricTask,
    "jigsaw": JigsawTask,
    "rotation": RotationTask,
    "translation": TranslationTask,
    "geom72": Geom72Task,
}


def list_tasks() -> list[str]:
    return sorted(TASKS)


def build_task(name: str, **params: Any) -> Task:
    """Build a task by name; ``params`` are its ``state()`` keys (unknown keys are an error)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; known: {', '.join(list_tasks())}")
    try:
        return TASKS[name](**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for task {name!r}: {exc}") from exc


__all__ = ["Task", "TASKS", "build_task", "list_tasks", "choose_permutations", "random_permutations",
           "PERMUTATION_CHOICES", "GeometricTask", "JigsawTask", "RotationTask", "TranslationTask", "Geom72Task"]
