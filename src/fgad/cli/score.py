"""``fgad score MODEL IMAGES``: anomaly scores as CSV (id, anomaly_score, per-component normality).

    fgad score model test_images/ --out scores.csv [--decide]

``anomaly_score``: higher = more anomalous; ``normal_percentile`` (models with held-out normal
images only): the share (0–100) of held-out normal images whose anomaly score is lower;
``normality_<component>``: each fused component, higher = more normal (with the paper's
settings, the per-task sums of eq. 4; see ``Detector.score_components``); ``is_anomaly`` (with
``--decide``): 1 when the anomaly score >= the threshold set by ``fgad calibrate``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
from typing import Any

from .common import add_device_arg, add_image_args, print_skipped, read_for_model


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..errors import InputError
    from ..io.fileio import atomic_write_text

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
    got = read_for_model(det, args.images, args, key=args.key, label=args.label)  # by the model's own rule
    ids, skipped = got.ids, got.skipped
    sums = det.score_components(got.images, progress=not args.quiet)
    scores = -det.fuse_components(sums, fusion)
    # Held-out normals' scores were fused with the model's fusion: no percentile for another one.
    pct = det.normal_percentile(scores) if fusion == det.config.score_fusion else None
    decided = None
    if args.decide:
        from ..tools.decision import decide

        decided = decide(scores, det.decision)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "anomaly_score", *(["normal_percentile"] if pct is not None else []),
                *[f"normality_{n}" for n in sums], *(["is_anomaly"] if args.decide else [])])
    for i, ident in enumerate(ids):
        w.writerow([ident, f"{scores[i]:.6f}", *([f"{pct[i]:.2f}"] if pct is not None else []),
                    *[f"{sums[n][i]:.6f}" for n in sums], *([int(decided[i])] if decided is not None else [])])
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
    p.add_argument("--fusion", choices=["sum", "mean", "zscore", "rank"],
                   help="fusion of the components (default: the model's; sum = paper; zscore/rank: models "
                   "fitted with statistics of normal images)")
    p.add_argument("--conform", action="store_true", help="kept for old scripts: images of another size or "
                   "grey/colour are always brought to the model's by its rule (see --strict-size)")
    add_device_arg(p)
    p.add_argument("--decide", action="store_true",
                   help="add a column is_anomaly (1 = score >= the threshold set by fgad calibrate)")
    add_image_args(p)
    p.set_defaults(func=run)
