"""Benchmark records: finding, reading and checking the one-JSON-file-per-job results.

A record is a JSON object written by the benchmark runner, found recursively under a results
folder as ``**/records/**/*.json``::

    {"fgad_record": 1,
     "job": {"dataset": "mnist", "method": "ours", "normal_class": 3, "class_name": "3",
             "seed": 0, "preset": "quick"},
     "config": {...}, "versions": {...}, "git_revision": "abc123" or null,
     "timings": {"fit_s": ..., "score_s": ..., "total_s": ...},
     "metrics": {"auroc": ..., "aupr": ..., "aupr_normal": ..., "eer": ...,
                 "apcer_at_bpcer5": ..., "bpcer_at_apcer5": ..., "n_normal": ..., "n_anomalous": ...},
     "task_metrics": {"geometric": {"auroc": ...}, ...},
     "labels": [0, 1, ...],          1 = anomaly
     "scores": [...],                anomaly scores, higher = more anomalous
     "task_scores": {"geometric": [...], ...},   per-task normality sums (higher = more normal)
     "groups": ["live", "print", ...]}           optional, one per test image

Required: ``fgad_record == 1``; ``job`` with ``dataset``, ``method`` (non-empty strings),
``normal_class`` (int or string) and ``seed`` (int); and either ``metrics.auroc`` or
``labels`` + ``scores``. ``labels``, ``scores`` and every ``task_scores`` list, when present,
must have the same length, labels in {0, 1} and finite scores. Anything else is reported as an
invalid record and skipped; one bad file never stops the report.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import InputError

__all__ = [
    "RECORD_VERSION",
    "RecordWarning",
    "find_record_files",
    "read_record",
    "validate_record",
    "load_records",
]

RECORD_VERSION = 1
_ARRAY_KEYS = ("labels", "scores", "task_scores", "groups")


class RecordWarning(UserWarning):
    """Files under a results folder that are not valid records (skipped)."""


# --------------------------------------------------------------------------------------------
# finding files


def find_record_files(results_dir: str | os.PathLike) -> list[Path]:
    """Every ``**/records/**/*.json`` under ``results_dir``, sorted; hidden files and folders
    are skipped. When ``results_dir`` is itself a ``records`` folder, every JSON file in it."""
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"results folder not found: {root}")
    inside_records = root.resolve().name == "records"
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel_parts = Path(dirpath).relative_to(root).parts
        if not (inside_records or "records" in rel_parts):
            continue
        found.extend(Path(dirpath) / f for f in filenames if f.endswith(".json") and not f.startswith("."))
    return sorted(found)


# --------------------------------------------------------------------------------------------
# checking


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _array(values: Any, what: str, n: int | None) -> np.ndarray:
    if not isinstance(values, list):
        raise InputError(f"{what} is not a list")
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} holds values that are not numbers") from None
    if arr.ndim != 1:
        raise InputError(f"{what} is not a flat list of numbers")
    if n is not None and arr.shape[0] != n:
        raise InputError(f"{what} has {arr.shape[0]} values, labels have {n}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} holds NaN, null or infinite values")
    return arr


def validate_record(record: Any) -> dict:
    """Check one parsed record; return it with ``labels`` (int8), ``scores`` and
    ``task_scores`` (float64) as numpy arrays, or raise :class:`InputError` saying what is wrong.

    The input is not modified (a shallow copy is returned).
    """
    if not isinstance(record, dict):
        raise InputError("not a JSON object")
    version = record.get("fgad_record")
    if version is None:
        raise InputError("no 'fgad_record' key (not a benchmark record)")
    if version != RECORD_VERSION or isinstance(version, bool):
        raise InputError(f"unsupported record version {version!r} (this fgad reads {RECORD_VERSION})")
    job = record.get("job")
    if not isinstance(job, dict):
        raise InputError("no 'job' object")
    for key in ("dataset", "method"):
        if not isinstance(job.get(key), str) or not job[key]:
            raise InputError(f"job.{key} is missing or not a non-empty string")
    if not (_is_int(job.get("normal_class")) or (isinstance(job.get("normal_class"), str) and job["normal_class"])):
        raise InputError("job.normal_class is missing or not an integer or string")
    if not _is_int(job.get("seed")):
        raise InputError("job.seed is missing or not an integer")
    if job.get("preset") is not None and not isinstance(job["preset"], str):
        raise InputError("job.preset is not a string")
    metrics = record.get("metrics", {})
    if metrics is None:
        metrics = {}
    if not isinstance(metrics, dict):
        raise InputError("'metrics' is not an object")

    out = dict(record)
    has_labels, has_scores = "labels" in record, "scores" in record
    if has_labels != has_scores:
        raise InputError("'labels' and 'scores' must come together")
    if has_labels:
        labels = _array(record["labels"], "labels", None)
        if not np.isin(labels, (0.0, 1.0)).all():
            raise InputError("labels must be 0 (normal) or 1 (anomaly)")
        n = labels.shape[0]
        if n == 0:
            raise InputError("labels are empty")
        out["labels"] = labels.astype(np.int8)
        out["scores"] = _array(record["scores"], "scores", n)
        task_scores = record.get("task_scores")
        if task_scores is not None:
            if not isinstance(task_scores, dict):
                raise InputError("'task_scores' is not an object")
            out["task_scores"] = {
                str(t): _array(v, f"task_scores.{t}", n) for t, v in task_scores.items()
            }
        groups = record.get("groups")
        if groups is not None and (not isinstance(groups, list) or len(groups) != n):
            raise InputError("'groups' is not a list as long as labels")
    elif _finite_number(metrics.get("auroc")) is None:
        raise InputError("no finite metrics.auroc and no labels/scores to compute it from")
    if "auroc" in metrics and metrics["auroc"] is not None:
        a = _finite_number(metrics["auroc"])
        if a is None or not 0.0 <= a <= 1.0:
            raise InputError(f"metrics.auroc is {metrics['auroc']!r}, not a number in [0, 1]")
    return out


# --------------------------------------------------------------------------------------------
# reading


def read_record(path: str | os.PathLike) -> dict:
    """Read and check one record file (see :func:`validate_record`); InputError if invalid."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text") from None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"invalid or half-written JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise InputError("invalid JSON (nested too deep)") from None
    return validate_record(obj)


def iter_records(results_dir: str | os.PathLike, progress: bool = False) -> Iterator[tuple[Path, dict | None, str]]:
    files = find_record_files(results_dir)
    it: Any = files
    if progress:
        try:
            from tqdm.auto import tqdm

            it = tqdm(files, desc="reading records", unit="file")
        except ImportError:  # pragma: no cover - tqdm is a dependency
            pass
    for path in it:
        try:
            yield path, read_record(path), ""
        except InputError as exc:
            yield path, None, str(exc)


def job_key(record: dict) -> tuple:
    """What identifies a job: (dataset, method, preset, normal_class, seed)."""
    job = record["job"]
    return (job["dataset"], job["method"], job.get("preset") or "", job["normal_class"], job["seed"])


def dedupe(records: list[tuple[Path, Any]], key) -> tuple[list[tuple[Path, Any]], list[tuple[Path, str]]]:
    """Keep the last of several records of the same job (in path order); report the others."""
    last: dict[tuple, int] = {}
    for i, (_, rec) in enumerate(records):
        last[key(rec)] = i
    kept, dropped = [], []
    for i, (path, rec) in enumerate(records):
        j = last[key(rec)]
        if j == i:
            kept.append((path, rec))
        else:
            reason = f"duplicate of the same job in {records[j][0]} (the later file in path order is used)"
            dropped.append((path, reason))
    return kept, dropped


def warn_skipped(skipped: list[tuple[Path, str]], n_files: int, results_dir: str | os.PathLike) -> None:
    if skipped:
        first_path, first_reason = skipped[0]
        warnings.warn(
            f"skipped {len(skipped)} of {n_files} record file(s) under {results_dir} "
            f"(first: {first_path}: {first_reason})",
            RecordWarning,
            stacklevel=3,
        )


def load_records(results_dir: str | os.PathLike, *, with_scores: bool = True, progress: bool = False) -> list[dict]:
    """Every valid benchmark record under ``results_dir`` (``**/records/**/*.json``).

    Files that are not valid records (bad JSON, a half-written file, missing keys...) are
    skipped with one :class:`RecordWarning` that counts them; several records of the same job
    (dataset, method, preset, class, seed) count once, the last in path order. Each record is
    the parsed JSON object plus ``"_path"`` (its file); ``labels`` (1 = anomaly), ``scores``
    (higher = more anomalous) and ``task_scores`` (higher = more normal) are numpy arrays. With
    ``with_scores=False`` these per-image arrays and ``groups`` are dropped after checking, to
    keep a large sweep's memory small. Raises InputError when ``results_dir`` is not a folder;
    an empty list when it holds no valid record.
    """
    records: list[tuple[Path, dict]] = []
    skipped: list[tuple[Path, str]] = []
    n_files = 0
    for path, rec, reason in iter_records(results_dir, progress):
        n_files += 1
        if rec is None:
            skipped.append((path, reason))
            continue
        if not with_scores:
            for k in _ARRAY_KEYS:
                rec.pop(k, None)
        rec["_path"] = str(path)
        records.append((path, rec))
    records, dropped = dedupe(records, job_key)
    warn_skipped(skipped + dropped, n_files, results_dir)
    return [rec for _, rec in records]
