"""``fgad list``: the registered datasets, methods and presets."""

from __future__ import annotations

import argparse
from typing import Any


def run(args: argparse.Namespace) -> int:
    from ..core.config import PRESET_NOTES, PRESETS
    from ..data import DATASETS
    from ..methods import METHODS

    print("datasets:")
    for name, adapter in DATASETS.items():
        print(f"  {name:<16} {getattr(adapter, 'summary', '')}")
    print("methods:")
    for name, m in METHODS.items():
        print(f"  {name:<16} {m.summary}")
    print("presets:")
    for name, p in PRESETS.items():
        changes = ", ".join(f"{k}={v}" for k, v in p.items())
        print(f"  {name:<16} {PRESET_NOTES.get(name, '')}" + (f" ({changes})" if changes else ""))
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("list", help="registered datasets, methods and presets")
    p.set_defaults(func=run)
