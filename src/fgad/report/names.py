"""Display names and table order of methods and datasets; safe file names."""

from __future__ import annotations

import re

__all__ = [
    "method_display_name",
    "method_sort_key",
    "dataset_display_name",
    "dataset_sort_key",
    "safe_file_stem",
    "PAPER_METHOD_ORDER",
]

#: Table 1 row order of the paper (semi-supervised first, the paper's method last).
PAPER_METHOD_ORDER = ("deepsad-75", "deepsad-25", "deepsad-10", "piad", "deepgeo", "mhrot", "ours")
#: Shown after every other method: classical baselines, then the floor detector.
_LAST_METHODS = ("ocsvm", "iforest", "mean-distance")

_METHOD_NAMES = {
    "calibrated": "fgad improved (calibrated)",
    "ours": "Ours",
    "mhrot": "MHRot",
    "jigsaw": "Jigsaw only",
    "deepgeo": "DeepGEO",
    "goad": "GOAD",
    "deepsad": "Deep SAD",
    "deepsvdd": "Deep SVDD",
    "rotation": "Rotation only",
    "translation": "Translation only",
    "piad": "PIAD",
    "ocsvm": "OC-SVM",
    "iforest": "Isolation Forest",
    "mean-distance": "Mean distance (floor)",
}
_DEEPSAD = re.compile(r"deepsad-(\d+(?:\.\d+)?)$")


def method_display_name(method: str) -> str:
    """"ours" -> "Ours", "deepsad-10" -> "Deep SAD (10%)", ...; unknown names as they are."""
    if method in _METHOD_NAMES:
        return _METHOD_NAMES[method]
    m = _DEEPSAD.match(method)
    if m:
        return f"Deep SAD ({m.group(1)}%)"
    return method


def method_sort_key(method: str) -> tuple:
    """Paper order (fgad's improved detector after the paper's method), then Jigsaw only, other
    Deep SAD ratios (high first), unknown methods
    (alphabetical), classical baselines, and the floor detector last."""
    if method in PAPER_METHOD_ORDER:
        return (0, PAPER_METHOD_ORDER.index(method), "")
    if method == "calibrated":  # fgad's improved detector: right after the paper's method
        return (0, len(PAPER_METHOD_ORDER), "")
    if method == "jigsaw":
        return (1, 0, "")
    m = _DEEPSAD.match(method)
    if m:
        return (2, -float(m.group(1)), "")
    if method in _LAST_METHODS:
        return (4, _LAST_METHODS.index(method), "")
    return (3, 0, method)


# paper column order; keys are names lower-cased with everything but letters and digits removed
_DATASETS = [
    (("cifar100",), "CIFAR-100"),
    (("mnist",), "MNIST"),
    (("fashionmnist", "fmnist"), "F-MNIST"),
    (("cub200", "cub", "cub2002011", "caltechbirds200", "caltechbirds", "birds"), "Caltech-Birds 200"),
    (("fonts", "foundertype", "foundertype200"), "Fonts"),
    (("siwm",), "SiW-M"),
    (("antispoof", "antispoofing"), "Anti-spoofing"),
    (("cifar10",), "CIFAR-10"),
]
_DATASET_INDEX = {alias: (i, name) for i, (aliases, name) in enumerate(_DATASETS) for alias in aliases}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def dataset_display_name(dataset: str) -> str:
    """"cifar100" -> "CIFAR-100", "fashion-mnist" -> "F-MNIST", ...; unknown names as they are."""
    hit = _DATASET_INDEX.get(_norm(dataset))
    return hit[1] if hit else dataset


def dataset_sort_key(dataset: str) -> tuple:
    """The paper's column order (CIFAR-100, MNIST, F-MNIST, CUB, Fonts, SiW-M), then others."""
    hit = _DATASET_INDEX.get(_norm(dataset))
    return (0, hit[0], "") if hit else (1, 0, dataset)


def safe_file_stem(name: str) -> str:
    """A file-name-safe version of ``name`` (letters, digits, ``._-``; never empty or hidden)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).lstrip(".")
    return stem or "_"
