"""Aggregation of per-job results into the paper's tables (Markdown for people, CSV for programs).

Every number aggregates the same way: for each seed, the mean over the normal classes that seed
covers; then the mean over seeds, and the sample standard deviation (ddof = 1) of those
per-seed class means when there are two seeds or more. All rates are shown in percent.

The CSV files are tidy: one row per table cell, numeric values in percent at full precision
(four decimals), with the counts of seeds and classes behind each number.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .names import dataset_display_name, dataset_sort_key, method_display_name, method_sort_key

__all__ = ["Entry", "Agg", "Table", "aggregate", "format_cell"]

METRIC_KEYS = ("auroc", "aupr", "aupr_normal", "eer", "apcer_at_bpcer5", "bpcer_at_apcer5")


@dataclass
class Entry:
    """One job's result without its per-image arrays (what the tables need)."""

    path: Path
    dataset: str
    method: str
    preset: str
    normal_class: int | str
    class_name: str
    seed: int
    metrics: dict[str, float | None]
    has_scores: bool = False
    fusion: dict | None = None
    timings: dict = field(default_factory=dict)  # fit_s, score_s, total_s of the job
    overrides: dict = field(default_factory=dict)  # settings changed from the preset (--set)

    @property
    def variant(self) -> tuple[str, str]:
        return (self.method, self.preset)


@dataclass(frozen=True)
class Agg:
    """A mean over classes then seeds (fractions, not percent)."""

    mean: float
    std: float | None  # sample std over the per-seed class means; None with one seed
    n_seeds: int
    n_classes: int  # distinct classes over all seeds
    classes_differ: bool  # the seeds do not all cover the same classes


def class_sort_key(c: int | str) -> tuple:
    return (0, c, "") if isinstance(c, int) else (1, 0, str(c))


def aggregate(values: Iterable[tuple[int, Any, float | None]]) -> Agg | None:
    """Aggregate ``(seed, class, value)`` triples; ``None`` values are left out.

    Per seed the mean over its classes, then the mean and sample std over seeds.
    ``None`` when no value is left.
    """
    by_seed: dict[int, dict[Any, float]] = defaultdict(dict)
    for seed, cls, v in values:
        if v is not None:
            by_seed[seed][cls] = v
    if not by_seed:
        return None
    seed_means = [statistics.fmean(by_seed[s].values()) for s in sorted(by_seed)]
    classes = set().union(*(d.keys() for d in by_seed.values()))
    return Agg(
        mean=statistics.fmean(seed_means),
        std=statistics.stdev(seed_means) if len(seed_means) >= 2 else None,
        n_seeds=len(seed_means),
        n_classes=len(classes),
        classes_differ=len({frozenset(d) for d in by_seed.values()}) > 1,
    )


def pct(v: float | None) -> str:
    return "-" if v is None else f"{100.0 * v:.1f}"


def format_cell(agg: Agg | None, *, classes: bool = True, std: bool = True) -> str:
    """``"96.1 ± 0.3 (10 cls)"``; ``±`` only with two seeds or more; ``*`` when the seeds
    cover different classes; ``"-"`` for no value."""
    if agg is None:
        return "-"
    text = pct(agg.mean)
    if std and agg.std is not None:
        text += f" ± {100.0 * agg.std:.1f}"
    if agg.classes_differ:
        text += "*"
    if classes:
        text += f" ({agg.n_classes} cls)"
    return text


def _num(v: float | None) -> str:
    return "" if v is None else f"{100.0 * v:.4f}"


def agg_csv(agg: Agg | None) -> list:
    if agg is None:
        return ["", "", 0, 0]
    return [_num(agg.mean), _num(agg.std), agg.n_seeds, agg.n_classes]


AGG_CSV_HEADER = ["mean_pct", "std_pct", "n_seeds", "n_classes"]


@dataclass
class Table:
    """A table with its Markdown display and its tidy CSV rows."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    csv_header: list[str]
    csv_rows: list[list[Any]]
    notes: list[str] = field(default_factory=list)
    left_columns: int = 1  # leading text columns (left-aligned); the rest right-aligned

    def markdown_table(self) -> str:
        def esc(s: str) -> str:
            return str(s).replace("|", "\\|")

        lines = ["| " + " | ".join(esc(h) for h in self.header) + " |"]
        lines.append(
            "| " + " | ".join("---" if i < self.left_columns else "---:" for i in range(len(self.header))) + " |"
        )
        lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in self.rows]
        return "\n".join(lines)

    def markdown(self, level: int = 2) -> str:
        parts = [f"{'#' * level} {self.title}", "", self.markdown_table()]
        if self.notes:
            parts += [""] + self.notes
        return "\n".join(parts) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(self.csv_header)
        w.writerows(self.csv_rows)
        return buf.getvalue()

    def as_dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.csv_header, row)) for row in self.csv_rows]


# --------------------------------------------------------------------------------------------
# building the tables


class Results:
    """Entries indexed for the table builders."""

    def __init__(self, entries: Sequence[Entry]) -> None:
        self.entries = list(entries)
        self.multi_preset = len({e.preset for e in self.entries}) > 1
        self.datasets = sorted({e.dataset for e in self.entries}, key=dataset_sort_key)
        self.variants = sorted({e.variant for e in self.entries}, key=lambda v: (method_sort_key(v[0]), v[1]))
        self.presets = sorted({e.preset for e in self.entries})
        self.by_cell: dict[tuple[str, tuple[str, str]], list[Entry]] = defaultdict(list)
        for e in self.entries:
            self.by_cell[(e.dataset, e.variant)].append(e)

    def variant_name(self, variant: tuple[str, str]) -> str:
        method, preset = variant
        name = method_display_name(method)
        if self.multi_preset:
            name += f" [{preset or 'no preset'}]"
        return name

    def agg(self, dataset: str, variant: tuple[str, str], value: Callable[[Entry], float | None]) -> Agg | None:
        return aggregate((e.seed, e.normal_class, value(e)) for e in self.by_cell.get((dataset, variant), []))

    def variants_of(self, dataset: str) -> list[tuple[str, str]]:
        return [v for v in self.variants if (dataset, v) in self.by_cell]


def _metric(key: str) -> Callable[[Entry], float | None]:
    return lambda e: e.metrics.get(key)


def _agg_note(aggs: Iterable[Agg | None]) -> str:
    """The note under a table of aggregated cells: how they aggregate, the seeds per cell."""
    aggs = [a for a in aggs if a is not None]
    counts = sorted({a.n_seeds for a in aggs})
    if counts and counts[-1] >= 2:
        text = ("Mean over the normal classes, then mean ± sample std over seeds (± where a cell has "
                "two seeds or more)")
    else:
        text = "Mean over the normal classes"
    text += "; (n cls): normal classes covered"
    if any(a.classes_differ for a in aggs):
        text += "; * the seeds cover different classes"
    if counts:
        span = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        text += f". Seeds per cell: {span}"
    return text + "."


def table1(res: Results) -> Table:
    """Methods (rows, paper order) × datasets: mean AUROC (%)."""
    header = ["Method"] + [dataset_display_name(d) for d in res.datasets]
    rows, csv_rows, aggs = [], [], []
    for v in res.variants:
        row = [res.variant_name(v)]
        for d in res.datasets:
            a = res.agg(d, v, _metric("auroc"))
            aggs.append(a)
            row.append(format_cell(a))
            if a is not None:
                csv_rows.append([v[0], res.variant_name(v), v[1], d, dataset_display_name(d), *agg_csv(a),
                                 int(a.classes_differ)])
        rows.append(row)
    return Table(
        name="table1",
        title="Table 1. AUROC (%) by method and dataset",
        header=header,
        rows=rows,
        csv_header=["method", "method_name", "preset", "dataset", "dataset_name",
                    *("auroc_" + h for h in AGG_CSV_HEADER), "classes_differ_across_seeds"],
        csv_rows=csv_rows,
        notes=[_agg_note(aggs)],
    )


ABLATION = (("geometric", "Geometric only", "mhrot"), ("jigsaw", "Jigsaw only", "jigsaw"), ("both", "Both", "ours"))


def table2(res: Results) -> Table | None:
    """Task ablation: datasets × {Geometric only (mhrot), Jigsaw only (jigsaw), Both (ours)}."""
    methods = {m for _, _, m in ABLATION}
    rows, csv_rows, aggs = [], [], []
    for d in res.datasets:
        for preset in res.presets:
            if not any((d, (m, preset)) in res.by_cell for m in methods):
                continue
            label = dataset_display_name(d) + (f" [{preset or 'no preset'}]" if res.multi_preset else "")
            row = [label]
            for task_set, _, m in ABLATION:
                a = res.agg(d, (m, preset), _metric("auroc"))
                aggs.append(a)
                row.append(format_cell(a))
                if a is not None:
                    csv_rows.append([d, dataset_display_name(d), preset, task_set, m, *agg_csv(a)])
            rows.append(row)
    if not rows:
        return None
    return Table(
        name="table2",
        title="Table 2. Task ablation, AUROC (%)",
        header=["Dataset", "Geometric only (MHRot)", "Jigsaw only", "Both (Ours)"],
        rows=rows,
        csv_header=["dataset", "dataset_name", "preset", "tasks", "method", *("auroc_" + h for h in AGG_CSV_HEADER)],
        csv_rows=csv_rows,
        notes=[_agg_note(aggs)],
    )


TABLE3_METRICS = (
    ("auroc", "AUROC"),
    ("eer", "EER"),
    ("apcer_at_bpcer5", "APCER@5%BPCER"),
    ("bpcer_at_apcer5", "BPCER@5%APCER"),
)


def table3(res: Results) -> Table:
    """For each dataset and method: AUROC, EER, APCER@5%BPCER, BPCER@5%APCER (%)."""
    rows, csv_rows = [], []
    for d in res.datasets:
        for v in res.variants_of(d):
            aggs = [res.agg(d, v, _metric(k)) for k, _ in TABLE3_METRICS]
            first = next((a for a in aggs if a is not None), None)
            n_cls = first.n_classes if first else 0
            n_seeds = first.n_seeds if first else 0
            rows.append([dataset_display_name(d), res.variant_name(v),
                         *(pct(a.mean if a else None) for a in aggs), str(n_cls), str(n_seeds)])
            csv_rows.append([d, dataset_display_name(d), v[0], res.variant_name(v), v[1],
                             *(_num(a.mean if a else None) for a in aggs), n_cls, n_seeds])
    return Table(
        name="table3",
        title="Table 3. AUROC, EER, APCER at 5% BPCER and BPCER at 5% APCER (%)",
        header=["Dataset", "Method", *(h for _, h in TABLE3_METRICS), "Classes", "Seeds"],
        rows=rows,
        csv_header=["dataset", "dataset_name", "method", "method_name", "preset",
                    *(k + "_pct" for k, _ in TABLE3_METRICS), "n_classes", "n_seeds"],
        csv_rows=csv_rows,
        notes=[
            "Mean over the normal classes, then over seeds. Anomalies are the attacks: APCER = "
            "anomalies accepted as normal, BPCER = normal images rejected; APCER@5%BPCER is taken "
            "at the lowest threshold whose BPCER is at most 5%, BPCER@5%APCER at the highest "
            "threshold whose APCER is at most 5%."
        ],
        left_columns=2,
    )


def timing_table(res: Results) -> Table:
    """For each dataset and method: mean wall time of a job (fit, scoring, total), in seconds."""
    keys = (("fit_s", "Fit (s)"), ("score_s", "Scoring (s)"), ("total_s", "Total (s)"))
    rows, csv_rows = [], []
    for d in res.datasets:
        for v in res.variants_of(d):
            jobs = res.by_cell[(d, v)]
            means = []
            for k, _ in keys:
                vals = [float(e.timings[k]) for e in jobs if isinstance(e.timings.get(k), (int, float))]
                means.append(statistics.fmean(vals) if vals else None)
            rows.append([dataset_display_name(d), res.variant_name(v),
                         *("–" if m is None else f"{m:.1f}" for m in means), str(len(jobs))])
            csv_rows.append([d, v[0], v[1], *("" if m is None else round(m, 3) for m in means), len(jobs)])
    return Table(
        name="timings",
        title="Wall time per job (s)",
        header=["Dataset", "Method", *(h for _, h in keys), "Jobs"],
        rows=rows,
        csv_header=["dataset", "method", "preset", *(k for k, _ in keys), "n_jobs"],
        csv_rows=csv_rows,
        notes=["Mean over the jobs (normal classes × seeds) of each cell, as recorded by the runner."],
        left_columns=2,
    )


def per_class_table(res: Results, dataset: str) -> Table:
    """Classes × methods: AUROC (%) mean over seeds, and the mean over classes."""
    variants = res.variants_of(dataset)
    classes: dict[Any, str] = {}
    cell: dict[tuple[Any, tuple[str, str]], list[float]] = defaultdict(list)
    for v in variants:
        for e in res.by_cell[(dataset, v)]:
            classes.setdefault(e.normal_class, e.class_name)
            if e.metrics.get("auroc") is not None:
                cell[(e.normal_class, v)].append(e.metrics["auroc"])
    ordered = sorted(classes, key=class_sort_key)
    rows, csv_rows = [], []
    col_means: dict[tuple[str, str], list[float]] = defaultdict(list)
    for c in ordered:
        row = [classes[c]]
        for v in variants:
            vals = cell.get((c, v))
            if not vals:
                row.append("-")
                continue
            m = statistics.fmean(vals)
            s = statistics.stdev(vals) if len(vals) >= 2 else None
            col_means[v].append(m)
            row.append(pct(m))
            csv_rows.append([c, classes[c], v[0], res.variant_name(v), v[1], _num(m), _num(s), len(vals)])
        rows.append(row)
    mean_row = ["**Mean**"]
    for v in variants:
        vals = col_means.get(v, [])
        if not vals:
            mean_row.append("-")
            continue
        m = statistics.fmean(vals)
        text = pct(m) + ("" if len(vals) == len(ordered) else f" ({len(vals)} cls)")
        mean_row.append(f"**{text}**")
        csv_rows.append(["mean", "Mean", v[0], res.variant_name(v), v[1], _num(m), "", ""])
    rows.append(mean_row)
    return Table(
        name=f"per_class/{dataset}",
        title=f"{dataset_display_name(dataset)}: AUROC (%) per normal class",
        header=["Class"] + [res.variant_name(v) for v in variants],
        rows=rows,
        csv_header=["normal_class", "class_name", "method", "method_name", "preset",
                    "auroc_mean_pct", "auroc_std_pct", "n_seeds"],
        csv_rows=csv_rows,
        notes=["Mean over seeds; the last row is the mean over the classes shown."],
    )


def finite_or_none(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None
