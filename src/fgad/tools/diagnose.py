"""Is a pretext task suited to a dataset? Task accuracy during training, normal vs anomalies.

The paper's Fig. 1 (section 3.1): train a network on each task in isolation and follow, during
training, each head's classification accuracy on held-out *normal* images and on *anomalies*.
A good task is learnt on normal images but stays hard on anomalies; a task solved on both
(translations on fine-grained data) or on neither (an unsolvable task) separates nothing.

>>> from fgad.tools.diagnose import diagnose
>>> result = diagnose(x_normal_train, x_normal_heldout, x_anomalies,
...                   tasks=("rotation", "translation", "jigsaw"), preset="quick", eval_every=50)
>>> result.write("diagnose/")               # diagnose.csv + diagnose.png

Training is ``Detector.fit`` itself (the one loop of :mod:`fgad.core.training`), with its
evaluation hook run every ``eval_every`` steps: the final weights equal those of
``Detector(...).fit`` with the same configuration. Accuracy of a
head = fraction of (image, test-time view) pairs whose argmax is the view's true class.
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..core.config import score_batch_size
from ..core.detector import network_logits
from ..errors import ConfigError, InputError

__all__ = ["diagnose", "DiagnosisResult", "parse_task_sets", "head_accuracies", "CSV_COLUMNS", "DEFAULT_TASK_SETS"]

CSV_COLUMNS = ("task_set", "step", "epoch", "head", "split", "accuracy")
DEFAULT_TASK_SETS = ("rotation", "translation", "jigsaw", "geometric+jigsaw")


def parse_task_sets(tasks: str | Sequence[str | Sequence[str]]) -> list[tuple[str, ...]]:
    """``"rotation,translation,geometric+jigsaw"`` or a list of names / ``a+b`` strings / tuples."""
    from ..tasks import list_tasks

    if isinstance(tasks, str):
        tasks = [t for t in tasks.split(",") if t.strip()]
    sets: list[tuple[str, ...]] = []
    for item in tasks:
        names = tuple(v.strip() for v in item.split("+")) if isinstance(item, str) else tuple(item)
        if not names or any(not n for n in names):
            raise ConfigError(f"empty task name in task set {item!r}")
        unknown = [n for n in names if n not in list_tasks()]
        if unknown:
            raise ConfigError(f"unknown task {unknown[0]!r} in task set {item!r}; known: {', '.join(list_tasks())}")
        if len(set(names)) != len(names):
            raise ConfigError(f"task set {item!r} lists a task twice")
        if names in sets:
            raise ConfigError(f"task set {'+'.join(names)!r} given twice")
        sets.append(names)
    if not sets:
        raise ConfigError("no task set given")
    return sets


def _head_label(task, h: int) -> str:
    from .explain import head_names

    return f"{task.name}/{head_names(task)[h]}"


@torch.inference_mode()
def head_accuracies(net: torch.nn.Module, tasks: dict, x: torch.Tensor, cfg, device: torch.device) -> dict[str, float]:
    """Per ``task/head``, the accuracy over all test-time views of the images ``x`` (N×C×S×S)."""
    was_training = net.training
    net.eval()
    correct: dict[str, float] = {}
    total = 0
    bs = score_batch_size(cfg, device)
    for start in range(0, x.shape[0], bs):
        xb = x[start : start + bs].to(device)
        views = {n: t.views(xb, train=False).flatten(0, 1) for n, t in tasks.items()}
        logits = network_logits(net, views, cfg, device)
        for n, t in tasks.items():
            lg = logits[n].view(xb.shape[0], t.n_views, -1)
            labels = t.labels().to(device)
            start_h = 0
            for h, size in enumerate(t.head_sizes):
                pred = lg[..., start_h : start_h + size].argmax(-1)  # B×V
                key = _head_label(t, h)
                correct[key] = correct.get(key, 0.0) + float((pred == labels[None, :, h]).float().mean(1).sum())
                start_h += size
        total += xb.shape[0]
    if was_training:
        net.train()
    return {k: v / total for k, v in correct.items()}


@dataclass
class DiagnosisResult:
    """Rows ``(task_set, step, epoch, head, split, accuracy)``; ``detectors``: the trained models."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    detectors: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in self.rows:
            w.writerow([r["task_set"], r["step"], f"{r['epoch']:.4f}", r["head"], r["split"], f"{r['accuracy']:.6f}"])
        return buf.getvalue()

    def final(self) -> list[dict[str, Any]]:
        """Per task set and head, the last evaluation: accuracy on normal and on anomaly images."""
        last: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.rows:
            key = (r["task_set"], r["head"])
            cur = last.setdefault(key, {"task_set": r["task_set"], "head": r["head"], "step": -1})
            if r["step"] > cur["step"]:
                cur.clear()
                cur.update({"task_set": r["task_set"], "head": r["head"], "step": r["step"]})
            if r["step"] == cur["step"]:
                cur[r["split"]] = r["accuracy"]
        return list(last.values())

    def table(self) -> str:
        lines = [f"{'task set':<20} {'head':<24} {'step':>6} {'normal':>7} {'anomaly':>7} {'gap':>7}"]
        for r in self.final():
            n, a = r.get("normal"), r.get("anomaly")
            gap = f"{n - a:.3f}" if n is not None and a is not None else "-"
            ns, an = ("-" if v is None else f"{v:.3f}" for v in (n, a))
            lines.append(f"{r['task_set']:<20} {r['head']:<24} {r['step']:>6d} {ns:>7} {an:>7} {gap:>7}")
        return "\n".join(lines)

    def plot_png(self) -> bytes:
        """One panel per task: accuracy vs epoch per head and task set; solid = normal, dashed = anomalies."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        task_names: list[str] = []
        for r in self.rows:
            t = r["head"].split("/")[0]
            if t not in task_names:
                task_names.append(t)
        n = max(1, len(task_names))
        cols = min(n, 3)
        nrows = math.ceil(n / cols)
        fig = Figure(figsize=(4.6 * cols, 3.6 * nrows), dpi=100)
        FigureCanvasAgg(fig)
        curves: dict[tuple[str, str], int] = {}
        for i, tname in enumerate(task_names):
            ax = fig.add_subplot(nrows, cols, i + 1)
            for r in self.rows:
                if r["head"].split("/")[0] == tname:
                    curves.setdefault((r["task_set"], r["head"]), len(curves))
            for (ts, head), colour in curves.items():
                if head.split("/")[0] != tname:
                    continue
                for split, style in (("normal", "-"), ("anomaly", "--")):
                    pts = sorted((r["epoch"], r["accuracy"]) for r in self.rows
                                 if r["task_set"] == ts and r["head"] == head and r["split"] == split)
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], linestyle=style, color=f"C{colour % 10}",
                                marker="." if len(pts) < 30 else None, linewidth=1.3,
                                label=f"{ts}: {head.split('/', 1)[1]}" if split == "normal" else None)
            ax.set_title(tname, fontsize=10)
            ax.set_ylim(0, 1.02)
            ax.set_xlabel("epoch")
            ax.set_ylabel("task accuracy")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7, loc="lower right", title="solid = normal, dashed = anomalies", title_fontsize=7)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()

    def write(self, out_dir: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``diagnose.csv`` and ``diagnose.png`` into ``out_dir`` (atomically)."""
        from ..io.fileio import atomic_write_bytes, atomic_write_text

        out = Path(out_dir)
        csv_path, png_path = out / "diagnose.csv", out / "diagnose.png"
        atomic_write_text(csv_path, self.csv_text())
        atomic_write_bytes(png_path, self.plot_png())
        return csv_path, png_path


def _images(images: Any, what: str) -> np.ndarray:
    from ..io.preprocess import as_image_array

    return as_image_array(images, what)


def diagnose(normal_train: Any, normal_heldout: Any, anomalies: Any = None, *,
             tasks: str | Sequence[str | Sequence[str]] = DEFAULT_TASK_SETS, preset: str = "quick",
             steps: int | None = None, epochs: float | None = None, eval_every: int | None = None,
             overrides: dict[str, Any] | None = None, progress: bool = True,
             keep_detectors: bool = False) -> DiagnosisResult:
    """Train one detector per task set and record each head's accuracy during training.

    Args:
        normal_train: uint8 normal training images (N×H×W or N×H×W×C).
        normal_heldout: uint8 held-out normal images (same shape), split ``"normal"``.
        anomalies: uint8 anomalous images (same shape), split ``"anomaly"``; ``None`` = none.
        tasks: task sets, e.g. ``("rotation", "translation", "geometric+jigsaw")``.
        preset: the detector preset; ``overrides``: other config keys (``seed``, ``device``...).
        steps / epochs: training length (default: the preset's).
        eval_every: steps between evaluations (default: a tenth of the run); evaluations also
            happen before the first step (step 0) and after the last.
        keep_detectors: keep the trained detectors in ``result.detectors`` (by task-set name).

    Returns:
        A :class:`DiagnosisResult`; ``epoch`` = step / steps per epoch.
    """
    sets = parse_task_sets(tasks)
    x_tr = _images(normal_train, "normal training images")
    if x_tr.shape[0] < 2:
        raise InputError("normal training images: at least 2 are needed")
    evals = {"normal": _images(normal_heldout, "held-out normal images")}
    if anomalies is not None:
        evals["anomaly"] = _images(anomalies, "anomalous images")
    for split, xe in evals.items():
        if xe.shape[1:] != x_tr.shape[1:]:
            raise InputError(f"{split} images are {xe.shape[1:]} (H, W, C) but the training images are "
                             f"{x_tr.shape[1:]}")
    if eval_every is not None and (isinstance(eval_every, bool) or int(eval_every) < 1):
        raise ConfigError(f"eval_every must be >= 1, got {eval_every}")
    base = dict(overrides or {})
    if steps is not None:
        base["steps"] = steps
    if epochs is not None:
        base["epochs"] = epochs
    result = DiagnosisResult(info={"preset": preset, "n_train": int(len(x_tr)),
                                   "n_eval": {k: int(len(v)) for k, v in evals.items()}})
    for names in sets:
        det = _train_with_evaluations(x_tr, evals, names, preset, base, eval_every, progress, result.rows)
        if keep_detectors:
            det.info = {**det.info, "diagnose": True}
            result.detectors["+".join(names)] = det
    return result


def _train_with_evaluations(x_train: np.ndarray, evals: dict[str, np.ndarray], names: tuple[str, ...], preset: str,
                            base: dict[str, Any], eval_every: int | None, progress: bool,
                            rows: list[dict[str, Any]]):
    """``Detector.fit`` of one task set, its evaluations appended to ``rows``; returns the detector."""
    from ..core.detector import Detector
    from ..core.training import steps_per_epoch, total_steps
    from ..io.preprocess import to_tensor

    set_name = "+".join(names)
    det = Detector(preset, **{**base, "tasks": names})
    cfg, device = det.config, det.device
    xe = {k: to_tensor(v, cfg.image_size) for k, v in evals.items()}
    n = x_train.shape[0]
    spe = steps_per_epoch(n, cfg.batch_size)
    every = int(eval_every) if eval_every is not None else max(1, total_steps(cfg, n) // 10)

    def evaluate(step: int, net: torch.nn.Module) -> None:
        for split, xs in xe.items():
            for head, acc in head_accuracies(net, det.tasks, xs, cfg, device).items():
                rows.append({"task_set": set_name, "step": step, "epoch": round(step / spe, 4),
                             "head": head, "split": split, "accuracy": float(acc)})

    # Detector.fit's own loop, with the evaluations as its hook: the weights of a plain fit.
    return det.fit(x_train, progress=f"diagnose {set_name}" if progress else False, evaluate=evaluate,
                   eval_every=every)
