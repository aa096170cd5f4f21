"""Public import path of the scikit-learn adapter (``fgad.estimator.FgadOutlierDetector``)."""

from .integrations.sklearn_estimator import FgadOutlierDetector

__all__ = ["FgadOutlierDetector"]
