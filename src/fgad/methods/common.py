"""Shared plumbing of the baseline methods: typed configs with presets, input handling, files.

Every baseline (DeepGEO, Deep SAD, PIAD, OC-SVM, Isolation Forest) has a config dataclass whose
fields are its options, a table of presets (``paper`` = the official settings, ``quick`` and
``tiny`` scaled down), and saves itself as a folder of safetensors + JSON (never a pickle).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..errors import ConfigError, InputError, ModelFileError
from ..io.fileio import atomic_directory
from ..io.preprocess import as_image_array, check_image_shape
from ..io.provenance import versions  # noqa: F401  (used by the methods as C.versions)
from ..io.safeload import load_state_checked  # noqa: F401  (used by the methods)
from ..io.safeload import read_safetensors as read_tensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


@dataclasses.dataclass
class MethodConfig:
    """Base of the baselines' configs: ``to_dict`` / ``from_dict`` and type-checked overrides."""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    def validate(self) -> None:  # subclasses check ranges and choices
        pass


def _allowed(annotation: str) -> list[str]:
    return [a.strip() for a in str(annotation).split("|")]


def _coerce(method: str, name: str, value: Any, annotation: str) -> Any:
    kinds = _allowed(annotation)
    if value is None:
        if "None" in kinds:
            return None
        raise ConfigError(f"{method}: option {name!r} cannot be null")
    for kind in kinds:
        if kind == "bool" and isinstance(value, bool):
            return value
        if kind == "int" and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if kind == "float" and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            value = float(value)
            if not np.isfinite(value):
                raise ConfigError(f"{method}: option {name!r} must be finite, got {value!r}")
            return value
        if kind == "str" and isinstance(value, str):
            return value
        if kind.startswith(("tuple", "list")) and isinstance(value, (list, tuple)):
            inner = kind[kind.find("[") + 1 : kind.rfind("]")].split(",")[0].strip() if "[" in kind else "Any"
            out = []
            for v in value:
                if inner == "int" and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
                    raise ConfigError(f"{method}: option {name!r} must be a list of integers, got {value!r}")
                if inner == "float" and (isinstance(v, bool) or not isinstance(v, (int, float))):
                    raise ConfigError(f"{method}: option {name!r} must be a list of numbers, got {value!r}")
                out.append(int(v) if inner == "int" else float(v) if inner == "float" else v)
            return tuple(out)
    raise ConfigError(f"{method}: option {name!r} must be {' or '.join(kinds)}, got {value!r}")


def resolve_config(cls: type, presets: dict[str, dict[str, Any]], method: str, preset: str, seed: int,
                   overrides: dict[str, Any]) -> Any:
    """``cls`` with the preset's values, then ``overrides``, type-checked; unknown keys -> ConfigError."""
    if preset not in presets:
        raise ConfigError(f"{method}: unknown preset {preset!r}; known: {', '.join(presets)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        known = ", ".join(k for k in fields if k != "seed")
        raise ConfigError(f"{method}: unknown option(s) {', '.join(unknown)}; known: {known}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"{method}: seed must be an integer, got {seed!r}")
    values = {**presets[preset], **overrides, "seed": int(seed)}
    cfg = cls(**{k: _coerce(method, k, v, fields[k].type) for k, v in values.items()})
    cfg.validate()
    return cfg


def config_from_dict(cls: type, data: dict[str, Any], method: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{method}: saved config has unknown key(s) {', '.join(unknown)}")
    cfg = cls(**{k: _coerce(method, k, v, fields[k].type) for k, v in data.items()})
    cfg.validate()
    return cfg


def check_choice(method: str, name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"{method}: option {name!r} must be one of {', '.join(map(str, choices))}, got {value!r}")


def check_positive(method: str, cfg: Any, *names: str, allow_zero: bool = False) -> None:
    for n in names:
        v = getattr(cfg, n)
        if v is None:
            continue
        if (v < 0) if allow_zero else (v <= 0):
            raise ConfigError(f"{method}: option {n!r} must be {'>= 0' if allow_zero else '> 0'}, got {v}")


# ------------------------------------------------------------------------------------ inputs
def device_of(name: str) -> torch.device:
    from ..core.detector import resolve_device

    return resolve_device(name)


def check_images(images: Any, input_shape: tuple[int, int, int] | None, what: str = "images to score") -> np.ndarray:
    """Validated uint8 N×H×W×C images, of the shape the model was fitted on (when given)."""
    if input_shape is None:
        raise InputError("the detector is not fitted: call fit() or load() first")
    return check_image_shape(as_image_array(images, what), input_shape, what)


def resize_to(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of N×C×H×W to size×size; a no-op when already that size."""
    if tuple(x.shape[-2:]) == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = round(time.perf_counter() - self.t0, 3)


# ------------------------------------------------------------------------------------- files
def save_folder(path: str | Path, fmt: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor],
                extra: dict[str, dict[str, torch.Tensor]] | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (plus ``extra`` safetensors files) atomically."""
    meta = {"format": fmt, "format_version": 1, **meta, "versions": versions()}
    text = json.dumps(meta, indent=2, allow_nan=False, default=_json_default) + "\n"
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / WEIGHTS_FILE),
                  metadata={"format": fmt})
        for name, ts in (extra or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in ts.items()}, str(tmp / name),
                      metadata={"format": fmt})
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_folder(path: str | Path, fmt: str, what: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The config and tensors of a folder written by :func:`save_folder` with format ``fmt``."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelFileError(f"{path}: not a saved {what} model (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path / CONFIG_FILE}: unreadable model config ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise ModelFileError(f"{path / CONFIG_FILE}: not a saved {what} model")
    return meta, read_tensors(path / WEIGHTS_FILE)


def split_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def join_states(**modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    return out


def get_meta(meta: dict[str, Any], key: str, path: str | Path) -> Any:
    try:
        return meta[key]
    except KeyError as exc:
        raise ModelFileError(f"{Path(path) / CONFIG_FILE}: invalid model config (missing {key!r})") from exc
