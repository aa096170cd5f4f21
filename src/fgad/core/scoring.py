"""The paper's score (eqs. 2–4) from the network's outputs on all views of an image.

Per task: s_T(x) = Σ over the task's views of the softmax probability of the view's true
transformation; a task with several heads (MHRot's 3|3|4) adds the true-class probability of
every head (eq. 2, range 0–108 for 36 views × 3 heads). Final: the plain mean of the task sums
over tasks (eq. 3) — the paper's fusion, ``"sum"``. The ``"mean"`` fusion divides each task's
sum by its number of terms first, so every task weighs the same (not the paper's).

These are normality scores: higher = more normal. The public API negates them into anomaly
scores (higher = more anomalous).
"""

from __future__ import annotations

import numpy as np
import torch


def true_class_probability_sum(logits: torch.Tensor, labels: torch.Tensor, head_sizes: tuple[int, ...]) -> torch.Tensor:
    """Σ over views and heads of softmax(head logits)[true class].

    Args:
        logits: B×V×sum(head_sizes) outputs of a task's dense layer on the V views of B images.
        labels: V×n_heads true classes of the views.
        head_sizes: sizes of the softmax heads, side by side in the dense layer.

    Returns:
        B sums (float32).
    """
    total = logits.new_zeros(logits.shape[0], dtype=torch.float32)
    start = 0
    for h, size in enumerate(head_sizes):
        probs = torch.softmax(logits[..., start : start + size].float(), dim=-1)  # B×V×size
        idx = labels[:, h].to(logits.device)[None, :, None].expand(logits.shape[0], -1, 1)
        total += probs.gather(-1, idx).squeeze(-1).sum(-1)
        start += size
    return total


def fuse(task_sums: dict[str, np.ndarray], fusion: str = "sum", task_terms: dict[str, int] | None = None) -> np.ndarray:
    """Mean over tasks of the task sums (eq. 3); ``"mean"`` first divides each by its terms."""
    if fusion not in ("sum", "mean"):
        raise ValueError(f"fusion must be 'sum' or 'mean', got {fusion!r}")
    parts = []
    for name, s in task_sums.items():
        s = np.asarray(s, dtype=np.float64)
        parts.append(s / task_terms[name] if fusion == "mean" else s)
    return np.mean(parts, axis=0)
