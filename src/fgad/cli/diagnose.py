"""``fgad diagnose IMAGES --normal-class C --out DIR``: which pretext task suits the data (paper Fig. 1).

    fgad diagnose mnist.npz --normal-class 3 --tasks rotation,translation,jigsaw --out diag/

Trains one model per task set and writes ``diagnose.csv`` and ``diagnose.png`` into ``DIR``: a
new or empty folder, or (with ``--overwrite``) an earlier diagnosis; any other folder is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .common import (
    add_device_arg,
    add_overwrite_arg,
    add_preset_arg,
    check_output_folder,
    only_entries,
    parse_overrides,
)

OUTPUT_FILES = ("diagnose.csv", "diagnose.png")


def _load_data(args: argparse.Namespace):
    from ..data import load_dataset

    src = Path(args.images)
    if src.suffix.lower() == ".npz" or src.is_file():
        if not src.is_file():
            raise InputError(f"{src}: no such file")
        return load_dataset("npz", root=src)
    return load_dataset(args.images, root=args.data_root)


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..tools.diagnose import diagnose, parse_task_sets

    sets = parse_task_sets(args.tasks)  # validate tasks, preset and overrides before loading data
    overrides = parse_overrides(args.set)
    if args.seed is not None:
        overrides["seed"] = args.seed
    if args.device:
        overrides["device"] = args.device
    length = {k: v for k, v in (("steps", args.steps), ("epochs", args.epochs)) if v is not None}
    seed = Detector(args.preset, **{**overrides, **length, "tasks": sets[0]}).config.seed
    if args.max_eval < 1:
        raise InputError(f"--max-eval must be >= 1, got {args.max_eval}")
    ds = _load_data(args)
    k = ds.class_index(args.normal_class)
    x_train = ds.x_train[ds.y_train == k]
    if len(x_train) < 2:
        raise InputError(f"{ds.name}: class {ds.class_names[k]!r} has {len(x_train)} training image(s); need 2")
    if args.max_train:
        x_train = x_train[: args.max_train]
    x_normal = ds.x_test[ds.y_test == k]
    if args.anomalies:
        anomaly_classes = [ds.class_index(c.strip()) for c in args.anomalies.split(",") if c.strip()]
        if k in anomaly_classes:
            raise InputError(f"--anomalies includes the normal class {ds.class_names[k]!r}")
        mask = np.isin(ds.y_test, anomaly_classes)
    else:
        mask = ds.y_test != k
    x_anom = ds.x_test[mask]
    if len(x_normal) == 0:
        raise InputError(f"{ds.name}: class {ds.class_names[k]!r} has no test images (held-out normal)")
    if len(x_anom) == 0:
        raise InputError(f"{ds.name}: no anomalous test images")
    check_output_folder(args.out, "an fgad diagnosis", only_entries(lambda n: n in OUTPUT_FILES),
                        overwrite=args.overwrite)  # before training
    rng = np.random.default_rng(seed if seed >= 0 else 0)
    if len(x_normal) > args.max_eval:
        x_normal = x_normal[np.sort(rng.choice(len(x_normal), args.max_eval, replace=False))]
    if len(x_anom) > args.max_eval:
        x_anom = x_anom[np.sort(rng.choice(len(x_anom), args.max_eval, replace=False))]
    print(f"{ds.name}: normal class {ds.class_names[k]!r}: {len(x_train)} training, {len(x_normal)} held-out normal, "
          f"{len(x_anom)} anomalous images", file=sys.stderr)
    result = diagnose(x_train, x_normal, x_anom, tasks=sets, preset=args.preset, steps=args.steps,
                      epochs=args.epochs, eval_every=args.eval_every, overrides=overrides, progress=not args.quiet)
    csv_path, png_path = result.write(args.out)
    print(result.table())
    print(f"wrote {csv_path} and {png_path}", file=sys.stderr)
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("diagnose", help="task suitability (paper Fig. 1): task accuracy during training, "
                                        "held-out normal vs anomalies (CSV + PNG)")
    p.add_argument("images", help=".npz with x_train/y_train/x_test/y_test, or a dataset name (see fgad list)")
    p.add_argument("--normal-class", required=True, help="normal class (index or name)")
    p.add_argument("--anomalies", help="anomalous test classes, comma-separated (default: every other class)")
    p.add_argument("--tasks", default="rotation,translation,jigsaw,geometric+jigsaw",
                   help="task sets, comma-separated; '+' joins tasks in one set (default %(default)s)")
    add_preset_arg(p)
    p.add_argument("--steps", type=int, help="training steps per task set (default: the preset's)")
    p.add_argument("--epochs", type=float, help="training length in epochs instead of steps")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: a tenth of the run)")
    p.add_argument("--max-eval", type=int, default=500, help="at most this many held-out normal and anomalous "
                                                              "images each (random subsample; default 500)")
    p.add_argument("--max-train", type=int, help="use only the first N normal training images")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="detector config override, repeatable")
    p.add_argument("--seed", type=int)
    add_device_arg(p)
    p.add_argument("--data-root", help="dataset folder (for a dataset name)")
    p.add_argument("--out", required=True, help="folder for diagnose.csv and diagnose.png (a new or empty folder, "
                                                "or with --overwrite an earlier diagnosis)")
    add_overwrite_arg(p, "an earlier diagnosis")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
