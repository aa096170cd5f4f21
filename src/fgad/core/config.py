"""Configurations: the detector's typed dataclass and presets, and the one validator of every
method's options.

``paper`` is the paper's configuration (section 4); where the paper is silent the choice of the
reference implementations is taken (see ``docs/configuration.md``). ``quick`` is a scaled-down
preset for a 2-core CPU: it is not the paper's configuration.

:func:`check_config` builds any config dataclass (the detector's, each baseline's) from plain
values: it refuses unknown keys, checks and converts each value by its field's type annotation,
then runs the dataclass's ``validate`` (ranges, choices). Every error is one :class:`ConfigError`
line that names the owner (``detector``, ``deepgeo``...) and the option.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, TypeVar

import numpy as np

from ..errors import ConfigError
from ..io.conform import RESIZE_RULES
from .scoring import FUSIONS, NORMAL_STATS, STANDARDISED_FUSIONS, TASK_SCORES

if TYPE_CHECKING:
    import torch

C = TypeVar("C", bound="Config")


class Config:
    """Base of the config dataclasses: ``to_dict`` (JSON-ready) and the ``validate`` hook."""

    #: ``{key: cleared}``: setting ``key`` clears a preset's ``cleared`` (an ``epochs`` asked
    #: for must not lose to a preset's ``steps``, which takes precedence when set).
    CLEARS: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def validate(self) -> None:
        """Check ranges and choices; raise ConfigError with a message that starts with the option."""


@dataclass
class DetectorConfig(Config):
    tasks: tuple[str, ...] = ("geometric", "jigsaw")  # ("geometric",) = MHRot, ("jigsaw",) = jigsaw only
    depth: int = 16  # WideResNet depth, 6n+4
    width: int = 4  # WideResNet widening factor
    head_dropout: float = 0.3  # dropout before each task's dense layer (paper)
    block_dropout: float = 0.0  # dropout inside residual blocks (Hendrycks' WRN); off in the paper
    image_size: int = 32  # smaller images are zero-padded to this side, larger ones resized
    # How an image of another size than the model's input_shape is brought to it: "crop" (cover,
    # then the centre), "pad" (fit inside, black borders) or "stretch" (fgad.io.conform).
    resize: str = "crop"
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
    # Training knobs beyond the paper; each default is the paper's but hflip's (docs/configuration.md).
    views_per_image: int | None = None  # None: all views of every task per source image; m: a random m per task
    # Random horizontal flip of training source images: "off" (paper) | "on" | "auto" (colour only:
    # chosen on the development suite, docs/results.md); YAML's on/off (booleans, as
    # ``--set hflip=on`` parses) are taken as "on"/"off".
    hflip: str | bool = "auto"
    jigsaw_permutations: str = "distant"  # "distant": greedy max-min Hamming (paper); "random": uniform
    jigsaw_test_draws: int = 0  # random tile-offset draws scored besides the centred tiles
    # Test-time mirror: every component is the mean over the image and its left-right mirror, and
    # the kNN bank holds the training normals' mirrors too: "off" (paper) | "on" | "auto" (when
    # training flips the images, so that a mirror is as normal as the image: chosen on the
    # development suite, docs/results.md); YAML's on/off booleans are taken as "on"/"off".
    test_mirror: str | bool = "auto"
    task_weights: dict[str, float] | None = None  # loss weight per task name; None: 1 each (the paper's sum)
    # Scoring: the defaults are fgad's improved detector (IMPROVED below), chosen on the development
    # suite (docs/results.md); PAPER_SETTINGS is the paper's (docs/configuration.md, core/scoring.py).
    task_score: str = "logprob"  # per task: "prob" Σ softmax(true) (paper) | "logprob" Σ log softmax | "dirichlet"
    # "sum": eq. 3 on raw task sums (the paper's); "mean": each sum / its terms; "zscore" / "rank":
    # each component standardised with statistics of normal images, then averaged
    score_fusion: str = "zscore"
    normal_stats: str = "heldout"  # zscore/rank statistics from "heldout" normals or the "train" normals
    heldout_fraction: float = 0.2  # share of the normal images held out of training (zscore/rank + heldout)
    feature_knn: int = 1  # k >= 1: a component, mean cosine distance of features to the k nearest normals
    feature_bank_max: int = 4096  # training normals in the kNN banks at most (a seeded subsample)
    # The feature_knn component's weight in a zscore/rank fusion, each task weighing 1 (a weighted
    # mean): 3, chosen on the development suite by a rule fixed before it ran (docs/results.md).
    feature_weight: float = 3.0
    # k >= 1: a component, mean cosine distance of the network's input pixels to the k nearest
    # training normals' (weight 1, never mirrored): chosen on the development suite with test_mirror
    pixel_knn: int = 1
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

    CLEARS: ClassVar[dict[str, str]] = {"epochs": "steps"}

    def __post_init__(self) -> None:
        for key in ("hflip", "test_mirror"):
            if isinstance(getattr(self, key), bool):
                setattr(self, key, "on" if getattr(self, key) else "off")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], owner: str = "detector") -> "DetectorConfig":
        """A checked config from a mapping of keys (missing keys take the defaults)."""
        return check_config(cls, data, owner)

    def validate(self) -> None:
        if not self.tasks:
            raise ConfigError("option 'tasks' must name at least one task")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"option 'tasks' lists a task twice: {list(self.tasks)}")
        if any(v < 1 for v in self.jigsaw_grid):
            raise ConfigError(f"option 'jigsaw_grid' must be two positive integers, got {list(self.jigsaw_grid)}")
        for k in ("depth", "width", "image_size", "batch_size", "score_batch_size", "checkpoint_every", "jigsaw_k",
                  "steps"):
            if getattr(self, k) is not None and getattr(self, k) < 1:
                raise ConfigError(f"option {k!r} must be >= 1, got {getattr(self, k)}")
        if self.steps is None and self.epochs is None:
            raise ConfigError("set a training length: 'epochs' or 'steps'")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"option 'epochs' must be > 0, got {self.epochs}")
        for k in ("head_dropout", "block_dropout"):
            if not 0.0 <= getattr(self, k) < 1.0:
                raise ConfigError(f"option {k!r} must be in [0, 1), got {getattr(self, k)}")
        if not 0.0 < self.shift_fraction < 1.0:
            raise ConfigError(f"option 'shift_fraction' must be in (0, 1), got {self.shift_fraction}")
        if self.lr <= 0:
            raise ConfigError(f"option 'lr' must be > 0, got {self.lr}")
        self._validate_scoring()
        self._validate_training_knobs()

    def _validate_training_knobs(self) -> None:
        if self.views_per_image is not None and self.views_per_image < 1:
            raise ConfigError(f"option 'views_per_image' must be >= 1, got {self.views_per_image}")
        check_choice("hflip", self.hflip, ("off", "on", "auto"))
        if self.hflip == "on" and "geom72" in self.tasks:
            raise ConfigError("option 'hflip' cannot be 'on' with the geom72 task (a flip is one of its classes)")
        check_choice("jigsaw_permutations", self.jigsaw_permutations, ("distant", "random"))
        n_cells = self.jigsaw_grid[0] * self.jigsaw_grid[1]
        if self.jigsaw_permutations == "random" and self.jigsaw_k > math.factorial(n_cells):
            raise ConfigError(f"option 'jigsaw_k' must be <= {math.factorial(n_cells)} (the permutations of "
                              f"{n_cells} cells), got {self.jigsaw_k}")
        check_choice("test_mirror", self.test_mirror, ("off", "on", "auto"))
        if self.jigsaw_test_draws < 0:
            raise ConfigError(f"option 'jigsaw_test_draws' must be >= 0, got {self.jigsaw_test_draws}")
        if self.task_weights is not None:
            unknown = sorted(set(self.task_weights) - set(self.tasks))
            if unknown:
                raise ConfigError(f"option 'task_weights' names task(s) not in 'tasks': {', '.join(unknown)}")
            if any(w < 0 for w in self.task_weights.values()):
                raise ConfigError(f"option 'task_weights' must be >= 0, got {self.task_weights}")
            if all(self.task_weights.get(t, 1.0) == 0 for t in self.tasks):
                raise ConfigError("option 'task_weights' gives every task weight 0")

    def _validate_scoring(self) -> None:
        check_choice("task_score", self.task_score, TASK_SCORES)
        check_choice("score_fusion", self.score_fusion, FUSIONS)
        check_choice("resize", self.resize, RESIZE_RULES)
        check_choice("normal_stats", self.normal_stats, NORMAL_STATS)
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ConfigError(f"option 'heldout_fraction' must be in (0, 1), got {self.heldout_fraction}")
        check_positive(self, "feature_knn", allow_zero=True)
        check_positive(self, "feature_bank_max")
        if self.feature_knn and self.score_fusion not in STANDARDISED_FUSIONS:
            raise ConfigError(f"option 'feature_knn' needs score_fusion 'zscore' or 'rank' (a feature distance "
                              f"cannot be summed with task scores), got score_fusion {self.score_fusion!r}")
        check_positive(self, "feature_weight")  # (without feature_knn there is nothing to weigh: unused)
        check_positive(self, "pixel_knn", allow_zero=True)
        if self.pixel_knn and self.score_fusion not in STANDARDISED_FUSIONS:
            raise ConfigError(f"option 'pixel_knn' needs score_fusion 'zscore' or 'rank' (a pixel distance "
                              f"cannot be summed with task scores), got score_fusion {self.score_fusion!r}")
        if (self.feature_knn or self.pixel_knn) and self.feature_bank_max < 2:
            raise ConfigError(f"option 'feature_bank_max' must be >= 2 with feature_knn or pixel_knn, "
                              f"got {self.feature_bank_max}")


#: The paper's values where the config's defaults (the improved detector) depart from it: its
#: scoring (eqs. 2–4) and its training without flips. ``ours`` and the paper's baselines
#: (``mhrot``, ``jigsaw``...) fix them, and a saved model folder without these keys (written
#: before they existed, when the paper's method was the only one) loads with them.
PAPER_SETTINGS: dict[str, Any] = {"task_score": "prob", "score_fusion": "sum", "feature_knn": 0,
                                  "jigsaw_test_draws": 0, "hflip": "off", "test_mirror": "off", "pixel_knn": 0}
PAPER_SCORING = PAPER_SETTINGS  # the name of the first releases, when only the scoring departed

#: fgad's improved detector (method ``calibrated``, which fixes these): the config's defaults for
#: the scoring keys where it departs from the paper (docs/configuration.md says why,
#: docs/results.md what each measured). Its training departs in one default, ``hflip="auto"``, and
#: its scoring also in ``test_mirror="auto"`` and ``pixel_knn=1``: all three left free, so that
#: models saved before they were the default still load as ``calibrated``.
IMPROVED: dict[str, Any] = {"tasks": ("geometric", "jigsaw"),
                            **{k: getattr(DetectorConfig(), k) for k in
                               ("task_score", "score_fusion", "normal_stats", "feature_knn", "feature_weight",
                                "jigsaw_test_draws")}}


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


# ------------------------------------------------------------------------------ the validator
def check_config(cls: type[C], values: Mapping[str, Any], owner: str) -> C:
    """``cls`` built from ``values`` (missing keys: the defaults), checked.

    Unknown keys, values that do not match their field's annotation (ints are accepted for
    floats, a comma-separated string for a tuple of strings, one number for a fixed-size tuple of
    numbers) and ``cls.validate`` failures raise one-line ConfigErrors prefixed by ``owner``.
    """
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{owner}: unknown config key(s): {', '.join(unknown)}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    cfg = cls(**{k: check_value(f"{owner}: option {k!r}", v, hints[k]) for k, v in values.items()})
    try:
        cfg.validate()
    except ConfigError as exc:
        raise ConfigError(f"{owner}: {exc}") from None
    return cfg


def resolve_preset(cls: type[C], presets: Mapping[str, Mapping[str, Any]], preset: str, options: Mapping[str, Any],
                   owner: str) -> C:
    """The preset's values with ``options`` over them, checked by :func:`check_config`."""
    if preset not in presets:
        raise ConfigError(f"{owner}: unknown preset {preset!r}; known: {', '.join(presets)}")
    values = {**presets[preset], **options}
    for key, cleared in cls.CLEARS.items():
        if key in options and cleared not in options:
            values[cleared] = None
    return check_config(cls, values, owner)


def check_value(what: str, value: Any, annotation: Any) -> Any:
    """``value`` converted to the type ``annotation`` describes, or ConfigError ``"{what} must be ..."``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if value is None:
            if len(kinds) < len(args):
                return None
            raise ConfigError(f"{what} cannot be null")
        if len(kinds) == 1:
            return check_value(what, value, kinds[0])
        for kind in kinds:
            try:
                return check_value(what, value, kind)
            except ConfigError:
                pass
        raise ConfigError(f"{what} must be {' or '.join(map(_describe, kinds))}, got {value!r}")
    if value is None:
        raise ConfigError(f"{what} cannot be null")
    if origin is tuple:
        return _check_tuple(what, value, args)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{what} must be a mapping, got {value!r}")
        return {check_value(what, k, args[0]): check_value(what, v, args[1]) for k, v in value.items()}
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str)}
    if annotation not in ok:
        raise TypeError(f"{what}: unsupported annotation {annotation!r}")
    if not ok[annotation](value):
        raise ConfigError(f"{what} must be {_describe(annotation)}, got {value!r}")
    value = annotation(value)
    if annotation is float and not math.isfinite(value):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return value


def _check_tuple(what: str, value: Any, args: tuple) -> tuple:
    variable = len(args) == 2 and args[1] is Ellipsis
    kinds = [args[0]] if variable else list(args)
    if variable and kinds[0] is str and isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    elif not variable and len(set(kinds)) == 1 and not isinstance(value, (list, tuple, str)):
        value = [value] * len(kinds)  # one number for a square grid
    if not isinstance(value, (list, tuple)) or (not variable and len(value) != len(kinds)):
        raise ConfigError(f"{what} must be {_describe(tuple[tuple(args)])}, got {value!r}")
    per_item = kinds * len(value) if variable else kinds
    try:
        return tuple(check_value(what, v, k) for v, k in zip(value, per_item))
    except ConfigError:
        raise ConfigError(f"{what} must be {_describe(tuple[tuple(args)])}, got {value!r}") from None


def _describe(annotation: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if annotation in names:
        return names[annotation]
    args = typing.get_args(annotation)
    plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
    if len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {plural.get(args[0], 'values')}"
    return f"{len(args)} {plural.get(args[0], 'values')}"


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """For ``validate``: ``value`` must be one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"option {name!r} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_positive(cfg: Any, *names: str, allow_zero: bool = False) -> None:
    """For ``validate``: each named option, unless None, must be > 0 (>= 0 with ``allow_zero``)."""
    for n in names:
        v = getattr(cfg, n)
        if v is not None and ((v < 0) if allow_zero else (v <= 0)):
            raise ConfigError(f"option {n!r} must be {'>= 0' if allow_zero else '> 0'}, got {v}")


# ------------------------------------------------------------------------------ the detector's
def resolve_config(preset: str = "quick", overrides: Mapping[str, Any] | None = None, *,
                   owner: str = "detector") -> DetectorConfig:
    """The preset's detector configuration with ``overrides`` applied and checked."""
    return resolve_preset(DetectorConfig, PRESETS, preset, overrides or {}, owner)


def score_batch_size(cfg: DetectorConfig, device: torch.device) -> int:
    """Source images per scoring batch on ``device``: the config's, or the device's default."""
    if cfg.score_batch_size is not None:
        return cfg.score_batch_size
    return 128 if device.type == "cuda" else 8


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
