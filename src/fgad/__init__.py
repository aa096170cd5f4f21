"""fgad: fine-grained one-class image anomaly detection by multi-task self-supervision.

Scores returned by the public API are anomaly scores: higher = more anomalous.
"""

__version__ = "0.1.0"

from .detector import Detector  # noqa: E402
from .errors import ConfigError, FgadError, InputError, ModelFileError  # noqa: E402

__all__ = ["Detector", "FgadError", "InputError", "ConfigError", "ModelFileError", "__version__"]
