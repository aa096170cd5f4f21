"""Where a result came from: library versions and the git revision of the source tree."""

from __future__ import annotations

import platform
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np


def versions() -> dict[str, str]:
    """Library versions, and the vector instructions torch's CPU kernels use here (``AVX2``,
    ``AVX512``...): a seeded CPU run reruns bit for bit only where these all match, and on hard
    classes another floating-point path can move an AUROC by several points (docs/reliability.md)."""
    import torch

    from .. import __version__

    return {"fgad": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "torch_cpu": torch.backends.cpu.get_cpu_capability()}


@lru_cache(maxsize=1)
def git_revision() -> str | None:
    """The git commit of the fgad source tree when it is a checkout (editable install), else None."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None
