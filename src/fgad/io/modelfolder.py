"""Saved models: one folder of safetensors plus JSON, written atomically, never a pickle.

Every method saves through :func:`save_model_folder` and loads through :func:`read_model_folder`:
``config.json`` holds the format name and version, the method's resolved config, its preset and
whatever else it needs, plus the library versions and git revision; ``model.safetensors`` holds
its tensors; a method may add more safetensors or JSON files (the detector's training log,
PIAD's VGG layers).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..errors import ModelFileError
from .fileio import atomic_directory
from .provenance import git_revision, versions
from .safeload import read_safetensors

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = 1

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "FORMAT_VERSION", "ModelFolder", "save_model_folder", "read_model_folder",
           "split_state", "join_states"]


def save_model_folder(path: str | Path, fmt: str, meta: dict[str, Any], tensors: dict[str, torch.Tensor], *,
                      extra_tensors: dict[str, dict[str, torch.Tensor]] | None = None,
                      extra_json: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` (``meta`` with format ``fmt``, versions and git revision),
    ``model.safetensors`` and the ``extra_*`` files into the folder ``path``, all or nothing."""
    meta = {"format": fmt, "format_version": FORMAT_VERSION, **meta, "versions": versions(),
            "git_revision": git_revision()}
    text = json.dumps(meta, indent=2, default=_json_default) + "\n"
    with atomic_directory(path) as tmp:
        for name, ts in {WEIGHTS_FILE: tensors, **(extra_tensors or {})}.items():
            save_file({k: v.detach().cpu().contiguous() for k, v in ts.items()}, str(tmp / name),
                      metadata={"format": fmt})
        for name, obj in (extra_json or {}).items():
            (tmp / name).write_text(json.dumps(obj, indent=1, default=_json_default) + "\n", encoding="utf-8")
        (tmp / CONFIG_FILE).write_text(text, encoding="utf-8")
    return Path(path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):  # NumPy arrays and scalars
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@dataclass(frozen=True)
class ModelFolder:
    """A saved model's folder, its config read; tensors are read on demand."""

    path: Path
    meta: dict[str, Any]

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    def get(self, key: str) -> Any:
        """``meta[key]``, or ModelFileError naming the missing key."""
        try:
            return self.meta[key]
        except KeyError:
            raise ModelFileError(f"{self.config_path}: invalid model config (missing {key!r})") from None

    def tensors(self, name: str = WEIGHTS_FILE) -> dict[str, torch.Tensor]:
        """The tensors of the safetensors file ``name`` (default ``model.safetensors``)."""
        return read_safetensors(self.path / name)

    def read_json(self, name: str) -> Any:
        """The JSON file ``name`` of the folder, or None when there is none."""
        file = self.path / name
        if not file.is_file():
            return None
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"{file}: unreadable ({exc})") from exc


def read_model_folder(path: str | Path, fmt: str, what: str) -> ModelFolder:
    """The folder ``path`` written by :func:`save_model_folder` with format ``fmt``.

    Raises:
        ModelFileError: missing files, unreadable JSON, or another format (``what`` names the
            kind of model expected in the message).
    """
    path = Path(path)
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise ModelFileError(f"{path}: not a saved {what} model (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        meta = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path / CONFIG_FILE}: unreadable model config ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"{path / CONFIG_FILE}: not a saved {what} model"
                             + (f" (format {found!r}, expected {fmt!r})" if found else ""))
    return ModelFolder(path, meta)


def split_state(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix.*``, without the prefix (one module's state in a joined file)."""
    p = prefix + "."
    return {k[len(p):]: v for k, v in tensors.items() if k.startswith(p)}


def join_states(**modules: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dicts of ``modules`` in one mapping, each name prefixed by its keyword."""
    out: dict[str, torch.Tensor] = {}
    for name, m in modules.items():
        out.update({f"{name}.{k}": v for k, v in m.state_dict().items()})
    return out
