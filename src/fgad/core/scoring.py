"""The paper's score (eqs. 2–4) from the network's outputs on all views of an image.

Per task: s_T(x) = Σ over the task's views of the softmax probability of the view's true
transformation; a task with several heads (MHRot's 3|3|4) adds the true-class probability of
every head (eq. 2, range 0–108 for 36 views × 3 heads). Final: the plain mean of the task sums
over tasks (eq. 3) — the paper's fusion, ``"sum"``. The ``"mean"`` fusion divides each task's
sum by its number of terms first, so every task weighs the same (not the paper's).

These are normality scores: higher = more normal. The public API negates them into anomaly
scores (higher = more anomalous).

This is the one home of that arithmetic: :meth:`fgad.Detector.score_tasks`, the explanations
(:mod:`fgad.tools.explain`), the ONNX graph (:mod:`fgad.tools.export`) and the report's
normalised fusion (:mod:`fgad.report.fusion`) all call these functions. torch is imported inside
the tensor functions only, so that the report, which does not load torch, can call :func:`fuse`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: The fusions of task sums: ``"sum"`` (the paper's eq. 3) and ``"mean"`` (each sum over its terms).
FUSIONS = ("sum", "mean")


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


def _fusion_parts(task_sums: Mapping, fusion: str, task_terms: Mapping[str, float] | None) -> list:
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be 'sum' or 'mean', got {fusion!r}")
    return [s / task_terms[name] if fusion == "mean" else s for name, s in task_sums.items()]


def fuse(task_sums: Mapping[str, np.ndarray | float], fusion: str = "sum",
         task_terms: Mapping[str, float] | None = None) -> np.ndarray:
    """Mean over tasks of the task sums (eq. 3); ``"mean"`` first divides each by its terms.

    ``task_sums``: per task, normality sums (arrays of N, or one number each); ``task_terms``:
    per task, its number of summed terms (``Task.n_score_terms``), needed by ``"mean"``.
    Returns the fused normality score in float64 (higher = more normal).
    """
    parts = _fusion_parts({n: np.asarray(s, dtype=np.float64) for n, s in task_sums.items()}, fusion, task_terms)
    return np.mean(parts, axis=0)


def fuse_tensors(task_sums: Mapping[str, torch.Tensor], fusion: str = "sum",
                 task_terms: Mapping[str, float] | None = None) -> torch.Tensor:
    """:func:`fuse` on tensors, in their dtype (inside a torch graph, e.g. the ONNX export)."""
    import torch

    return torch.stack(_fusion_parts(task_sums, fusion, task_terms), 0).mean(0)
