"""``fgad benchmark``: the one-vs-all protocol over datasets, methods, classes and seeds.

    fgad benchmark                                   # the embedded quick comparison (fonts, offline)
    fgad benchmark --dataset mnist --method ours,mhrot --classes 0-9 --seeds 0-4 --preset paper
    fgad benchmark --dataset npz --data-root cub100_subset_64.npz --method ours,mhrot,jigsaw
    fgad benchmark ... --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT   # one slice per array task
    fgad benchmark ... --ray auto --out /shared/runs   # one Ray task per job on a Ray cluster

``--out`` is resumed: a rerun skips the jobs already recorded there. A folder that is not a
benchmark results folder is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from .common import add_preset_arg, check_output_folder, only_entries, parse_overrides
from .report import print_report

# The embedded default: no download, no files outside the installed packages, ~10 min on 2 cores.
DEFAULT_DATASET = "fonts"
# The glyphs all 16 faces share (401 train / 134 test per face), anomalies capped at 600 test
# images per job: every normal test glyph is kept. Steps and cap sized by wall time (10 min, 2 cores).
DEFAULT_DATA_OPTIONS: dict[str, Any] = {"charset": "european", "test_fraction": 0.25}
DEFAULT_MAX_TEST = 600
DEFAULT_METHODS = "calibrated,ours,mhrot,mean-distance"
DEFAULT_CLASSES = "0-3"
DEFAULT_OVERRIDES: dict[str, Any] = {"steps": 120}
# Two single-thread workers: small networks use 2 cores better that way than one 2-thread process.
DEFAULT_WORKERS = min(2, os.cpu_count() or 1)
# What a results folder holds (records, per-job checkpoints and errors, the report).
RESULTS_ENTRIES = ("records", "checkpoints", "errors", "report")


def run(args: argparse.Namespace) -> int:
    from ..benchmark.jobs import parse_shard
    from ..benchmark.runner import DataRef, check_overrides, plan_jobs, run_plan, takes_option
    from ..core.config import load_config_file
    from ..errors import ConfigError

    embedded = args.dataset is None
    datasets = [DEFAULT_DATASET] if embedded else [d.strip() for d in args.dataset.split(",") if d.strip()]
    methods = [m.strip() for m in (args.method or DEFAULT_METHODS).split(",") if m.strip()]
    classes = args.classes if args.classes is not None else (DEFAULT_CLASSES if embedded else None)
    overrides: dict[str, Any] = {}
    if embedded and args.preset == "quick":  # the defaults of the methods that have those options
        overrides = {k: v for k, v in DEFAULT_OVERRIDES.items() if takes_option(methods, k)}
    if args.config:
        overrides.update(load_config_file(args.config))
    overrides.update(parse_overrides(args.set))
    check_overrides(methods, args.preset, overrides)  # a bad preset or key fails before any work
    if args.max_test is not None and args.max_test != 0 and args.max_test < 2:
        raise ConfigError(f"--max-test must be 0 (no cap) or >= 2, got {args.max_test}")
    check_output_folder(args.out, "a benchmark results folder", only_entries(lambda n: n in RESULTS_ENTRIES),
                        resume=True)
    if args.ray:
        from ..integrations.ray_runner import require_ray

        require_ray()  # Ray missing fails before any work
    options = {**(DEFAULT_DATA_OPTIONS if embedded else {}), **parse_overrides(args.data_option)}
    max_test = args.max_test if args.max_test is not None else (DEFAULT_MAX_TEST if embedded else None)
    refs = [DataRef(d, args.data_root, tuple(sorted(options.items())), max_test or None) for d in datasets]
    if args.download:
        from ..data import load_dataset

        for d in datasets:
            load_dataset(d, args.data_root, download=True, **options)
    plan = plan_jobs(refs, methods, classes, args.seeds, args.preset, args.out, parse_shard(args.shard), overrides)
    print(f"{plan.total} job(s) in the sweep; {len(plan.jobs)} to run here, {plan.skipped_done} already done "
          f"(records in {args.out})", file=sys.stderr)
    t0 = time.perf_counter()
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    if args.ray:
        from ..integrations.ray_runner import run_plan_ray

        done, failed = run_plan_ray(plan, args.out, overrides, address=args.ray, log=log)
    else:
        workers = args.workers if args.workers is not None else (DEFAULT_WORKERS if embedded else 1)
        done, failed = run_plan(plan, args.out, overrides, workers=workers, progress=not args.quiet, log=log)
    print(f"{done} job(s) finished, {failed} failed, in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if not args.no_report:
        print_report(args.out)
    return 1 if failed else 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="one-vs-all benchmark; with no --dataset, the embedded quick comparison")
    p.add_argument("--dataset", help="dataset name(s), comma-separated (see fgad list)")
    p.add_argument("--method", help=f"method name(s), comma-separated (default {DEFAULT_METHODS})")
    p.add_argument("--classes", help="normal classes: all (default), 0-9, 1,3,5 or class names")
    p.add_argument("--seeds", help="seeds, e.g. 0 (default) or 0-4")
    add_preset_arg(p)
    p.add_argument("--config", help="YAML/JSON file of method options (KEY or METHOD.KEY: value)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="an option of every method run that has it (an error if none has), or "
                        "METHOD.KEY=VALUE for one method's option, e.g. deepgeo.steps=100; repeatable")
    p.add_argument("--data-root", help="dataset folder or file (default $FGAD_DATA_DIR/<dataset>)")
    p.add_argument("--data-option", action="append", metavar="KEY=VALUE", help="dataset option, e.g. size=32")
    p.add_argument("--max-test", type=int, metavar="N",
                   help="at most N test images per job: every normal one and a seeded random share of the "
                        "anomalies, the same for every method (default: the whole test split; 0: no cap)")
    p.add_argument("--download", action="store_true", help="download the dataset first (where allowed)")
    p.add_argument("--out", default="fgad-runs", help="results folder, resumed by a rerun (default fgad-runs; "
                                                      "a new or empty folder, or an earlier results folder)")
    p.add_argument("--shard", help="run only slice i of n (0-based), e.g. 0/4")
    p.add_argument("--workers", type=int, help="parallel worker processes (one per GPU on GPUs; default 1, and "
                                                "for the embedded comparison 2, one thread each on 2 cores)")
    p.add_argument("--ray", metavar="ADDRESS", help="run the jobs as Ray tasks: local (start Ray here), auto (join "
                   "the running cluster) or a cluster address; OUT and the data must be on a shared file system")
    p.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
