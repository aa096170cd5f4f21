"""One JSON record per finished job, written atomically; a job with a valid record is done.

Layout: ``OUT/records/<dataset>/<method>/<job key>.json``. A record holds the job, the resolved
config, versions and git revision, timings, metrics, raw test scores and labels (1 = anomaly),
and per-task normality sums.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..io.fileio import atomic_write_json
from .jobs import Job

RECORD_VERSION = 1


def record_path(out_dir: str | Path, job: Job) -> Path:
    return Path(out_dir) / "records" / job.dataset / job.method / f"{job.key}.json"


def is_done(out_dir: str | Path, job: Job, overrides: dict[str, Any] | None = None,
            max_test: int | None = None) -> bool:
    """A job is done when its record parses and is for this job, on a test split capped as
    ``max_test`` asks (and, when given, was run with the same config overrides); anything else
    is redone. A record from before the cap existed used the whole split (None)."""
    path = record_path(out_dir, job)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not (isinstance(rec, dict) and rec.get("fgad_record") == RECORD_VERSION and rec.get("job") == job.to_dict()):
        return False
    if (rec.get("data") or {}).get("ref", {}).get("max_test") != max_test:
        return False
    return overrides is None or rec.get("overrides", {}) == json.loads(json.dumps(overrides))


def write_record(out_dir: str | Path, job: Job, record: dict[str, Any]) -> Path:
    path = record_path(out_dir, job)
    atomic_write_json(path, record)
    return path
