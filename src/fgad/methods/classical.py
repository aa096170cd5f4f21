"""Classical one-class baselines on raw pixels or on a saved fgad backbone's features.

- ``ocsvm``: scikit-learn ``OneClassSVM`` (RBF kernel, ``gamma="scale"``, ``nu=0.1``); anomaly
  score = minus the decision function.
- ``iforest``: scikit-learn ``IsolationForest`` (100 trees, ``max_samples="auto"`` = min(256, N),
  ``random_state`` = the seed); anomaly score = minus ``score_samples`` = 2^(−E[h(x)]/c(ψ)).

Both scores: higher = more anomalous.

Features: ``features="raw"`` (default) flattens the pixels scaled to [0, 1];
``features="wrn:<model folder>"`` uses the penultimate features (the backbone's pooled output)
of a Detector saved with :meth:`fgad.Detector.save`, computed in eval mode on the images
preprocessed as that Detector does. The saved baseline refers to that folder by its absolute
path: keep it where it is.

Saving never pickles: the fitted models are written as arrays and scored again in NumPy after
loading: OC-SVM as support vectors, dual coefficients, intercept and γ
(``Σ_i a_i exp(−γ‖x − s_i‖²) + b``); Isolation Forest as each tree's node arrays (children,
feature, threshold, node sizes) and ``max_samples_`` (path length of the leaf reached plus
c(leaf size), averaged over trees). A loaded model reproduces scikit-learn's scores to ~1e-12.

The ``quick`` preset is the official setting (these methods are cheap); ``tiny`` (tests only)
grows 20 trees instead of 100. (The Deep SAD code's OC-SVM baseline searches γ on the test set; scikit-learn's
``gamma="scale"`` is used instead.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.config import Config, check_positive
from ..errors import ConfigError, ModelFileError
from ..io.modelfolder import ModelFolder
from ..io.preprocess import to_tensor
from ..io.provenance import versions
from .base import AnomalyDetector, FitContext, SavedState
from .common import Timer, check_images


@dataclass
class ClassicalConfig(Config):
    features: str = "raw"  # "raw" or "wrn:<folder of a saved fgad Detector>"
    feature_batch_size: int = 256
    device: str = "auto"
    seed: int = 0

    def validate(self) -> None:
        if self.features != "raw" and not (self.features.startswith("wrn:") and len(self.features) > 4):
            raise ConfigError(f"option 'features' must be 'raw' or 'wrn:<model folder>', got {self.features!r}")
        check_positive(self, "feature_batch_size")


@dataclass
class OCSVMConfig(ClassicalConfig):
    nu: float = 0.1
    gamma: str = "scale"  # "scale", "auto" or a positive number (given as a number or a string)

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.nu <= 1.0:
            raise ConfigError(f"option 'nu' must be in (0, 1], got {self.nu}")
        if self.gamma not in ("scale", "auto"):
            try:
                ok = float(self.gamma) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ConfigError(f"option 'gamma' must be 'scale', 'auto' or a positive number, got {self.gamma!r}")


@dataclass
class IForestConfig(ClassicalConfig):
    n_estimators: int = 100
    max_samples: str = "auto"  # "auto" = min(256, N), or a positive integer (number or string)

    def validate(self) -> None:
        super().validate()
        check_positive(self, "n_estimators")
        if self.max_samples != "auto" and not (self.max_samples.isdigit() and int(self.max_samples) > 0):
            raise ConfigError(f"option 'max_samples' must be 'auto' or a positive integer, got {self.max_samples!r}")


OCSVM_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "quick": {}, "tiny": {}}
IFOREST_PRESETS: dict[str, dict[str, Any]] = {"paper": {}, "quick": {}, "tiny": {"n_estimators": 20}}


def _numbers_as_text(options: dict[str, Any]) -> dict[str, Any]:
    """``gamma`` and ``max_samples`` also take numbers; the config keeps their text."""
    out = dict(options)
    for k in ("gamma", "max_samples"):
        if k in out and isinstance(out[k], (int, float)) and not isinstance(out[k], bool):
            out[k] = repr(out[k])
    return out


class Classical(AnomalyDetector):
    """Base of the classical baselines: features (raw pixels or a saved backbone's), then a
    scikit-learn model kept as arrays and scored in NumPy."""

    file_format: str

    def __init__(self, preset: str = "quick", seed: int = 0, **options: Any):
        super().__init__(preset, seed, **_numbers_as_text(options))

    def _setup(self, config: ClassicalConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.sklearn_model: Any = None  # the fitted scikit-learn model, in memory only (for comparisons)
        self._extractor = None  # the backbone Detector of features="wrn:..."

    # ----------------------------------------------------------------------------- features
    def _features(self, x_np: np.ndarray) -> np.ndarray:
        cfg = self.config
        if cfg.features == "raw":
            return x_np.reshape(len(x_np), -1).astype(np.float64) / 255.0
        det = self._backbone()
        x_np = check_images(x_np, det.input_shape)
        device = self.device
        det.net.to(device).eval()
        out = []
        with torch.inference_mode():
            for i in range(0, len(x_np), cfg.feature_batch_size):
                xb = to_tensor(x_np[i : i + cfg.feature_batch_size], det.config.image_size, device)
                out.append(det.net.backbone(xb).double().cpu().numpy())
        return np.concatenate(out)

    def _backbone(self):
        if self._extractor is None:
            from ..core.detector import Detector

            folder = Path(self.config.features[4:]).expanduser()
            try:
                self._extractor = Detector.load(folder, device=self.config.device)
            except ModelFileError as exc:
                raise ModelFileError(f"features {self.config.features!r}: {exc}") from exc
        return self._extractor

    def fit(self, images: Any, context: FitContext | None = None) -> "Classical":
        """Fit on normal images (uint8 N×H×W[×C])."""
        x_np, _ = self.start_fit(images, context)
        if self.config.features.startswith("wrn:"):
            folder = Path(self.config.features[4:]).expanduser().resolve()
            self.config.features = f"wrn:{folder}"
        with Timer() as timer:
            feats = self._features(x_np)
            self._fit_features(feats)
        self.info = {"n_train": int(len(x_np)), "n_features": int(feats.shape[1]), "fit_s": timer.seconds,
                     "features": self.config.features, "versions": versions(), **self._fit_info()}
        return self

    def score(self, images: Any) -> np.ndarray:
        """Anomaly scores, one per image: higher = more anomalous."""
        x_np = check_images(images, self.input_shape if self.is_fitted else None)
        return self._score_features(self._features(x_np))

    # ----------------------------------------------------------------------------- files
    def fitted_state(self) -> SavedState:
        """The model's arrays; nothing is pickled."""
        arrays, meta = self._arrays()
        return SavedState({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, meta)

    def restore_state(self, folder: ModelFolder) -> None:
        self._set_arrays({k: v.numpy() for k, v in folder.tensors().items()}, folder.meta)


class OCSVM(Classical):
    """One-class SVM (scikit-learn, RBF kernel, ``gamma="scale"``, ``nu=0.1``).

    ``score`` returns minus the decision function: higher = more anomalous.
    """

    name = "ocsvm"
    config_class = OCSVMConfig
    presets = OCSVM_PRESETS
    file_format = "fgad-ocsvm"

    def _setup(self, config: OCSVMConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.support_vectors: np.ndarray | None = None
        self.dual_coef: np.ndarray | None = None
        self.intercept: float = 0.0
        self.gamma: float = 0.0

    @property
    def is_fitted(self) -> bool:
        return self.support_vectors is not None

    def _fit_features(self, feats: np.ndarray) -> None:
        from sklearn.svm import OneClassSVM

        g = self.config.gamma
        svm = OneClassSVM(kernel="rbf", nu=self.config.nu, gamma=g if g in ("scale", "auto") else float(g))
        svm.fit(feats)
        self.sklearn_model = svm  # kept in memory only (for comparisons); never saved
        self.support_vectors = np.asarray(svm.support_vectors_, dtype=np.float64)
        self.dual_coef = np.asarray(svm.dual_coef_, dtype=np.float64).ravel()
        self.intercept = float(np.asarray(svm.intercept_).ravel()[0])
        self.gamma = float(svm._gamma)

    def _fit_info(self) -> dict[str, Any]:
        return {"n_support": int(len(self.support_vectors)), "gamma_value": self.gamma}

    def decision_function(self, feats: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """Σ_i a_i exp(−γ‖x − s_i‖²) + b (scikit-learn's ``decision_function``), in NumPy."""
        sv = self.support_vectors
        sv_sq = np.einsum("ij,ij->i", sv, sv)
        out = []
        for i in range(0, len(feats), chunk):
            x = np.asarray(feats[i : i + chunk], dtype=np.float64)
            d2 = np.einsum("ij,ij->i", x, x)[:, None] + sv_sq[None, :] - 2.0 * x @ sv.T
            out.append(np.exp(-self.gamma * np.maximum(d2, 0.0)) @ self.dual_coef + self.intercept)
        return np.concatenate(out)

    def _score_features(self, feats: np.ndarray) -> np.ndarray:
        return -self.decision_function(feats)

    def _arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return ({"support_vectors": self.support_vectors, "dual_coef": self.dual_coef},
                {"intercept": self.intercept, "gamma_value": self.gamma})

    def _set_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self.support_vectors = arrays["support_vectors"].astype(np.float64)
        self.dual_coef = arrays["dual_coef"].astype(np.float64).ravel()
        if self.support_vectors.ndim != 2 or len(self.dual_coef) != len(self.support_vectors):
            raise ValueError("support vectors and dual coefficients do not match")
        self.intercept = float(meta["intercept"])
        self.gamma = float(meta["gamma_value"])


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): the average path length of an unsuccessful BST search among n points (0 for n ≤ 1)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


TREE_ARRAYS = ("children_left", "children_right", "feature", "threshold", "n_node_samples")


class IForest(Classical):
    """Isolation Forest (scikit-learn, 100 trees, ``max_samples="auto"``, seeded).

    ``score`` returns 2^(−E[h(x)]/c(ψ)) (minus scikit-learn's ``score_samples``): higher = more
    anomalous.
    """

    name = "iforest"
    config_class = IForestConfig
    presets = IFOREST_PRESETS
    file_format = "fgad-iforest"

    def _setup(self, config: IForestConfig, preset: str) -> None:
        super()._setup(config, preset)
        self.trees: list[dict[str, np.ndarray]] | None = None
        self.tree_features: list[np.ndarray | None] = []
        self.max_samples_: int = 0

    @property
    def is_fitted(self) -> bool:
        return self.trees is not None

    def _fit_features(self, feats: np.ndarray) -> None:
        from sklearn.ensemble import IsolationForest

        ms = self.config.max_samples
        forest = IsolationForest(n_estimators=self.config.n_estimators, max_samples=ms if ms == "auto" else int(ms),
                                 random_state=self.config.seed)
        forest.fit(feats)
        self.sklearn_model = forest  # kept in memory only (for comparisons); never saved
        subsample = forest._max_features != feats.shape[1]
        self.trees, self.tree_features = [], []
        for est, feat in zip(forest.estimators_, forest.estimators_features_):
            t = est.tree_
            self.trees.append({k: np.asarray(getattr(t, k)).copy() for k in TREE_ARRAYS})
            self.tree_features.append(np.asarray(feat, dtype=np.int64) if subsample else None)
        self.max_samples_ = int(forest.max_samples_)

    def _fit_info(self) -> dict[str, Any]:
        return {"n_estimators": len(self.trees), "max_samples_": self.max_samples_}

    def _score_features(self, feats: np.ndarray) -> np.ndarray:
        # scikit-learn's trees compare float32 features with float64 thresholds.
        x32 = np.asarray(feats, dtype=np.float32)
        depths = np.zeros(len(x32))
        rows = np.arange(len(x32))
        for tree, feat in zip(self.trees, self.tree_features):
            xs = x32 if feat is None else x32[:, feat]
            left, right = tree["children_left"], tree["children_right"]
            node = np.zeros(len(xs), dtype=np.int64)
            depth = np.zeros(len(xs))
            active = left[node] != -1
            while active.any():
                idx = rows[active]
                nd = node[idx]
                go_left = xs[idx, tree["feature"][nd]] <= tree["threshold"][nd]
                node[idx] = np.where(go_left, left[nd], right[nd])
                depth[idx] += 1.0
                active = left[node] != -1
            depths += depth + average_path_length(tree["n_node_samples"][node])
        denom = len(self.trees) * average_path_length(np.array([self.max_samples_]))[0]
        if denom == 0:
            return np.ones(len(x32))
        return 2.0 ** (-depths / denom)

    def _arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays: dict[str, np.ndarray] = {}
        for i, (tree, feat) in enumerate(zip(self.trees, self.tree_features)):
            for k in TREE_ARRAYS:
                v = tree[k]
                arrays[f"tree{i}.{k}"] = v.astype(np.float64) if k == "threshold" else v.astype(np.int64)
            if feat is not None:
                arrays[f"tree{i}.features"] = feat
        return arrays, {"n_trees": len(self.trees), "max_samples_": self.max_samples_}

    def _set_arrays(self, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        n = int(meta["n_trees"])
        self.trees = [{k: arrays[f"tree{i}.{k}"] for k in TREE_ARRAYS} for i in range(n)]
        self.tree_features = [arrays.get(f"tree{i}.features") for i in range(n)]
        self.max_samples_ = int(meta["max_samples_"])
        for t in self.trees:
            sizes = {len(v) for v in t.values()}
            if len(sizes) != 1:
                raise ValueError("tree arrays of different lengths")
