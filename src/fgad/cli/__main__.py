"""``python -m fgad.cli``: the same as the ``fgad`` command."""

import sys

from .main import main

sys.exit(main())
