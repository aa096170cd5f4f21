"""``fgad score MODEL IMAGES``: anomaly scores as CSV (id, anomaly_score, per-task normality).

    fgad score model test_images/ --out scores.csv [--decide]

``anomaly_score``: higher = more anomalous; ``normality_<task>``: the paper's per-task sums,
higher = more normal; ``is_anomaly`` (with ``--decide``): 1 when the anomaly score >= the
threshold set by ``fgad calibrate``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

from .common import add_device_arg, add_image_args, print_skipped


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..core.scoring import fuse
    from ..errors import InputError
    from ..io.fileio import atomic_write_text
    from ..io.inputs import load_images

    det = Detector.load(args.model, device=args.device)
    fusion = args.fusion or det.config.score_fusion
    if args.decide:  # checked before any image is read or scored
        if det.decision is None:
            raise InputError(f"{args.model}: the model has no decision threshold; run "
                             f"fgad calibrate {args.model} HELD_OUT_NORMAL_IMAGES first")
        if args.fusion and args.fusion != det.decision.get("fusion", fusion):
            raise InputError(f"--decide: the threshold was calibrated with --fusion {det.decision.get('fusion')}, "
                             f"not {args.fusion}")
        fusion = det.decision.get("fusion", fusion)
    images, ids, skipped = load_images(args.images, key=args.key, label=args.label,
                                       skip_unreadable=args.skip_unreadable)
    sums = det.score_tasks(images, progress=not args.quiet, conform=args.conform)
    scores = -fuse(sums, fusion, det.task_terms)
    decided = None
    if args.decide:
        from ..tools.decision import decide

        decided = decide(scores, det.decision)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "anomaly_score", *[f"normality_{n}" for n in sums], *(["is_anomaly"] if args.decide else [])])
    for i, ident in enumerate(ids):
        w.writerow([ident, f"{scores[i]:.6f}", *[f"{sums[n][i]:.6f}" for n in sums],
                    *([int(decided[i])] if decided is not None else [])])
    if args.out == "-":
        sys.stdout.write(buf.getvalue())
    else:
        atomic_write_text(args.out, buf.getvalue())
        print(f"scored {len(ids)} images; anomaly scores (higher = more anomalous) written to {args.out}",
              file=sys.stderr)
    if decided is not None:
        print(f"{int(decided.sum())} of {len(ids)} image(s) anomalous (anomaly score >= threshold "
              f"{det.decision['threshold']:.6g})", file=sys.stderr)
    print_skipped(skipped)
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("score", help="score images with a trained model (CSV: id, anomaly_score, per-task)")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("images", help=".npz file or folder of images")
    p.add_argument("--out", default="-", help="CSV file to write (default: standard output)")
    p.add_argument("--fusion", choices=["sum", "mean"], help="task fusion (default: the model's; sum = paper)")
    p.add_argument("--conform", action="store_true", help="convert grey/colour and resize images that do not "
                   "match the training images (default: refuse them)")
    add_device_arg(p)
    p.add_argument("--decide", action="store_true",
                   help="add a column is_anomaly (1 = score >= the threshold set by fgad calibrate)")
    add_image_args(p)
    p.set_defaults(func=run)
