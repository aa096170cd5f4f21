"""The one contract every method meets; the benchmark calls it and nothing else.

    >>> from fgad.methods import FitContext, create_method
    >>> det = create_method("deepgeo", preset="tiny", seed=0, steps=100)
    >>> det.fit(normal_images, FitContext(progress=False))   # uint8 N×H×W[×C], normal images only
    >>> scores = det.score(test_images)                       # anomaly scores: higher = more anomalous
    >>> det.save("model/"); det = type(det).load("model/")

A method is an :class:`AnomalyDetector` subclass: its options are the fields of a config
dataclass (``config_class``), given on construction over a named preset (``presets``) and checked
by the one validator, :func:`fgad.core.config.check_config`; an unknown option, or one the method
fixes (the task set of ``ours``, the known fraction of ``deepsad-10``), is a ConfigError. What a
fit may need beyond the normal images travels in a :class:`FitContext`; asking a method for
something it cannot do (checkpoints, labelled anomalies) is a ConfigError too, never ignored.
Saved models are folders of safetensors plus JSON (:mod:`fgad.io.modelfolder`).
"""

from __future__ import annotations

import abc
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, NamedTuple, TypeVar

import numpy as np
import torch

from ..core.config import Config, check_config, resolve_preset
from ..errors import ConfigError, InputError, ModelFileError
from ..io.modelfolder import ModelFolder, read_model_folder, save_model_folder

__all__ = ["AnomalyDetector", "FitContext", "ComponentScores", "SavedState"]

D = TypeVar("D", bound="AnomalyDetector")


@dataclass(frozen=True)
class FitContext:
    """What a fit may use beyond the normal images.

    Attributes:
        progress: show progress bars.
        checkpoint_dir: keep training checkpoints there and resume from the last one; only for
            methods with ``resumable`` (others refuse it).
        labelled_anomalies: images known to be anomalous (uint8, the normal images' shape); only
            for ``semi_supervised`` methods (others refuse them).
        dataset, normal_class: the dataset the normal images come from and their class in it
            (index or name): semi-supervised methods draw their labelled anomalies from the other
            classes' training images. Information only: one-class methods do not use it.
    """

    progress: bool = True
    checkpoint_dir: str | Path | None = None
    labelled_anomalies: Any = None
    dataset: Any = None
    normal_class: int | str | None = None


@dataclass(frozen=True)
class ComponentScores:
    """A method's anomaly scores with the per-component scores they combine.

    ``scores``: anomaly scores, higher = more anomalous. ``components``: one array per component
    (for the self-supervised methods, each task's normality sum: higher = more normal).
    """

    scores: np.ndarray
    components: dict[str, np.ndarray]


class SavedState(NamedTuple):
    """What a fitted method adds to its saved folder (see :meth:`AnomalyDetector.fitted_state`)."""

    tensors: dict[str, torch.Tensor]  # into model.safetensors
    meta: dict[str, Any] = {}  # into config.json
    extra_tensors: dict[str, dict[str, torch.Tensor]] = {}  # more safetensors files, by name


class AnomalyDetector(abc.ABC):
    """Base class of every method: fit on normal images, anomaly scores, save, load.

    Subclasses set the class attributes below and implement :meth:`fit`, :meth:`score`,
    :attr:`is_fitted`, :meth:`fitted_state` and :meth:`restore_state`; their unfitted state is set
    in :meth:`_setup` (extend it with ``super()._setup(...)``), the one place that both the
    constructor and :meth:`load` go through.

    Args:
        preset: ``"paper"`` (the official setting), ``"quick"`` or ``"tiny"`` (scaled down).
        seed: seeds everything random in the method.
        **options: fields of the method's config dataclass.
    """

    name: ClassVar[str]  # the registry name
    config_class: ClassVar[type[Config]]
    presets: ClassVar[Mapping[str, Mapping[str, Any]]]
    fixed: ClassVar[Mapping[str, Any]] = {}  # config values the method sets and options cannot change
    file_format: ClassVar[str]  # the "format" of its saved folders
    resumable: ClassVar[bool] = False  # honours FitContext.checkpoint_dir
    semi_supervised: ClassVar[bool] = False  # uses labelled anomalies (FitContext)

    config: Config
    preset: str
    input_shape: tuple[int, int, int] | None  # H, W, C of the training images
    info: dict[str, Any]  # what fit learnt about the run (kept in benchmark records)

    def __init__(self, preset: str = "quick", seed: int = 0, **options: Any):
        self._setup(self.config_for(preset, seed, options), preset)

    # ----------------------------------------------------------------------------- config
    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The option names the constructor takes (the seed is its own argument)."""
        names = (f.name for f in dataclasses.fields(cls.config_class))
        return tuple(n for n in names if n != "seed" and n not in cls.fixed)

    @classmethod
    def config_for(cls, preset: str, seed: int, options: Mapping[str, Any]) -> Config:
        """The resolved config: the preset's values, then ``options``, the method's fixed values and the seed."""
        fixed = sorted(set(options) & set(cls.fixed))
        if fixed:
            raise ConfigError(f"{cls.name}: option(s) {', '.join(fixed)} are set by the method "
                              f"({', '.join(f'{k}={cls.fixed[k]!r}' for k in fixed)})")
        unknown = sorted(set(options) - set(cls.options()))
        if unknown:
            raise ConfigError(f"{cls.name}: unknown option(s) {', '.join(unknown)}; "
                              f"known: {', '.join(cls.options()) or 'none'}")
        return resolve_preset(cls.config_class, cls.presets, preset, {**options, **cls.fixed, "seed": seed}, cls.name)

    @classmethod
    def from_config(cls: type[D], config: Config, preset: str = "custom") -> D:
        """An unfitted detector with a resolved ``config`` (checked again)."""
        config = check_config(cls.config_class, config.to_dict(), cls.name)
        for k, v in cls.fixed.items():
            if getattr(config, k) != v:
                raise ConfigError(f"{cls.name}: option {k!r} is {v!r} for this method, got {getattr(config, k)!r}")
        obj = cls.__new__(cls)
        obj._setup(config, preset)
        return obj

    def _setup(self, config: Config, preset: str) -> None:
        """Set every attribute to its unfitted value."""
        self.config = config
        self.preset = preset
        self.input_shape = None
        self.info = {}

    def config_dict(self) -> dict[str, Any]:
        """The resolved config, JSON-ready, as benchmark records keep it."""
        return self.config.to_dict()

    @property
    def device(self) -> torch.device:
        """Where the method computes: its ``device`` option ("auto": CUDA when available), else the CPU."""
        from ..core.detector import resolve_device

        if any(f.name == "device" for f in dataclasses.fields(self.config_class)):
            return resolve_device(self.config.device)
        return torch.device("cpu")

    def start_fit(self, images: Any, context: FitContext | None) -> tuple[np.ndarray, FitContext]:
        """The common start of a fit: the context checked, the training images validated (uint8
        N×H×W×C), every random generator seeded from the config, the input shape recorded (scoring
        checks images against it)."""
        from ..core.seeding import seed_everything
        from ..io.preprocess import as_image_array

        context = self.fit_context(context)
        x_np = as_image_array(images, "training images")
        seed_everything(self.config.seed)
        self.input_shape = tuple(int(s) for s in x_np.shape[1:])
        return x_np, context

    def fit_context(self, context: FitContext | None) -> FitContext:
        """``context`` (default: a plain one), refused when it asks what the method cannot do."""
        context = FitContext() if context is None else context
        if context.checkpoint_dir is not None and not self.resumable:
            raise ConfigError(f"{self.name}: cannot checkpoint or resume training (checkpoint_dir given)")
        if context.labelled_anomalies is not None and not self.semi_supervised:
            raise ConfigError(f"{self.name}: a one-class method takes no labelled anomalies")
        return context

    # ----------------------------------------------------------------------------- the contract
    @property
    @abc.abstractmethod
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""

    @abc.abstractmethod
    def fit(self: D, images: Any, context: FitContext | None = None) -> D:
        """Fit on normal images (uint8 N×H×W or N×H×W×C); returns ``self``."""

    @abc.abstractmethod
    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores, one per image (float64): higher = more anomalous."""

    def score_components(self, images: Any, *, progress: bool = False) -> ComponentScores | None:
        """The anomaly scores with their per-component scores, in one pass; None for methods
        without components (call :meth:`score`)."""
        return None

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """The fitted tensors and metadata :meth:`save` writes besides the config."""
        raise NotImplementedError

    def restore_state(self, folder: ModelFolder) -> None:
        """Set the fitted state from ``folder`` (on an unfitted detector with the saved config);
        KeyError, ValueError, TypeError or IndexError mean a broken folder."""
        raise NotImplementedError

    def save(self, path: str | Path) -> Path:
        """Write the model as a folder (safetensors + JSON, never a pickle) at ``path``, atomically."""
        if not self.is_fitted:
            raise InputError("the detector is not fitted: nothing to save")
        state = self.fitted_state()
        meta = {"method": self.name, "preset": self.preset, "config": self.config.to_dict(),
                "input_shape": list(self.input_shape), "info": self.info, **state.meta}
        return save_model_folder(path, self.file_format, meta, state.tensors, extra_tensors=state.extra_tensors)

    @classmethod
    def load(cls: type[D], path: str | Path, *, device: str | None = None) -> D:
        """Load a folder written by :meth:`save`; ``device`` replaces the saved ``device`` option."""
        return cls.from_folder(read_model_folder(path, cls.file_format, cls.name), device=device)

    @classmethod
    def from_folder(cls: type[D], folder: ModelFolder, *, device: str | None = None) -> D:
        """The detector saved in ``folder`` (already read as this method's format)."""
        values = folder.get("config")
        if device is not None:
            if "device" not in {f.name for f in dataclasses.fields(cls.config_class)}:
                raise ConfigError(f"{cls.name}: runs on the CPU; it has no device option")
            values = {**values, "device": device} if isinstance(values, dict) else values
        try:
            if not isinstance(values, dict):
                raise TypeError("'config' is not a mapping")
            config = check_config(cls.config_class, values, cls.name)
            input_shape = tuple(int(v) for v in folder.get("input_shape"))
            if len(input_shape) != 3:
                raise ValueError(f"bad input_shape {list(input_shape)}")
            obj = cls.from_config(config, str(folder.meta.get("preset", "custom")))
        except (ConfigError, ValueError, TypeError) as exc:
            raise ModelFileError(f"{folder.config_path}: invalid model config ({exc})") from exc
        obj.input_shape = input_shape
        obj.info = dict(folder.meta.get("info", {}))
        try:
            obj.restore_state(folder)
        except (KeyError, ValueError, TypeError, IndexError) as exc:
            raise ModelFileError(f"{folder.path}: invalid {cls.name} model ({exc})") from exc
        return obj
