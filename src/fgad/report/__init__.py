"""Benchmark reports: per-job JSON records aggregated into the paper's tables and ROC plots.

>>> from fgad.report import build_report
>>> result = build_report("results")        # reads results/**/records/**/*.json
>>> print(result.markdown)                  # also in results/report/report.md

Tables (Markdown and CSV): Table 1, mean AUROC per method and dataset; Table 2, the task
ablation (geometric only, jigsaw only, both); Table 3, AUROC / EER / APCER@5%BPCER per dataset
and method; the fusion of the task scores; AUROC per normal class. Numbers are the mean over
the normal classes for each seed, then mean ± sample std over seeds, in percent.

Conventions: label 1 = anomaly (positive class); scores higher = more anomalous.
This package does not import torch or the training code.
"""

from .build import ReportResult, build_report
from .names import dataset_display_name, method_display_name
from .records import RecordWarning, find_record_files, load_records, read_record, validate_record

__all__ = [
    "build_report",
    "ReportResult",
    "load_records",
    "read_record",
    "validate_record",
    "find_record_files",
    "RecordWarning",
    "method_display_name",
    "dataset_display_name",
]
