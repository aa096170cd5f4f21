"""Loading saved tensors safely: safetensors only, and checked against what the config builds.

Nothing here unpickles; a file whose tensor names, shapes or dtypes differ from the network the
config describes is refused with one line naming the file and the first mismatch.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ..errors import ModelFileError


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable weights ({exc})") from exc


def check_state(where: str | Path, expected: dict[str, torch.Tensor], got: dict[str, torch.Tensor]) -> None:
    """Refuse ``got`` unless it has exactly the names, shapes and dtypes of ``expected``."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing or extra:
        raise ModelFileError(f"{where}: tensors do not match the config (missing: {', '.join(missing[:3]) or '-'}; "
                             f"unexpected: {', '.join(extra[:3]) or '-'})")
    for k, v in expected.items():
        if got[k].shape != v.shape or got[k].dtype != v.dtype:
            raise ModelFileError(f"{where}: tensor {k} is {tuple(got[k].shape)} {got[k].dtype}, "
                                 f"the config needs {tuple(v.shape)} {v.dtype}")


def load_state_checked(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str | Path) -> None:
    """``load_state_dict(strict=True)`` after :func:`check_state`."""
    check_state(where, module.state_dict(), state)
    module.load_state_dict(state, strict=True)
