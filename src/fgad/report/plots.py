"""ROC curve plots (matplotlib, drawn off-screen with the Agg canvas; no pyplot state).

One PNG per (dataset, normal class): one curve per method, from its first seed.
"""

from __future__ import annotations

import io
import os
import textwrap
from typing import Sequence

import numpy as np

from .. import metrics as M
from ..io.fileio import atomic_write_bytes

__all__ = ["plot_roc"]


def plot_roc(
    path: str | os.PathLike,
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    title: str,
) -> None:
    """Write a PNG of ROC curves to ``path`` (atomically).

    ``curves``: ``(label, labels, scores)`` per curve, ``labels`` 1 = anomaly, ``scores``
    higher = more anomalous. The legend shows each curve's AUROC in percent.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.8, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle=":", color="0.6", linewidth=1)
    for label, y, s in curves:
        fpr, tpr, _ = M.roc_points(y, s)
        ax.plot(fpr, tpr, linewidth=1.4, label=f"{label} ({100 * M.auroc(y, s):.1f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("False positive rate (normal images rejected)")
    ax.set_ylabel("True positive rate (anomalies detected)")
    ax.set_title("\n".join(textwrap.wrap(title, 48)), fontsize=10)  # long class names must not be cut off
    ax.legend(loc="lower right", fontsize=8, title="AUROC (%)", title_fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())
