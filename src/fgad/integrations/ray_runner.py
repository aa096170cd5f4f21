"""Run benchmark jobs on a Ray cluster: one Ray task per job, each on one GPU where there are GPUs.

The driver plans the jobs as the local runner does (``plan_jobs``: finished jobs are skipped);
each task calls :func:`fgad.benchmark.runner.run_job`, which writes the job's record itself, so
the output folder must be one every node sees (a shared file system), and so must the dataset
files. A task that fails writes nothing; the driver notes the failure in ``OUT/errors`` as the
local runner does and goes on. A job whose worker dies is retried by Ray and resumes from its
training checkpoint.

    fgad benchmark --dataset cifar10 --method ours,mhrot --preset paper --ray auto --out /shared/runs
"""

from __future__ import annotations

import os
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..benchmark.jobs import Job
from ..benchmark.runner import DataRef, Plan, note_failure, run_job
from ..errors import ConfigError, MissingDependencyError


def require_ray():
    try:
        import ray
    except ImportError as exc:
        raise MissingDependencyError("--ray needs Ray: pip install 'fgad[ray]' (or pip install 'ray>=2.9')") from exc
    return ray


def connect(address: str | None):
    """Connect to a Ray cluster: ``"local"`` starts one on this machine, ``"auto"`` joins the
    running cluster (``ray start``), anything else is a cluster address. A Ray session already
    open in this process is used as it is. Returns (ray module, whether we started the session)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    try:
        if address in (None, "local"):
            ray.init(include_dashboard=False)
        else:
            ray.init(address=address)
    except ConnectionError as exc:
        raise ConfigError(f"--ray {address}: cannot connect to a Ray cluster ({str(exc).splitlines()[0]})") from exc
    return ray, True


def _ray_job(job: Job, ref: DataRef, out_dir: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Body of a Ray task: run one job on this worker (its GPU, if Ray gave it one)."""
    import ray
    import torch

    gpus = ray.get_gpu_ids()
    device = "cuda" if gpus and torch.cuda.is_available() else None  # Ray sets CUDA_VISIBLE_DEVICES
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1) or 1)
    torch.set_num_threads(max(1, cpus))
    rec = run_job(job, ref, out_dir, overrides, device=device)
    return {"metrics": {"auroc": rec["metrics"]["auroc"]}, "timings": rec["timings"], "device": rec.get("device"),
            "node": ray.util.get_node_ip_address()}


def _absolute(ref: DataRef) -> DataRef:
    """A data root relative to the driver's folder, made absolute (workers run elsewhere)."""
    if ref.root is not None and not os.path.isabs(ref.root) and os.path.exists(ref.root):
        return replace(ref, root=os.path.abspath(ref.root))
    return ref


def run_plan_ray(plan: Plan, out_dir: str | Path, overrides: dict[str, Any] | None = None, *,
                 address: str | None = "local", cpus_per_job: int = 1,
                 log: Callable[[str], None] = print) -> tuple[int, int]:
    """Run the pending jobs of ``plan`` as Ray tasks; returns (finished, failed) like ``run_plan``.

    Self-supervised jobs ask for one GPU when the cluster has GPUs; the others (classical
    baselines) for CPUs only. ``cpus_per_job`` CPUs per task (its torch threads).
    """
    from ..methods import TASK_SETS

    overrides = overrides or {}
    out_dir = str(Path(out_dir).resolve())
    if not plan.jobs:
        return 0, 0
    ray, started = connect(address)
    try:
        has_gpu = ray.cluster_resources().get("GPU", 0) > 0
        remote = ray.remote(_ray_job)
        pending: dict[Any, Job] = {}
        for job, ref in plan.jobs:
            gpus = 1 if has_gpu and job.method in TASK_SETS else 0
            task = remote.options(num_cpus=cpus_per_job, num_gpus=gpus, name=f"fgad:{job.method}:{job.key}")
            pending[task.remote(job, _absolute(ref), out_dir, overrides)] = job
        n, i, done, failed = len(pending), 0, 0, 0
        log(f"{n} job(s) sent to Ray ({'GPUs' if has_gpu else 'CPUs only'}); records in {out_dir}")
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for obj in ready:
                job = pending.pop(obj)
                i += 1
                tag = (f"[{i}/{n}] {job.dataset} {job.method} class {job.normal_class} ({job.class_name}) "
                       f"seed {job.seed}")
                try:
                    res = ray.get(obj)
                    done += 1
                    log(f"{tag}: AUROC {res['metrics']['auroc']:.4f} in {res['timings']['total_s']:.1f} s "
                        f"on {res['node']} ({res['device']})")
                except Exception as exc:  # one job's failure must not stop the sweep
                    failed += 1
                    cause = getattr(exc, "cause", None) or exc
                    path = note_failure(out_dir, job, "".join(traceback.format_exception(exc)))
                    log(f"{tag}: FAILED: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''} "
                        f"(details in {path})")
        return done, failed
    finally:
        if started:
            ray.shutdown()


__all__ = ["connect", "require_ray", "run_plan_ray"]
