"""A scikit-learn style outlier detector over :class:`fgad.Detector` (novelty detection).

    >>> from fgad.integrations.sklearn_estimator import FgadOutlierDetector
    >>> est = FgadOutlierDetector(preset="quick", contamination=0.05).fit(x_train)  # uint8 images
    >>> est.predict(x_test)            # +1 = inlier (normal), -1 = outlier (anomalous)
    >>> est.score_samples(x_test)      # higher = MORE NORMAL (scikit-learn's orientation)
    >>> est.decision_function(x_test)  # score_samples - offset_: negative = outlier

Orientation: scikit-learn's, not fgad's. ``score_samples`` is the negated anomaly score of
:meth:`fgad.Detector.score`: the detector's own components and fusion (higher = more normal;
with the defaults, fgad's improved detector, the mean of the components z-scored against
held-out normal images; with the paper's scoring, ``config=dict(fgad.core.config.PAPER_SETTINGS)``,
the normality s(x) of eq. 3). ``fit`` sets ``offset_`` as scikit-learn's detectors do
(IsolationForest, LocalOutlierFactor): the ``100 * contamination`` percentile of
``score_samples`` on the training images (NumPy's linear interpolation), so that about a
``contamination`` fraction of the training images gets a negative ``decision_function``.
``threshold_ = -offset_`` is the same cut on fgad's anomaly scores (as PyOD's ``threshold_``),
and ``decision_scores_`` holds the training anomaly scores. ``predict`` is −1 where
``decision_function < 0``, i.e. where the anomaly score is *strictly* above ``threshold_``.

A threshold from the training images is optimistic (training images score as more normal than
new normal images); for a controlled false positive rate, calibrate on held-out normal images
with :meth:`fgad.Detector.calibrate` (``est.detector_``).

Input: **images**, uint8 N×H×W (grey) or N×H×W×C (C = 1 or 3), as :class:`fgad.Detector`
takes them; anything else raises :class:`fgad.errors.InputError` (a ``ValueError``). Images of
another size or channels than the training images are refused, as :meth:`fgad.Detector.score`
refuses them, unless ``conform=True``: then ``X`` may also be a list of H×W[×C] images of any
sizes (photos as :func:`fgad.io.imageio.read_image` decodes them), and every image is brought
to the model's size and channels by the model's own rule, as ``fgad score`` brings them
(:mod:`fgad.io.conform`; ``resize`` chooses the rule, ``input_size`` the model's side: by
default the training images' own size when they share one, else 64).

scikit-learn's common checks (``sklearn.utils.estimator_checks``) feed small *tabular float* arrays
(e.g. 30×3 float64), which are not images. The estimator's tags say so (``input_tags.two_d_array =
False``, ``three_d_array = True``), and for that reason ``check_estimator`` runs only
``check_estimator_cloneable`` on it and skips the rest.
``tests/decision/test_decision_estimator.py`` therefore runs the whole list on a test subclass that
claims 2-D input, and requires every check to pass except those in :data:`EXPECTED_FAILED_CHECKS`,
which must fail (so the list stays exact). Checks that pass: cloneable, tags, repr, no attributes
set in ``__init__``, ``check_estimators_unfitted`` (``NotFittedError`` before ``fit``), no errors
in ``__init__`` / ``set_params``, mixin order, ``check_outlier_contamination`` (contamination in
(0, 0.5]), ``check_parameters_default_constructible``, ``check_get_params_invariance``,
``check_set_params``, ``check_fit1d`` (1-D input refused with a ``ValueError``),
``check_non_transformer_estimators_n_iter``; ``check_array_api_input`` is skipped by scikit-learn
itself. The failing ones fit the estimator on tabular data (refused with ``InputError("... expected
uint8 pixels ...")``) or expect scikit-learn's own wording of an input error; the reasons are in
:data:`EXPECTED_FAILED_CHECKS`. The properties they test that make sense for images are tested on
images instead (parameters not overwritten by ``fit``, ``fit`` returns self, fit idempotence,
pickling, ``fit_predict`` = ``fit().predict()``, the fraction of training outliers, order and
subset invariance of the scores, ``__dict__`` unchanged by predicting, ``check_is_fitted`` after
``fit``).
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ..core.config import PRESETS
from ..io.conform import RESIZE_RULES

__all__ = ["FgadOutlierDetector", "EXPECTED_FAILED_CHECKS"]

_TABULAR = ("fits on tabular float data (e.g. 30x3 float64), which is not images: fit raises InputError "
            "'expected uint8 pixels'; tested on images instead")
_MESSAGE = "expects scikit-learn's error message for {what}; fgad's InputError says what images it expects instead"

#: The scikit-learn common checks that fail on this estimator, each with its reason (see the
#: module docstring). Every other check of ``check_estimator`` passes.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    **{name: _TABULAR for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",  # and n_features_in_ has no meaning for images
        "check_estimators_dtypes",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",  # uint8 images cannot hold NaN; float input is refused
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_outliers_fit_predict",
        "check_outliers_train",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    )},
    "check_positive_only_tag_during_fit": "fits on negative tabular data; pixels are uint8 0..255",
    "check_complex_data": _MESSAGE.format(what="complex input ('Complex data not supported')"),
    "check_dtype_object": "fits on an object array of numbers; images must be uint8 (or integers 0..255)",
    "check_estimators_empty_data_messages": _MESSAGE.format(what="0 features"),
    "check_estimator_sparse_tag": _MESSAGE.format(what="sparse input"),
    "check_estimator_sparse_array": _MESSAGE.format(what="sparse input"),
    "check_estimator_sparse_matrix": _MESSAGE.format(what="sparse input"),
    "check_classifier_data_not_an_array": "fits on a tabular array-like wrapper (_NotAnArray); images must be "
                                          "a NumPy array, a tensor or a list of images",
    "check_fit2d_1sample": _MESSAGE.format(what="1 sample"),
    "check_fit2d_1feature": _MESSAGE.format(what="1 feature"),
}


class FgadOutlierDetector(OutlierMixin, BaseEstimator):
    """scikit-learn outlier detector: fgad's multi-task self-supervised model on images.

    Parameters:
        preset: ``"paper"``, ``"quick"`` or ``"tiny"`` (:mod:`fgad.core.config`).
        tasks: e.g. ``("geometric", "jigsaw")`` (the paper's), ``("geometric",)`` (MHRot);
            ``None`` = the preset's.
        steps, epochs, batch_size, image_size, seed, device: the :class:`fgad.core.config.DetectorConfig`
            fields of the same names; ``None`` = the preset's.
        contamination: the expected fraction of outliers among the training images, in
            (0, 0.5]; sets ``offset_`` (see the module docstring).
        conform: bring images of any size and grey/colour to the model's by its rule, in ``fit``
            and when scoring (default: refuse images unlike the training images).
        input_size: with ``conform``, the model's side in pixels; ``None``: the training images'
            own size when they all share one, else 64.
        resize: the model's resize rule, ``"crop"``, ``"pad"`` or ``"stretch"``; ``None`` = the
            preset's (``"crop"``).
        config: any other config overrides, a dict (e.g. ``{"lr": 0.05}``).
        progress: show a progress bar while training.

    Attributes (after ``fit``): ``detector_`` (the fitted :class:`fgad.Detector`),
    ``offset_``, ``threshold_`` (= ``-offset_``, on anomaly scores), ``decision_scores_``
    (anomaly scores of the training images, higher = more anomalous).
    """

    _parameter_constraints: dict = {
        "preset": [StrOptions(set(PRESETS))],
        "tasks": [tuple, list, str, None],
        "steps": [Interval(Integral, 1, None, closed="left"), None],
        "epochs": [Interval(Real, 0, None, closed="neither"), None],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "image_size": [Interval(Integral, 1, None, closed="left"), None],
        "seed": [Interval(Integral, 0, None, closed="left"), None],
        "device": [str, None],
        "contamination": [Interval(Real, 0.0, 0.5, closed="right")],
        "conform": ["boolean"],
        "input_size": [Interval(Integral, 4, None, closed="left"), None],
        "resize": [StrOptions(set(RESIZE_RULES)), None],
        "config": [dict, None],
        "progress": ["boolean"],
    }

    def __init__(self, preset: str = "quick", *, tasks: Any = None, steps: int | None = None,
                 epochs: float | None = None, batch_size: int | None = None, image_size: int | None = None,
                 seed: int | None = 0, device: str | None = "auto", contamination: float = 0.05,
                 conform: bool = False, input_size: int | None = None, resize: str | None = None,
                 config: dict | None = None, progress: bool = False):
        self.preset = preset
        self.tasks = tasks
        self.steps = steps
        self.epochs = epochs
        self.batch_size = batch_size
        self.image_size = image_size
        self.seed = seed
        self.device = device
        self.contamination = contamination
        self.conform = conform
        self.input_size = input_size
        self.resize = resize
        self.config = config
        self.progress = progress

    def _overrides(self) -> dict[str, Any]:
        overrides = dict(self.config or {})
        for key in ("tasks", "steps", "epochs", "batch_size", "image_size", "seed", "device", "resize"):
            value = getattr(self, key)
            if value is not None:
                overrides[key] = tuple(value) if key == "tasks" and isinstance(value, list) else value
        return overrides

    def fit(self, X: Any, y: Any = None) -> "FgadOutlierDetector":
        """Train on images ``X`` (uint8 N×H×W[×C]), normal ones only; ``y`` is ignored."""
        from ..core.detector import Detector

        self._validate_params()  # scikit-learn's InvalidParameterError (a ValueError) on bad values
        det = Detector(preset=self.preset, **self._overrides())
        X = self._training_images(X, det.config.resize)
        det.fit(X, progress=self.progress)
        scores = det.score(X)
        self.detector_ = det
        self.decision_scores_ = scores
        self.offset_ = float(np.percentile(-scores, 100.0 * self.contamination))
        self.threshold_ = -self.offset_
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality of each image: **higher = more normal** (the negated fgad anomaly score)."""
        check_is_fitted(self)
        return -self.detector_.score(X, conform=self.conform)

    def _training_images(self, X: Any, resize: str) -> Any:
        """``X``, or with ``conform`` the images brought to the shape chosen for the model."""
        if not self.conform:
            return X
        from ..io.conform import InputRule, choose_input_shape, shape_of
        from ..io.preprocess import conform_images, image_list

        images = image_list(X, "training images")
        side = self.input_size
        shape = choose_input_shape([shape_of(img) for img in images],
                                   InputRule(size=None if side is None else (side, side), resize=resize))
        return conform_images(images, shape, resize)

    def decision_function(self, X: Any) -> np.ndarray:
        """``score_samples(X) - offset_``: negative = outlier, non-negative = inlier."""
        check_is_fitted(self)
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        """+1 for inliers (normal), −1 for outliers (``decision_function < 0``)."""
        check_is_fitted(self)
        return np.where(self.decision_function(X) < 0, -1, 1)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # images N×H×W (3-D) or N×H×W×C (4-D)
        tags.input_tags.three_d_array = True
        return tags
