"""fgad: fine-grained one-class image anomaly detection by multi-task self-supervision.

Scores returned by the public API are anomaly scores: higher = more anomalous.
"""

__version__ = "0.1.0"

from .errors import ConfigError, FgadError, InputError, ModelFileError  # noqa: E402

__all__ = ["Detector", "FgadError", "InputError", "ConfigError", "ModelFileError", "__version__"]


def __getattr__(name):
    # Imported lazily: fgad.metrics, fgad.data and fgad.report must not pay for loading torch.
    if name == "Detector":
        from .core.detector import Detector

        return Detector
    raise AttributeError(f"module 'fgad' has no attribute {name!r}")
