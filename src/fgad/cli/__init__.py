"""The ``fgad`` command line: one module per command (``train``, ``score``, ``list``,
``benchmark``, ``report``, ``calibrate``, ``explain``, ``diagnose``, ``export``; listed in
:data:`fgad.cli.main.COMMANDS`), the arguments they share in :mod:`fgad.cli.common`, and the
torchrun entry :mod:`fgad.cli.distributed`. Each parses, calls the library, prints.
"""

from .main import main

__all__ = ["main"]
