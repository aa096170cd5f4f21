"""The detector's configuration: one typed dataclass, named presets, validated overrides.

``paper`` is the paper's configuration (section 4); where the paper is silent the choice of the
reference implementations is taken (see ``docs/configuration.md``). ``quick`` is a scaled-down
preset for a 2-core CPU: it is not the paper's configuration.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch


@dataclass
class DetectorConfig:
    tasks: tuple[str, ...] = ("geometric", "jigsaw")  # ("geometric",) = MHRot, ("jigsaw",) = jigsaw only
    depth: int = 16  # WideResNet depth, 6n+4
    width: int = 4  # WideResNet widening factor
    head_dropout: float = 0.3  # dropout before each task's dense layer (paper)
    block_dropout: float = 0.0  # dropout inside residual blocks (Hendrycks' WRN); off in the paper
    image_size: int = 32  # smaller images are zero-padded to this side, larger ones resized
    batch_size: int = 32  # source images per step; each brings all views of every task
    epochs: float | None = 15.0  # training length in passes over the normal images...
    steps: int | None = None  # ...or in optimiser steps (takes precedence when set)
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    shift_fraction: float = 0.25  # geometric shift t = side × this
    jigsaw_grid: tuple[int, int] = (3, 3)
    jigsaw_k: int = 3  # permutations, identity included
    jigsaw_margin: int = 2  # tile = cell − margin pixels; the random offset range in training
    score_fusion: str = "sum"  # "sum": eq. 3 on raw task sums (the paper's); "mean": each sum / its terms
    seed: int = 0
    device: str = "auto"  # "auto" = cuda when available, else cpu
    # Source images per scoring batch (× all views); None: 128 on CUDA, 8 on a CPU, where big
    # batches outgrow the caches and run slower (measured, docs/performance.md).
    score_batch_size: int | None = None
    checkpoint_every: int = 200  # steps between training checkpoints, when a checkpoint folder is given
    channels_last: bool = False
    bf16: bool = False  # bf16 autocast on CUDA
    compile: bool = False  # torch.compile the network
    deterministic: bool = False  # deterministic algorithms on CUDA (slower); CPU runs are deterministic anyway

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["tasks"] = list(self.tasks)
        d["jigsaw_grid"] = list(self.jigsaw_grid)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DetectorConfig":
        cfg = cls()
        return replace_checked(cfg, data)


PRESETS: dict[str, dict[str, Any]] = {
    # The paper: WRN-16-4, dropout 0.3 on both dense layers, SGD-Nesterov lr 0.1, batch 32,
    # 3×3 jigsaw with k = 3. Training length is not given in the paper: 15 epochs, cosine.
    "paper": {"channels_last": True},  # a memory layout, not a change of the method: measured faster
    # Scaled down for 2 CPU cores (not the paper's): WRN-10-1, 8 source images (312 views with
    # both tasks) per step, 300 steps, channels-last. Chosen by wall time, not by any test AUROC.
    "quick": {"depth": 10, "width": 1, "batch_size": 8, "epochs": None, "steps": 300, "channels_last": True},
    # For tests: a network and a run that take seconds.
    "tiny": {"depth": 10, "width": 1, "batch_size": 4, "epochs": None, "steps": 4, "score_batch_size": 32},
}

PRESET_NOTES = {
    "paper": "the paper's configuration: WRN-16-4, batch 32, 15 epochs (GPU work)",
    "quick": "scaled down for 2 CPU cores, not the paper's",
    "tiny": "for tests",
}

_FIELDS = {f.name: f for f in dataclasses.fields(DetectorConfig)}
_CHOICES = {"score_fusion": ("sum", "mean")}


def _coerce(name: str, value: Any) -> Any:
    """Check one value against the field's type; ints are accepted for floats."""
    default = getattr(DetectorConfig(), name)
    ftype = _FIELDS[name].type
    if name == "tasks":
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key 'tasks' must be a non-empty list of task names, got {value!r}")
        if len(set(value)) != len(value):
            raise ConfigError(f"config key 'tasks' lists a task twice: {value!r}")
        return tuple(value)
    if name == "jigsaw_grid":
        if isinstance(value, int) and not isinstance(value, bool):
            value = (value, value)
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value):
            raise ConfigError(f"config key 'jigsaw_grid' must be two positive integers, got {value!r}")
        return tuple(value)
    optional = "None" in str(ftype)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config key {name!r} cannot be null")
    base = type(default) if default is not None else float
    if name in ("steps", "score_batch_size"):
        base = int
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key {name!r} must be true or false, got {value!r}")
    elif base is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key {name!r} must be an integer, got {value!r}")
    elif base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {name!r} must be a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"config key {name!r} must be finite, got {value!r}")
    elif base is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {name!r} must be a string, got {value!r}")
    if name in _CHOICES and value not in _CHOICES[name]:
        raise ConfigError(f"config key {name!r} must be one of {', '.join(_CHOICES[name])}, got {value!r}")
    return value


def replace_checked(cfg: DetectorConfig, overrides: dict[str, Any]) -> DetectorConfig:
    unknown = sorted(set(overrides) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    new = dataclasses.replace(cfg, **{k: _coerce(k, v) for k, v in overrides.items()})
    _check_ranges(new)
    return new


def score_batch_size(cfg: DetectorConfig, device: torch.device) -> int:
    """Source images per scoring batch on ``device``: the config's, or the device's default."""
    if cfg.score_batch_size is not None:
        return cfg.score_batch_size
    return 128 if device.type == "cuda" else 8


def _check_ranges(cfg: DetectorConfig) -> None:
    positive = ["depth", "width", "image_size", "batch_size", "score_batch_size", "checkpoint_every", "jigsaw_k"]
    for k in positive:
        if getattr(cfg, k) is not None and getattr(cfg, k) < 1:
            raise ConfigError(f"config key {k!r} must be >= 1, got {getattr(cfg, k)}")
    if cfg.steps is None and cfg.epochs is None:
        raise ConfigError("set a training length: 'epochs' or 'steps'")
    if cfg.steps is not None and cfg.steps < 1:
        raise ConfigError(f"config key 'steps' must be >= 1, got {cfg.steps}")
    if cfg.epochs is not None and cfg.epochs <= 0:
        raise ConfigError(f"config key 'epochs' must be > 0, got {cfg.epochs}")
    for k in ("head_dropout", "block_dropout"):
        if not 0.0 <= getattr(cfg, k) < 1.0:
            raise ConfigError(f"config key {k!r} must be in [0, 1), got {getattr(cfg, k)}")
    if not 0.0 < cfg.shift_fraction < 1.0:
        raise ConfigError(f"config key 'shift_fraction' must be in (0, 1), got {cfg.shift_fraction}")
    if cfg.lr <= 0:
        raise ConfigError(f"config key 'lr' must be > 0, got {cfg.lr}")


def resolve_config(preset: str = "quick", overrides: dict[str, Any] | None = None) -> DetectorConfig:
    """The preset's configuration with ``overrides`` applied and checked."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    cfg = replace_checked(DetectorConfig(), PRESETS[preset])
    if overrides:
        # A preset that sets 'steps' would override an 'epochs' the user asked for.
        if "epochs" in overrides and "steps" not in overrides:
            overrides = {**overrides, "steps": None}
        cfg = replace_checked(cfg, overrides)
    return cfg


def load_config_file(path: str) -> dict[str, Any]:
    """Overrides from a YAML or JSON file (a mapping of config keys)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from exc
    try:
        data = json.loads(text) if str(path).endswith(".json") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not valid YAML/JSON ({str(exc).splitlines()[0]})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping of keys to values")
    return data
