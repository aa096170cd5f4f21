"""The one home of score math: task scores from the network's outputs, the feature-space
component, normal-image statistics and the fusion of components into one score.

**Task scores** (``task_score``), one normality value per image and task (higher = more normal):

- ``"prob"``, the paper's (eqs. 2 and 4): Σ over the task's views and heads of the softmax
  probability of the view's true class (range 0–108 for MHRot's 36 views × 3 heads), float32;
- ``"logprob"``: Σ over views and heads of log softmax(true class), in float64 from the logits
  (a log-softmax, not the log of a rounded softmax: no saturation at probability 1.0);
- ``"dirichlet"``: Σ over views and heads of Σ_j (α_j − 1)·log p_j, with one Dirichlet α per
  (task, view, head) fitted by maximum likelihood on the training normals' full softmax vectors
  (as GEOM/DeepGEO; probabilities floored at 1e-12 before the log).

**The feature component** (``feature_knn`` = k ≥ 1): minus the mean cosine distance of the
image's L2-normalised backbone features to its k nearest rows of a bank of training normals.
**The pixel component** (``pixel_knn`` = k ≥ 1): the same on the network's input pixels (the
image padded or resized to ``image_size``, in [-1, 1]), flattened.

**Fusion** of the components into one normality score (``score_fusion``):

- ``"sum"``, the paper's eq. 3: the plain mean of the raw task scores; ``"mean"``: each task's
  score divided by its number of terms first (not the paper's);
- ``"zscore"``: each component standardised as (s − mean)/std over reference normal images, then
  averaged; ``"rank"``: each component replaced by 1 − the share of reference normals scoring more
  normal (in [0, 1]), then averaged. The reference values are :class:`NormalStats`.

Every value here is a normality score (higher = more normal), except :func:`percentile_below`,
which compares anomaly scores. The public API negates fused scores into anomaly scores (higher =
more anomalous). :meth:`fgad.Detector.score_components`, the explanations, the ONNX graph and the
report's fusion table all call these functions. torch (and scipy) are imported inside the
functions that need them, so that the report, which does not load torch, can call :func:`fuse`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    import torch

#: The fusions of task sums: ``"sum"`` (the paper's eq. 3) and ``"mean"`` (each sum over its terms).
RAW_FUSIONS = ("sum", "mean")
#: The fusions that standardise each component with statistics of normal images.
STANDARDISED_FUSIONS = ("zscore", "rank")
FUSIONS = RAW_FUSIONS + STANDARDISED_FUSIONS
TASK_SCORES = ("prob", "logprob", "dirichlet")
#: Where the normal statistics of the standardised fusions come from.
NORMAL_STATS = ("heldout", "train")
#: The name of the feature-space component among a detector's components.
FEATURE_COMPONENT = "feature_knn"
#: The name of the pixel-space component among a detector's components.
PIXEL_COMPONENT = "pixel_knn"
#: Probabilities are floored here before a log in the Dirichlet scores (float softmaxes reach 0).
PROB_FLOOR = 1e-12


# ------------------------------------------------------------------------------ task scores
def _head_probabilities(logits: torch.Tensor, labels: torch.Tensor,
                        head_sizes: Sequence[int]) -> Iterator[torch.Tensor]:
    """Per head, B×V float32 softmax probabilities of the views' true classes."""
    import torch

    start = 0
    for h, size in enumerate(head_sizes):
        probs = torch.softmax(logits[..., start : start + size].float(), dim=-1)  # B×V×size
        idx = labels[:, h].to(logits.device)[None, :, None].expand(logits.shape[0], -1, 1)
        yield probs.gather(-1, idx).squeeze(-1)
        start += size


def true_class_probabilities(logits: torch.Tensor, labels: torch.Tensor, head_sizes: Sequence[int]) -> torch.Tensor:
    """Softmax probability of every view's true class on every head: the terms of eq. 2/4.

    Args:
        logits: B×V×sum(head_sizes) outputs of a task's dense layer on the V views of B images.
        labels: V×n_heads true classes of the views.
        head_sizes: sizes of the softmax heads, side by side in the dense layer.

    Returns:
        B×V×n_heads probabilities (float32; higher = the view is recognised, more normal).
    """
    import torch

    return torch.stack(list(_head_probabilities(logits, labels, head_sizes)), -1)


def true_class_probability_sum(logits: torch.Tensor, labels: torch.Tensor, head_sizes: Sequence[int]) -> torch.Tensor:
    """Σ over views and heads of softmax(head logits)[true class]: the task's normality sum.

    Same arguments as :func:`true_class_probabilities`; returns B sums (float32, higher = more
    normal). Summed per head over the views, then over the heads in order.
    """
    import torch

    total = logits.new_zeros(logits.shape[0], dtype=torch.float32)
    for p in _head_probabilities(logits, labels, head_sizes):
        total += p.sum(-1)
    return total


def true_class_log_probability_sum(logits: torch.Tensor, labels: torch.Tensor,
                                   head_sizes: Sequence[int]) -> torch.Tensor:
    """Σ over views and heads of log softmax(head logits)[true class], in float64.

    Same arguments as :func:`true_class_probabilities`; returns B values ≤ 0 (float64, higher =
    more normal). Computed from the logits z as log p_t = −log(1 + Σ_{j≠t} exp(z_j − z_t)) =
    −softplus(logsumexp_{j≠t}(z_j − z_t)): exact to float64 precision also for confident views,
    where a float32 softmax rounds to exactly 1.0 (logit margin past ~17) and even a float64
    ``log_softmax`` rounds to 0 (margin past ~37); here only a margin past ~745 reaches 0.
    """
    import torch
    import torch.nn.functional as F

    total = logits.new_zeros(logits.shape[0], dtype=torch.float64)
    start = 0
    for h, size in enumerate(head_sizes):
        z = logits[..., start : start + size].double()  # B×V×size
        idx = labels[:, h].to(logits.device)[None, :, None].expand(logits.shape[0], -1, 1)
        others = (z - z.gather(-1, idx)).scatter(-1, idx, float("-inf"))  # z_j − z_t, the true class left out
        total -= F.softplus(torch.logsumexp(others, dim=-1), threshold=50.0).sum(-1)
        start += size
    return total


def head_log_probabilities(logits: torch.Tensor, head_sizes: Sequence[int]) -> Iterator[torch.Tensor]:
    """Per head, B×V×size float64 log of the softmax probabilities, floored at :data:`PROB_FLOOR`."""
    import torch

    start = 0
    for size in head_sizes:
        p = torch.softmax(logits[..., start : start + size].double(), dim=-1)
        yield torch.log(p.clamp_min(PROB_FLOOR))
        start += size


def softmax_moments(logits: torch.Tensor, head_sizes: Sequence[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per head, the sums over the B images of p and of log p (floored): two V×size float64
    tensors, the sufficient statistics of one Dirichlet per (view, head) (:func:`fit_dirichlet_stats`)."""
    out = []
    for logp in head_log_probabilities(logits, head_sizes):
        out.append((logp.exp().sum(0), logp.sum(0)))
    return out


def dirichlet_log_likelihood_sum(logits: torch.Tensor, alphas: Sequence[torch.Tensor],
                                 head_sizes: Sequence[int]) -> torch.Tensor:
    """Σ over views and heads of Σ_j (α_vhj − 1)·log p_vhj: the Dirichlet log-likelihoods of
    the views' softmax vectors, without the normalising constants (as GEOM's code).

    ``alphas``: per head, a V×size tensor (one Dirichlet per view). Returns B float64 values
    (higher = more normal); probabilities are floored at :data:`PROB_FLOOR` before the log.
    """
    import torch

    total = logits.new_zeros(logits.shape[0], dtype=torch.float64)
    for alpha, logp in zip(alphas, head_log_probabilities(logits, head_sizes)):
        total += ((alpha.to(logp) - 1.0) * logp).sum((-2, -1))
    return total


def task_score(logits: torch.Tensor, labels: torch.Tensor, head_sizes: Sequence[int], kind: str,
               alphas: Sequence[torch.Tensor] | None = None) -> torch.Tensor:
    """One task's normality score of B images under ``kind`` (:data:`TASK_SCORES`): B values,
    float32 for ``"prob"`` (the paper's), float64 otherwise; ``alphas`` for ``"dirichlet"``."""
    if kind == "prob":
        return true_class_probability_sum(logits, labels, head_sizes)
    if kind == "logprob":
        return true_class_log_probability_sum(logits, labels, head_sizes)
    if kind == "dirichlet":
        if alphas is None:
            raise ValueError("the dirichlet task score needs the fitted Dirichlet parameters")
        return dirichlet_log_likelihood_sum(logits, alphas, head_sizes)
    raise ValueError(f"task score must be one of {', '.join(TASK_SCORES)}, got {kind!r}")


# ------------------------------------------------------------------------------ Dirichlet MLE
def trigamma(x: np.ndarray) -> np.ndarray:
    """ψ'(x) for x > 0, equal to ``scipy.special.polygamma(1, x)`` to ~1e-13 relative.

    Recurrence ψ'(x) = ψ'(x + 1) + 1/x² up to x ≥ 10, then the asymptotic series. It is ~20×
    faster than scipy's Hurwitz-zeta ``polygamma``, which dominated the Dirichlet fit (72 rows ×
    up to 1000 fixed-point iterations × 5 Newton steps).
    """
    x = np.array(x, dtype=np.float64, copy=True)
    acc = np.zeros_like(x)
    small = x < 10.0
    while small.any():
        acc[small] += 1.0 / x[small] ** 2
        x[small] += 1.0
        small = x < 10.0
    inv = 1.0 / x
    inv2 = inv * inv
    tail = 1 / 6 + inv2 * (-1 / 30 + inv2 * (1 / 42 + inv2 * (-1 / 30 + inv2 * 5 / 66)))
    series = inv + inv2 / 2 + inv * inv2 * tail
    return acc + series


def inverse_digamma(y: np.ndarray, newton_steps: int = 5) -> np.ndarray:
    """x with digamma(x) = y (elementwise): Minka's initial guess, then Newton steps."""
    from scipy.special import digamma

    y = np.asarray(y, dtype=np.float64)
    x = np.where(y >= -2.22, np.exp(np.minimum(y, 700.0)) + 0.5, -1.0 / (y - digamma(1.0)))
    for _ in range(newton_steps):
        x = x - (digamma(x) - y) / trigamma(x)
    return x


def fit_dirichlet_stats(mean_p: np.ndarray, mean_log_p: np.ndarray, *, max_iter: int = 1000,
                        tol: float = 1e-9) -> np.ndarray:
    """Dirichlet MLE from the sufficient statistics: the mean of p and the mean of log p.

    Minka's initial guess α = f·s0 with
    s0 = (K−1)(−ψ(1)) / (Σ f log f − Σ f · mean log p), then the fixed point
    α ← ψ⁻¹(ψ(Σα) + mean log p) until ‖Δα‖₂ < ``tol`` (at most ``max_iter`` iterations).
    Arrays of shape (..., K) fit one Dirichlet per row, each stopping on its own.
    """
    from scipy.special import digamma

    f = np.clip(np.asarray(mean_p, dtype=np.float64), PROB_FLOOR, None)
    mean_log = np.asarray(mean_log_p, dtype=np.float64)
    shape = f.shape
    f, mean_log = f.reshape(-1, shape[-1]), mean_log.reshape(-1, shape[-1])
    k = shape[-1]
    denom = np.sum(f * np.log(f), axis=1) - np.sum(f * mean_log, axis=1)
    s0 = (k - 1) * (-digamma(1.0)) / np.maximum(denom, 1e-12)
    alpha = f * s0[:, None]
    active = np.arange(len(alpha))
    for _ in range(max_iter):
        a = alpha[active]
        new = inverse_digamma(digamma(a.sum(1, keepdims=True)) + mean_log[active])
        alpha[active] = new
        active = active[np.linalg.norm(new - a, axis=1) >= tol]
        if not len(active):
            break
    return alpha.reshape(shape)


def fit_dirichlet(p: np.ndarray, **kw: Any) -> np.ndarray:
    """Maximum-likelihood Dirichlet parameters α (K) of N probability vectors ``p`` (N×K).

    Probabilities are clipped to ≥ 1e-12 before the log. See :func:`fit_dirichlet_stats`.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise InputError(f"fit_dirichlet: expected an N×K array of probabilities, got shape {p.shape}")
    logp = np.log(np.clip(p, PROB_FLOOR, None))
    return fit_dirichlet_stats(p.mean(0), logp.mean(0), **kw)


# ------------------------------------------------------------------------------ feature component
def l2_normalise(features: torch.Tensor) -> torch.Tensor:
    """Rows of ``features`` (N×D) divided by their L2 norm, in float64 (a zero row stays zero)."""
    f = features.double()
    return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)


def knn_cosine_distance(queries: torch.Tensor, bank: torch.Tensor, k: int,
                        exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cosine distance (1 − cos) of each query row to its ``k`` nearest bank rows: float64, B.

    ``queries`` (B×D) and ``bank`` (M×D) hold L2-normalised rows. ``k`` is capped at M − 1 (M −
    E with E rows left out per query; at least 1), so that a leave-one-out query and a plain one
    average the same number of neighbours. ``exclude`` (B or B×E, long): for each query, bank
    rows to leave out (the query itself, and its mirror in a bank that holds mirrors, for
    leave-one-out statistics on the training normals), or −1 for none.
    (Higher = farther from the normal images; the component is its negation.)
    """
    import torch

    dist = 1.0 - queries.double() @ bank.double().T  # B×M
    n_left_out = 0
    if exclude is not None:
        exclude = exclude.reshape(len(exclude), -1)
        n_left_out = exclude.shape[1]
        rows, cols = torch.nonzero(exclude >= 0, as_tuple=True)
        dist[rows, exclude[rows, cols]] = float("inf")
    k = max(1, min(int(k), bank.shape[0] - max(1, n_left_out)))
    nearest = torch.topk(dist, k, dim=1, largest=False, sorted=True).values
    return nearest.mean(1)


# ------------------------------------------------------------------------------ normal statistics
@dataclass
class NormalStats:
    """Each component's normality values on reference normal images, for the standardised fusions.

    Attributes:
        source: ``"heldout"`` (normal images held out of training) or ``"train"`` (the training
            normals themselves; leave-one-out for the feature component).
        reference: per component, the sorted float64 normality values of the reference images.
        mean, std: per component, their mean and sample standard deviation (ddof = 1).
        anomaly_scores: sorted fused anomaly scores of the held-out normals (higher = more
            anomalous), for :func:`percentile_below`; None when the source is ``"train"``.
    """

    source: str
    reference: dict[str, np.ndarray]
    mean: dict[str, float]
    std: dict[str, float]
    anomaly_scores: np.ndarray | None = None

    @classmethod
    def fit(cls, components: Mapping[str, np.ndarray], source: str) -> "NormalStats":
        """Statistics of the reference images' components (at least 2 images)."""
        ref = {n: np.sort(np.asarray(v, dtype=np.float64)) for n, v in components.items()}
        if any(len(v) < 2 for v in ref.values()):
            raise InputError("normal statistics need at least 2 reference normal images")
        return cls(source, ref, {n: float(np.mean(v)) for n, v in ref.items()},
                   {n: float(np.std(v, ddof=1)) for n, v in ref.items()})

    @property
    def n(self) -> int:
        return len(next(iter(self.reference.values())))

    def summary(self) -> dict[str, Any]:
        """The JSON part (saved in config.json): source, count, means and standard deviations."""
        return {"source": self.source, "n": self.n, "mean": dict(self.mean), "std": dict(self.std)}

    def tensors(self) -> dict[str, np.ndarray]:
        """The arrays (saved in safetensors): ``reference.<component>``, ``heldout_anomaly_scores``."""
        out = {f"reference.{n}": v for n, v in self.reference.items()}
        if self.anomaly_scores is not None:
            out["heldout_anomaly_scores"] = self.anomaly_scores
        return out

    @classmethod
    def restore(cls, summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray],
                components: Sequence[str]) -> "NormalStats":
        """The statistics saved by :meth:`summary` and :meth:`tensors`; KeyError/ValueError when broken."""
        stats = cls(str(summary["source"]), {n: np.asarray(arrays[f"reference.{n}"], dtype=np.float64)
                                             for n in components},
                    {n: float(summary["mean"][n]) for n in components},
                    {n: float(summary["std"][n]) for n in components})
        if stats.source not in NORMAL_STATS:
            raise ValueError(f"unknown normal statistics source {stats.source!r}")
        if any(v.ndim != 1 or len(v) < 2 for v in stats.reference.values()):
            raise ValueError("normal statistics: malformed reference values")
        if "heldout_anomaly_scores" in arrays:
            stats.anomaly_scores = np.asarray(arrays["heldout_anomaly_scores"], dtype=np.float64)
        return stats


def standardise(values: np.ndarray, stats: NormalStats, component: str, fusion: str) -> np.ndarray:
    """A component's normality values relative to the reference normals (higher = more normal).

    ``"zscore"``: (s − mean) / std (a std of 0, a component constant on the normals, counts as
    1); ``"rank"``: 1 − the share of reference normals whose value is higher (more normal), so
    0 = less normal than every reference image, 1 = at least as normal as all of them.
    """
    values = np.asarray(values, dtype=np.float64)
    if fusion == "zscore":
        std = stats.std[component]
        return (values - stats.mean[component]) / (std if std > 0 else 1.0)
    if fusion == "rank":
        ref = stats.reference[component]
        return np.searchsorted(ref, values, side="right") / len(ref)
    raise ValueError(f"standardised fusion must be one of {', '.join(STANDARDISED_FUSIONS)}, got {fusion!r}")


def percentile_below(anomaly_scores: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each anomaly score, the share (0–100 %) of the sorted reference anomaly scores that are
    strictly lower: 95 = more anomalous than 95 % of the held-out normal images."""
    ref = np.asarray(reference, dtype=np.float64)
    return 100.0 * np.searchsorted(ref, np.asarray(anomaly_scores, dtype=np.float64), side="left") / len(ref)


def heldout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (sorted, int64) of the training images and of the held-out normal images: a share
    ``fraction`` of ``n`` (rounded, at least 2) drawn with ``seed``; at least 2 are left to train."""
    import torch

    from .seeding import generator

    n_held = max(2, int(fraction * n + 0.5))
    if n - n_held < 2:
        raise InputError(f"training images: held-out normal statistics need at least 4 normal images "
                         f"(2 held out, 2 to train), got {n}")
    perm = torch.randperm(n, generator=generator(seed, 5)).numpy().astype(np.int64)
    return np.sort(perm[n_held:]), np.sort(perm[:n_held])


def bank_subsample(n: int, max_size: int, seed: int) -> np.ndarray:
    """Indices (sorted, int64) of at most ``max_size`` of ``n`` images, drawn with ``seed``: the
    training normals whose features make the kNN bank."""
    import torch

    from .seeding import generator

    if n <= max_size:
        return np.arange(n, dtype=np.int64)
    return np.sort(torch.randperm(n, generator=generator(seed, 6)).numpy()[:max_size].astype(np.int64))


# ------------------------------------------------------------------------------ fusion
def _fusion_parts(components: Mapping, fusion: str, task_terms: Mapping[str, float] | None,
                  stats: NormalStats | None) -> list:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if fusion in STANDARDISED_FUSIONS:
        if stats is None:
            raise ValueError(f"fusion {fusion!r} needs statistics of normal images")
        return [standardise(s, stats, name, fusion) for name, s in components.items()]
    return [s / task_terms[name] if fusion == "mean" else s for name, s in components.items()]


def fuse(components: Mapping[str, np.ndarray | float], fusion: str = "sum",
         task_terms: Mapping[str, float] | None = None, stats: NormalStats | None = None,
         weights: Mapping[str, float] | None = None) -> np.ndarray:
    """The fused normality score (float64, higher = more normal): the mean over components.

    ``"sum"`` (eq. 3) averages the raw task scores; ``"mean"`` first divides each by its number
    of terms (``task_terms``: per task, ``Task.n_score_terms``); ``"zscore"`` and ``"rank"``
    first standardise each component with ``stats`` (:func:`standardise`).
    ``components``: per component, normality values (arrays of N, or one number each).
    ``weights``: per component (default 1 each), for a weighted mean Σ w·part / Σ w.
    """
    parts = _fusion_parts({n: np.asarray(s, dtype=np.float64) for n, s in components.items()}, fusion,
                          task_terms, stats)
    if not weights:
        return np.mean(parts, axis=0)
    w = [float(weights.get(n, 1.0)) for n in components]
    return sum(wi * p for wi, p in zip(w, parts)) / sum(w)


def fusion_parts(components: Mapping[str, np.ndarray | float], fusion: str = "sum",
                 task_terms: Mapping[str, float] | None = None,
                 stats: NormalStats | None = None) -> dict[str, np.ndarray]:
    """Per component, the float64 value :func:`fuse` averages (higher = more normal): the raw value
    (``"sum"``), divided by its number of terms (``"mean"``), or standardised (:func:`standardise`).
    Same arguments as :func:`fuse`; the explanations show these beside the raw values."""
    comps = {n: np.asarray(s, dtype=np.float64) for n, s in components.items()}
    return dict(zip(comps, _fusion_parts(comps, fusion, task_terms, stats)))


def standardise_tensor(values: torch.Tensor, stats: NormalStats, component: str, fusion: str) -> torch.Tensor:
    """:func:`standardise` on a tensor, in float64, with the statistics as constants (inside a torch
    graph, e.g. the ONNX export). ``"rank"`` counts the reference values <= each value, which is
    ``searchsorted(side="right")`` on the sorted reference (ONNX has no searchsorted)."""
    import torch

    v = values.double()
    if fusion == "zscore":
        std = stats.std[component]
        return (v - stats.mean[component]) / (std if std > 0 else 1.0)
    if fusion == "rank":
        ref = torch.as_tensor(stats.reference[component], dtype=torch.float64, device=v.device)
        return (ref[None, :] <= v[:, None]).sum(1).double() / len(ref)
    raise ValueError(f"standardised fusion must be one of {', '.join(STANDARDISED_FUSIONS)}, got {fusion!r}")


def fuse_tensors(components: Mapping[str, torch.Tensor], fusion: str = "sum",
                 task_terms: Mapping[str, float] | None = None, stats: NormalStats | None = None,
                 weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """:func:`fuse` on tensors (inside a torch graph, e.g. the ONNX export): the raw fusions in the
    components' dtype, the standardised ones (with ``stats``) in float64 (:func:`standardise_tensor`);
    ``weights`` as :func:`fuse`."""
    import torch

    if fusion not in FUSIONS:
        raise ValueError(f"fuse_tensors: fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    if fusion in STANDARDISED_FUSIONS:
        if stats is None:
            raise ValueError(f"fusion {fusion!r} needs statistics of normal images")
        parts = [standardise_tensor(s, stats, name, fusion) for name, s in components.items()]
    else:
        parts = _fusion_parts(components, fusion, task_terms, None)
    if not weights:
        return torch.stack(parts, 0).mean(0)
    w = [float(weights.get(n, 1.0)) for n in components]
    return sum(wi * p for wi, p in zip(w, parts)) / sum(w)
