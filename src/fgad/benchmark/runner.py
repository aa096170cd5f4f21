"""Run benchmark jobs: serially, in a pool of worker processes (one per GPU where there are
GPUs), or one slice of them per machine (``--shard i/n``, for job arrays).

A finished job writes its record atomically and is skipped by any later run with the same output
folder; a job in progress keeps training checkpoints, so a crash loses at most the steps since
the last one.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..io.fileio import atomic_write_text, checkpoint_folder, remove_checkpoints
from ..io.provenance import git_revision, versions
from .jobs import Job, parse_classes, parse_seeds, shard
from .records import RECORD_VERSION, is_done, record_path, write_record


@dataclass(frozen=True)
class DataRef:
    """How to load a dataset: registry name, root and options (so a worker can load it too), and
    the cap on test images per job (None: the whole test split; see :func:`capped_test_indices`)."""

    name: str
    root: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    max_test: int | None = None

    def load(self):
        return _load_cached(self)


_CACHE: dict[tuple, Any] = {}
TEST_CAP_SEED = 12345  # with the class index, seeds which anomalies a capped test keeps


def _load_cached(ref: DataRef):
    from ..data import load_dataset

    key = (ref.name, ref.root, ref.options)
    if key not in _CACHE:
        _CACHE.clear()  # one dataset at a time per process keeps memory bounded
        _CACHE[key] = load_dataset(ref.name, ref.root, **dict(ref.options))
    return _CACHE[key]


@dataclass
class Plan:
    jobs: list[tuple[Job, DataRef]]
    skipped_done: int = 0
    total: int = 0


def method_overrides(method: str, overrides: dict[str, Any] | None) -> dict[str, Any]:
    """The overrides that apply to ``method``: the plain keys that are options of it, then its
    ``METHOD.key`` keys (which win)."""
    from ..methods import get_method

    overrides = overrides or {}
    options = get_method(method).options
    out = {k: v for k, v in overrides.items() if "." not in k and k in options}
    prefix = method + "."
    out.update({k[len(prefix):]: v for k, v in overrides.items() if k.startswith(prefix)})
    return out


def takes_option(methods: list[str], key: str) -> bool:
    """Whether any of ``methods`` has the option ``key``."""
    from ..methods import get_method

    return any(key in get_method(m).options for m in methods)


def check_overrides(methods: list[str], preset: str, overrides: dict[str, Any]) -> None:
    """Fail before any work on an unknown method or preset, a plain key no selected method has as
    an option, a ``METHOD.key`` for a method not run, or a value a method refuses."""
    from ..methods import create_method, get_method

    for m in methods:
        get_method(m)
    for key in overrides:
        if "." in key:
            if key.split(".", 1)[0] not in methods:
                raise ConfigError(f"--set {key}: {key.split('.', 1)[0]!r} is not among the methods run "
                                  f"({', '.join(methods)})")
        elif not takes_option(methods, key):
            raise ConfigError(f"--set {key}: none of the methods run ({', '.join(methods)}) has this option")
    for m in methods:
        create_method(m, preset=preset, seed=0, **method_overrides(m, overrides))  # checks its options


def plan_jobs(datasets: list[DataRef], methods: list[str], classes: str | None, seeds: str | None, preset: str,
              out_dir: str | Path, shard_spec: tuple[int, int] | None = None,
              overrides: dict[str, Any] | None = None) -> Plan:
    """Every (dataset, method, class, seed) job, this shard's slice, minus the finished ones.

    A record made with other config overrides does not count as finished: the job is redone.
    """
    from ..methods import get_method

    for m in methods:
        get_method(m)  # unknown names fail before any work
    seed_list = parse_seeds(seeds)
    jobs: list[tuple[Job, DataRef]] = []
    for ref in datasets:
        ds = ref.load()
        for c in parse_classes(classes, list(ds.class_names)):
            for seed in seed_list:
                for m in methods:
                    jobs.append((Job(ds.name, m, c, str(ds.class_names[c]), seed, preset), ref))
    total = len(jobs)
    if shard_spec is not None:
        jobs = shard(jobs, *shard_spec)
    pending = [(j, r) for j, r in jobs
               if not is_done(out_dir, j, None if overrides is None else method_overrides(j.method, overrides),
                              max_test=r.max_test)]
    return Plan(pending, skipped_done=len(jobs) - len(pending), total=total)


def run_job(job: Job, ref: DataRef, out_dir: str | Path, overrides: dict[str, Any] | None = None,
            device: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Train and score one job through the method contract, write its record, return it.

    ``device`` (a worker's GPU) goes to every method with a ``device`` option.
    """
    from ..data import one_vs_all
    from ..data.base import capped_test_indices
    from ..methods import FitContext, get_method
    from ..metrics import auroc, evaluate

    t_start = time.perf_counter()
    ds = ref.load()
    x_train, x_test, y_test = one_vs_all(ds, job.normal_class)
    keep = capped_test_indices(y_test, ref.max_test, [TEST_CAP_SEED, job.normal_class])
    x_test, y_test = x_test[keep], y_test[keep]
    method = get_method(job.method)
    kwargs = method_overrides(job.method, overrides)
    requested = dict(kwargs)
    if device and "device" in method.options:
        kwargs["device"] = device
    det = method.factory(job.preset, job.seed, **kwargs)
    ckpt = Path(out_dir) / "checkpoints" / job.dataset / job.method / job.key
    # The dataset and class let semi-supervised methods (Deep SAD) draw their labelled anomalies;
    # they record how in ``det.info["labelled_anomalies"]``.
    context = FitContext(progress=progress, checkpoint_dir=checkpoint_folder(ckpt) if det.resumable else None,
                         dataset=ds, normal_class=job.normal_class)
    t0 = time.perf_counter()
    det.fit(x_train, context)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    parts = det.score_components(x_test, progress=progress)
    scores = det.score(x_test) if parts is None else parts.scores
    score_s = time.perf_counter() - t1
    record: dict[str, Any] = {
        "fgad_record": RECORD_VERSION,
        "job": job.to_dict(),
        "config": det.config_dict(),
        "overrides": requested,
        "data": {"ref": {"name": ref.name, "root": ref.root, "options": dict(ref.options), "max_test": ref.max_test},
                 "info": ds.info,
                 "n_train": int(len(x_train)), "n_test": int(len(x_test))},
        "versions": versions(),
        "git_revision": git_revision(),
        "device": str(det.device),
        "threads": torch.get_num_threads(),  # CPU results depend on it in the last digits
        "timings": {"fit_s": round(fit_s, 3), "score_s": round(score_s, 3),
                    "total_s": round(time.perf_counter() - t_start, 3)},
        "metrics": evaluate(y_test, scores),
        "labels": [int(v) for v in y_test],
        "scores": [float(v) for v in scores],
    }
    if parts is not None:  # per-task normality sums: higher = more normal
        record["task_metrics"] = {t: {"auroc": auroc(y_test, -s)} for t, s in parts.components.items()}
        record["task_scores"] = {t: [float(v) for v in s] for t, s in parts.components.items()}
    if det.info:
        record["method_info"] = _jsonable(det.info)
    if ds.groups_test is not None:
        record["groups"] = [str(g) for g in ds.groups_test[keep]]
    write_record(out_dir, job, record)
    remove_checkpoints(ckpt)
    return record


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# ------------------------------------------------------------------------------ parallel pool
_WORKER_DEVICE: str | None = None


def _init_worker(devices, threads: int) -> None:
    global _WORKER_DEVICE
    import torch

    _WORKER_DEVICE = devices.get() if devices is not None else None
    torch.set_num_threads(max(1, threads))
    threading.Thread(target=exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def exit_when_orphaned(parent: int, interval_s: float = 0.5) -> None:
    """Stop this worker once its parent is gone. A parent killed by SIGTERM or SIGKILL cannot tell
    its pool to stop, and the workers would go on training unobserved, holding the cores; the job
    in progress resumes from its checkpoints on the next run."""
    while os.getppid() == parent:
        time.sleep(interval_s)
    os._exit(1)


def _run_in_worker(job: Job, ref: DataRef, out_dir: str, overrides: dict[str, Any]) -> dict[str, Any]:
    return run_job(job, ref, out_dir, overrides, device=_WORKER_DEVICE)


def note_failure(out_dir: str | Path, job: Job, text: str) -> Path:
    """Write a failed job's traceback to ``OUT/errors/<dataset>/<method>/<job key>.txt``; returns the path."""
    path = Path(out_dir) / "errors" / job.dataset / job.method / f"{job.key}.txt"
    atomic_write_text(path, text)
    return path


def run_plan(plan: Plan, out_dir: str | Path, overrides: dict[str, Any] | None = None, workers: int = 1,
             progress: bool = True, log: Callable[[str], None] = print) -> tuple[int, int]:
    """Run the pending jobs; returns (finished, failed). Failures are logged and do not stop others."""
    import torch

    overrides = overrides or {}
    done = failed = 0
    n = len(plan.jobs)

    def report(i: int, job: Job, rec: dict[str, Any] | None, err: str | None) -> None:
        tag = f"[{i}/{n}] {job.dataset} {job.method} class {job.normal_class} ({job.class_name}) seed {job.seed}"
        if rec is not None:
            log(f"{tag}: AUROC {rec['metrics']['auroc']:.4f} in {rec['timings']['total_s']:.1f} s")
        else:
            log(f"{tag}: FAILED: {err}")

    if workers <= 1:
        for i, (job, ref) in enumerate(plan.jobs, 1):
            try:
                rec = run_job(job, ref, out_dir, overrides, progress=progress)
                done += 1
                report(i, job, rec, None)
            except Exception as exc:  # one job's failure must not stop the sweep
                failed += 1
                path = note_failure(out_dir, job, traceback.format_exc())
                report(i, job, None, f"{exc} (details in {path})")
        return done, failed
    n_gpu = torch.cuda.device_count()
    ctx = mp.get_context("spawn")
    devices = None
    if n_gpu:
        workers = min(workers, n_gpu)
        devices = ctx.Manager().Queue()
        for g in range(workers):
            devices.put(f"cuda:{g}")
    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(devices, threads)) as pool:
        futures = {pool.submit(_run_in_worker, job, ref, str(out_dir), overrides): job for job, ref in plan.jobs}
        for i, fut in enumerate(as_completed(futures), 1):
            job = futures[fut]
            try:
                rec = fut.result()
                done += 1
                report(i, job, rec, None)
            except Exception as exc:  # a worker's failure is one job's failure
                failed += 1
                path = note_failure(out_dir, job, "".join(traceback.format_exception(exc)))
                report(i, job, None, f"{exc} (details in {path})")
    return done, failed


__all__ = ["DataRef", "Plan", "plan_jobs", "run_job", "run_plan", "record_path", "check_overrides",
           "method_overrides", "takes_option", "note_failure"]
