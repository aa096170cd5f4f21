"""The ``fgad`` command line: the parser and the dispatch to one module per command.

    fgad train IMAGES --out MODEL [--preset quick] [--set key=value ...]
    fgad score MODEL IMAGES --out scores.csv
    fgad list | benchmark | report | calibrate | explain | diagnose | export

A user error prints one line ``fgad: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..errors import FgadError
from . import benchmark, calibrate, diagnose, explain, export, gallery, report, score, train
from . import list as list_command

# Each adds its subcommand through ``add_command(subparsers)``, in this order in ``fgad --help``.
COMMANDS = (train, score, list_command, benchmark, report, calibrate, explain, diagnose, export, gallery)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="fgad", description="Fine-grained one-class image anomaly detection "
                                     "by multi-task self-supervision. Scores: higher = more anomalous.")
    parser.add_argument("--version", action="version", version=f"fgad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FgadError as exc:
        print(f"fgad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fgad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
