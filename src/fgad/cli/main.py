"""The ``fgad`` command line: the parser and the dispatch to one module per command.

    fgad train IMAGES --out MODEL [--preset quick] [--set key=value ...]
    fgad score MODEL IMAGES --out scores.csv
    fgad list | benchmark | report | calibrate | explain | diagnose | export | gallery

Errors are one line on stderr, never a traceback:

- a user error (bad input, option, file or output path: :class:`fgad.errors.FgadError`, a usage
  error, or an operating-system error such as a permission refused) prints
  ``fgad: error: ...`` and exits with status 2;
- anything else is a bug in fgad: ``fgad: error: internal error: ...`` and status 1
  (``FGAD_TRACEBACK=1`` shows the traceback);
- an interrupt (Ctrl-C) prints ``fgad: interrupted`` and exits with 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from typing import Sequence

from ..errors import FgadError, UsageError
from . import benchmark, calibrate, diagnose, explain, export, gallery, report, score, train
from . import list as list_command

# Each adds its subcommand through ``add_command(subparsers)``, in this order in ``fgad --help``.
COMMANDS = (train, score, list_command, benchmark, report, calibrate, explain, diagnose, export, gallery)
TRACEBACK_ENV = "FGAD_TRACEBACK"


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error raised as :class:`UsageError` (one line, status 2) instead of
    the usage text and ``SystemExit``; subcommand parsers inherit it."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = Parser(prog="fgad", description="Fine-grained one-class image anomaly detection "
                    "by multi-task self-supervision. Scores: higher = more anomalous.")
    parser.add_argument("--version", action="version", version=f"fgad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_command(sub)
    return parser


def one_line(text: object) -> str:
    """``text`` on one line: a message spread over several lines is joined."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def _os_error(exc: OSError) -> str:
    where = f"{exc.filename}: " if exc.filename else ""
    return where + (exc.strerror or str(exc) or type(exc).__name__)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit status (0 success, 1 failure or bug, 2 user error, 130 interrupt)."""
    with warnings.catch_warnings():  # the process's warning filters are restored on return
        # fgad checks the pixel limit itself before decoding (fgad.io.pixellimit); Pillow's own
        # warning, which can still fire while decoding under a raised --max-pixels, is redundant.
        warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit")
        try:
            args = build_parser().parse_args(argv)
            return int(args.func(args) or 0)
        except FgadError as exc:
            print(f"fgad: error: {one_line(exc)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("fgad: interrupted", file=sys.stderr)
            return 130
        except OSError as exc:  # the environment's (permission refused, file gone), not fgad's
            if os.environ.get(TRACEBACK_ENV):
                raise
            print(f"fgad: error: {one_line(_os_error(exc))}", file=sys.stderr)
            return 2
        except Exception as exc:
            if os.environ.get(TRACEBACK_ENV):
                raise
            print(f"fgad: error: internal error: {type(exc).__name__}: {one_line(exc)} (a bug in fgad: please "
                  f"report it; {TRACEBACK_ENV}=1 shows the traceback)", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
