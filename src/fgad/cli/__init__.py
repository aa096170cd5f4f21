"""The ``fgad`` command line: one module per command, parsing and printing only."""

from .main import main

__all__ = ["main"]
