"""Fusion of per-task scores: the paper's plain mean of raw sums against a normalised mean.

The paper's score (eq. 3) is the plain mean over tasks of each task's raw sum of softmax
probabilities of the true transformations (eq. 4). The sums have very different ranges: the
geometric task sums 36 views × 3 heads = 108 terms, the jigsaw task 3 views × 1 head = 3, so
the geometric task dominates the mean. The *normalised* mean divides each task's sum by its
number of terms first (each becomes a mean probability in [0, 1]).

Term counts are task facts: they come from the record's ``config["task_terms"]`` (``{task:
n_terms}``, which the benchmark runner writes from the detector's tasks), else from the task
objects themselves (:attr:`fgad.tasks.Task.n_score_terms` of the task built with its default
parameters). The fusion itself is :func:`fgad.core.scoring.fuse`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import metrics as M
from ..core.scoring import fuse
from ..errors import ConfigError, InputError
from .names import dataset_display_name
from .tables import AGG_CSV_HEADER, Results, Table, agg_csv, aggregate, format_cell

__all__ = ["task_terms", "record_fusion", "fusion_table"]

_TASK_ORDER = ("geometric", "jigsaw", "rotation", "translation")


def task_terms(record: dict) -> dict[str, float]:
    """The term count of each task of the record: ``config.task_terms``; for a task of
    ``task_scores`` missing there, the task's own count with its default parameters (a task
    name fgad does not know has none)."""
    terms: dict[str, float] = {}
    config = record.get("config")
    given = config.get("task_terms") if isinstance(config, dict) else None
    if isinstance(given, dict):
        for task, n in given.items():
            if isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0 and np.isfinite(n):
                terms[str(task)] = float(n)
    scored = record.get("task_scores")
    missing = [t for t in scored if t not in terms] if isinstance(scored, dict) else []
    if missing:  # loading the tasks loads torch: only for records without task_terms
        from ..tasks import build_task

        for task in missing:
            try:
                terms[task] = float(build_task(task).n_score_terms)
            except ConfigError:
                pass
    return terms


def record_fusion(record: dict) -> dict | None:
    """AUROCs of one checked record (arrays as numpy) under each fusion, or None when the record
    has fewer than two task scores.

    Returns ``{"record": AUROC of the record's scores (the plain mean of raw sums),
    "normalised": AUROC of minus the mean of sum/terms (None if a task's term count is
    unknown), "tasks": {task: AUROC of minus that task's sum}}``.
    """
    ts = record.get("task_scores")
    if not isinstance(ts, dict) or len(ts) < 2 or "labels" not in record:
        return None
    y = record["labels"]
    terms = task_terms(record)
    try:
        out: dict[str, Any] = {"record": M.auroc(y, record["scores"]), "normalised": None, "tasks": {}}
        for task, s in ts.items():
            out["tasks"][task] = M.auroc(y, -s)  # normality sums -> anomaly scores
        if all(t in terms for t in ts):
            out["normalised"] = M.auroc(y, -fuse(ts, "mean", terms))
    except InputError:  # a single class in the test set: no AUROC
        return None
    return out


def _task_sort_key(task: str) -> tuple:
    return (0, _TASK_ORDER.index(task), "") if task in _TASK_ORDER else (1, 0, task)


def fusion_table(res: Results) -> Table | None:
    """Per dataset and method with two task scores or more: AUROC (%) of the record's score
    (plain mean of raw sums), of the normalised mean, and of each task's score alone."""
    with_fusion = [e for e in res.entries if e.fusion is not None]
    if not with_fusion:
        return None
    tasks = sorted({t for e in with_fusion for t in e.fusion["tasks"]}, key=_task_sort_key)
    header = ["Dataset", "Method", "Plain mean of raw sums (paper)", "Normalised mean",
              *(f"{t.capitalize()} score alone" for t in tasks), "Classes", "Seeds"]
    rows, csv_rows = [], []
    for d in res.datasets:
        for v in res.variants_of(d):
            entries = [e for e in res.by_cell[(d, v)] if e.fusion is not None]
            if not entries:
                continue

            def agg(value, entries=entries):
                return aggregate((e.seed, e.normal_class, value(e)) for e in entries)

            cols = [("record", agg(lambda e: e.fusion["record"])),
                    ("normalised", agg(lambda e: e.fusion["normalised"]))]
            cols += [(t, agg(lambda e, t=t: e.fusion["tasks"].get(t))) for t in tasks]
            base = cols[0][1]
            rows.append([dataset_display_name(d), res.variant_name(v),
                         *(format_cell(a, classes=False) for _, a in cols),
                         str(base.n_classes if base else 0), str(base.n_seeds if base else 0)])
            for name, a in cols:
                if a is not None:
                    csv_rows.append([d, dataset_display_name(d), v[0], res.variant_name(v), v[1], name, *agg_csv(a)])
    return Table(
        name="fusion",
        title="Fusion of the task scores, AUROC (%)",
        header=header,
        rows=rows,
        csv_header=["dataset", "dataset_name", "method", "method_name", "preset", "score",
                    *("auroc_" + h for h in AGG_CSV_HEADER)],
        csv_rows=csv_rows,
        notes=[
            "Plain mean of raw sums: the record's score (the paper's eq. 3). Normalised mean: "
            "each task's sum divided by its number of terms (geometric 36 views × 3 heads = 108, "
            "jigsaw 3 views × 1 head = 3, unless the record's config.task_terms says otherwise) "
            "before the mean. Task alone: that task's sum. Mean over the normal classes, then "
            "mean ± sample std over seeds (± where a cell has two seeds or more); * the seeds "
            "cover different classes."
        ],
        left_columns=2,
    )
