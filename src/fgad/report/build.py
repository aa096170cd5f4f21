"""build_report: benchmark records in, the paper's tables and ROC plots out."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import metrics as M
from ..errors import InputError
from ..io.fileio import atomic_write_text
from .fusion import fusion_table, record_fusion
from .names import dataset_display_name, method_display_name, safe_file_stem
from .plots import plot_roc
from .records import dedupe, iter_records, read_record, warn_skipped
from .tables import (
    METRIC_KEYS,
    Entry,
    Results,
    Table,
    class_sort_key,
    finite_or_none,
    per_class_table,
    table1,
    table2,
    table3,
    timing_table,
)

__all__ = ["ReportResult", "build_report"]


@dataclass
class ReportResult:
    """What :func:`build_report` wrote.

    ``markdown``: the text of ``report.md``; ``files``: every file written (``report.md``
    last); ``tables``: each table's CSV rows as dicts, by name (``"table1"``, ``"table2"``,
    ``"table3"``, ``"fusion"``, ``"per_class/<dataset>"``); ``skipped``: ``(path, reason)`` of
    every record file left out (invalid, or a duplicate of the same job).
    """

    out_dir: Path
    markdown: str
    files: list[Path] = field(default_factory=list)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    n_records: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def _entry(path: Path, rec: dict) -> Entry:
    """The light form of a checked record; computes missing metrics from labels and scores."""
    job = rec["job"]
    given = rec.get("metrics") or {}
    metrics = {k: finite_or_none(given.get(k)) for k in METRIC_KEYS}
    has_scores = "labels" in rec
    if has_scores and any(v is None for v in metrics.values()):
        try:
            computed = M.evaluate(rec["labels"], rec["scores"])
        except InputError as exc:
            if metrics["auroc"] is None:
                raise InputError(f"no metrics.auroc, and none from labels/scores: {exc}") from None
            computed = {}
        for k in METRIC_KEYS:
            if metrics[k] is None:
                metrics[k] = computed.get(k)
    if metrics["auroc"] is None:  # pragma: no cover - validate_record guarantees one or the other
        raise InputError("no AUROC")
    class_name = job.get("class_name")
    return Entry(
        path=path,
        dataset=job["dataset"],
        method=job["method"],
        preset=job.get("preset") or "",
        normal_class=job["normal_class"],
        class_name=class_name if isinstance(class_name, str) and class_name else str(job["normal_class"]),
        seed=job["seed"],
        metrics=metrics,
        has_scores=has_scores,
        fusion=record_fusion(rec) if has_scores else None,
        timings=rec.get("timings") if isinstance(rec.get("timings"), dict) else {},
        overrides=rec.get("overrides") if isinstance(rec.get("overrides"), dict) else {},
    )


class _Stems:
    """Unique, file-name-safe stems."""

    def __init__(self) -> None:
        self.used: dict[str, Any] = {}

    def __call__(self, name: Any) -> str:
        base = safe_file_stem(str(name))
        stem, i = base, 1
        while stem in self.used and self.used[stem] != name:
            i += 1
            stem = f"{base}_{i}"
        self.used[stem] = name
        return stem


def build_report(
    results_dir: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    max_roc_classes: int = 20,
    progress: bool = False,
) -> ReportResult:
    """Aggregate the benchmark records under ``results_dir`` into tables and plots.

    Reads every ``**/records/**/*.json`` (invalid files are skipped, counted in one
    :class:`~fgad.report.records.RecordWarning` and listed in the report) and writes to
    ``out_dir`` (default ``<results_dir>/report``), every file atomically:

    - ``table1.md/.csv``: methods × datasets, mean AUROC (%);
    - ``table2.md/.csv``: task ablation (MHRot = geometric only, Jigsaw only, Ours = both),
      for the datasets with at least one of them;
    - ``table3.md/.csv``: AUROC, EER, APCER@5%BPCER, BPCER@5%APCER per dataset and method;
    - ``fusion.md/.csv``: plain vs normalised mean of the task scores, and each task alone,
      for records with two task scores or more;
    - ``per_class/<dataset>.md/.csv``: AUROC per normal class and method;
    - ``roc/<dataset>__<class>.png``: ROC curves, one per method (its first seed), for the
      first ``max_roc_classes`` classes of each dataset (0: no plots);
    - ``report.md``: all of the above with headings.

    Aggregation: the mean over classes for each seed, then mean ± sample std over seeds.
    Raises InputError when ``results_dir`` is not a folder or holds no valid record.
    """
    results_dir = Path(results_dir)
    out = Path(out_dir) if out_dir is not None else results_dir / "report"
    if not isinstance(max_roc_classes, int) or isinstance(max_roc_classes, bool) or max_roc_classes < 0:
        raise InputError(f"max_roc_classes must be an integer >= 0, got {max_roc_classes!r}")

    loaded: list[tuple[Path, Entry]] = []
    skipped: list[tuple[Path, str]] = []
    n_files = 0
    for path, rec, reason in iter_records(results_dir, progress):
        n_files += 1
        if rec is not None:
            try:
                loaded.append((path, _entry(path, rec)))
                continue
            except InputError as exc:
                reason = str(exc)
        skipped.append((path, reason))
    loaded, dropped = dedupe(loaded, lambda e: (e.dataset, e.method, e.preset, e.normal_class, e.seed))
    skipped += dropped
    if not loaded:
        extra = f" ({len(skipped)} invalid file(s); first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise InputError(f"no benchmark records under {results_dir}{extra}")
    warn_skipped(skipped, n_files, results_dir)

    res = Results([e for _, e in loaded])
    files: list[Path] = []

    def write(rel: str, text: str) -> Path:
        p = out / rel
        atomic_write_text(p, text)
        files.append(p)
        return p

    tables: list[Table] = [table1(res)]
    t2 = table2(res)
    if t2 is not None:
        tables.append(t2)
    tables.append(table3(res))
    tf = fusion_table(res)
    if tf is not None:
        tables.append(tf)
    tables.append(timing_table(res))
    for t in tables:
        write(f"{t.name}.md", t.markdown(level=1))
        write(f"{t.name}.csv", t.csv())

    ds_stem = _Stems()
    per_class: list[Table] = []
    for d in res.datasets:
        t = per_class_table(res, d)
        t.name = f"per_class/{ds_stem(d)}"
        per_class.append(t)
        write(f"{t.name}.md", t.markdown(level=1))
        write(f"{t.name}.csv", t.csv())

    roc_files = _roc_plots(res, out, ds_stem, max_roc_classes, progress)
    files += [p for p, _ in roc_files]

    md = _report_markdown(results_dir, out, res, tables, t2, per_class, roc_files, skipped)
    write("report.md", md)
    return ReportResult(
        out_dir=out,
        markdown=md,
        files=files,
        tables={t.name: t.as_dicts() for t in tables + per_class},
        n_records=len(res.entries),
        skipped=skipped,
    )


def _roc_plots(res: Results, out: Path, ds_stem: _Stems, max_classes: int, progress: bool) -> list[tuple[Path, str]]:
    jobs = []
    for d in res.datasets:
        classes: dict[Any, str] = {}
        for e in res.entries:
            if e.dataset == d and e.has_scores:
                classes.setdefault(e.normal_class, e.class_name)
        for c in sorted(classes, key=class_sort_key)[:max_classes]:
            jobs.append((d, c, classes[c]))
    it: Any = jobs
    if progress and jobs:
        try:
            from tqdm.auto import tqdm

            it = tqdm(jobs, desc="ROC plots", unit="plot")
        except ImportError:  # pragma: no cover
            pass
    written = []
    class_stems: dict[str, _Stems] = {}
    for d, c, name in it:
        curves = []
        for v in res.variants_of(d):
            cands = [e for e in res.by_cell[(d, v)] if e.normal_class == c and e.has_scores]
            if not cands:
                continue
            first = min(cands, key=lambda e: e.seed)
            try:
                rec = read_record(first.path)  # the arrays were not kept in memory
            except InputError:  # changed since it was read
                continue
            if "labels" not in rec or len(set(rec["labels"].tolist())) < 2:
                continue
            curves.append((res.variant_name(v), rec["labels"], rec["scores"]))
        if not curves:
            continue
        stem = class_stems.setdefault(d, _Stems())(c)
        path = out / "roc" / f"{ds_stem(d)}__{stem}.png"
        plot_roc(path, curves, f"{dataset_display_name(d)}: normal class {name} (first seed)")
        written.append((path, f"{dataset_display_name(d)}, class {name}"))
    return written


def _changed_settings(res: Results) -> list[str]:
    """One line per (dataset, method, preset) whose records changed settings from the preset."""
    seen: dict[tuple[str, str, str], set[str]] = {}
    for e in res.entries:
        if e.overrides:
            text = ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(e.overrides.items()))
            seen.setdefault((e.dataset, e.method, e.preset), set()).add(text)
    return [f"{dataset_display_name(d)}, {method_display_name(m)} ({p or 'preset not recorded'}): "
            + "; ".join(f"`{t}`" for t in sorted(texts))
            for (d, m, p), texts in sorted(seen.items())]


def _report_markdown(results_dir, out, res, tables, t2, per_class, roc_files, skipped) -> str:
    datasets = ", ".join(dataset_display_name(d) for d in res.datasets)
    parts = [
        "# fgad benchmark report",
        "",
        f"{len(res.entries)} records from `{results_dir}`: {len(res.variants)} method(s) on "
        f"{len(res.datasets)} dataset(s) ({datasets})"
        + (f"; {len(skipped)} file(s) skipped, listed at the end." if skipped else "."),
        "",
        "Labels: anomaly = positive class; scores: higher = more anomalous. Rates in percent.",
        "",
    ]
    changed = _changed_settings(res)
    if changed:
        parts.append("Settings changed from the presets (`--set`), read every number with them:\n")
        parts += [f"- {line}" for line in changed]
        parts.append("")
    for t in tables:
        parts.append(t.markdown(level=2))
        if t is tables[0] and t2 is None:
            parts.append("## Table 2. Task ablation\n\nNo records of MHRot, Jigsaw only or Ours.\n")
    parts.append("## Per-class AUROC (%)\n")
    for t in per_class:
        parts.append(t.markdown(level=3))
    if roc_files:
        parts.append("## ROC curves\n")
        parts += [f"- [{label}]({p.relative_to(out).as_posix()})" for p, label in roc_files]
        parts.append("")
    if skipped:
        parts.append("## Skipped files\n")
        shown = skipped[:50]
        parts += [f"- `{p}`: {reason}" for p, reason in shown]
        if len(skipped) > len(shown):
            parts.append(f"- ... and {len(skipped) - len(shown)} more")
        parts.append("")
    return "\n".join(parts).rstrip("\n") + "\n"
