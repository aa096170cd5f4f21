"""``fgad gallery``: score images and write one self-contained HTML page of the flagged ones, and why.

    fgad gallery MODEL IMAGES --out PAGE.html [--top 24] [--bottom 12] [--overwrite]

Scores as ``fgad score`` does (anomaly score: higher = more anomalous, beside it the normal
percentile when the model has held-out normal images; with the fusion of the model's decision
threshold when it has one), then :func:`fgad.tools.gallery.write_gallery`.
An earlier gallery there is replaced only with ``--overwrite``; a file of another kind is refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import add_device_arg, add_image_args, add_overwrite_arg, check_output_file, print_skipped, read_for_model


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..tools.gallery import is_gallery, write_gallery

    for name in ("top", "bottom"):
        if getattr(args, name) < 0:
            raise InputError(f"--{name} must be >= 0, got {getattr(args, name)}")
    check_output_file(args.out, "an fgad gallery", is_gallery, overwrite=args.overwrite)  # before the work
    det = Detector.load(args.model, device=args.device)
    # By the model's own rule, as fgad score reads them: the page shows the images the network saw.
    got = read_for_model(det, args.images, args, key=args.key, label=args.label)
    images, ids, skipped = got.images, got.ids, got.skipped
    fusion = (det.decision or {}).get("fusion") or det.config.score_fusion
    # The detector's own components and fusion, as fgad score computes them.
    scores = -det.fuse_components(det.score_components(images, progress=not args.quiet), fusion)
    title = f"{Path(args.images).name} scored by {Path(args.model).name}"
    summary = write_gallery(det, images, ids, scores, args.out, top=args.top, bottom=args.bottom,
                            overwrite=args.overwrite, title=title, fusion=fusion, progress=not args.quiet)
    print(f"gallery of {summary['n']} image(s) ({len(summary['top'])} most, {len(summary['bottom'])} least "
          f"anomalous shown) written to {args.out}", file=sys.stderr)
    if summary["threshold"] is not None:
        print(f"{summary['n_anomalous']} of {summary['n']} image(s) anomalous (anomaly score >= threshold "
              f"{summary['threshold']:.6g})", file=sys.stderr)
    print_skipped(skipped)
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("gallery", help="score images and write an HTML page of the most and least anomalous, "
                                       "with their explanations",
                       description="Score images (anomaly score: higher = more anomalous), then write one "
                       "self-contained HTML page: the decision at the model's threshold, the most and least "
                       "anomalous images as thumbnails with ranks and scores, and for each the per-task "
                       "breakdown and jigsaw heat map of fgad explain.")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("images", help=".npz file or folder of images")
    p.add_argument("--out", required=True, help="HTML page to write")
    p.add_argument("--top", type=int, default=24, help="most anomalous images to show and explain (default 24)")
    p.add_argument("--bottom", type=int, default=12, help="least anomalous images to show and explain (default 12)")
    add_overwrite_arg(p, "a gallery page")
    p.add_argument("--conform", action="store_true", help="kept for old scripts: images of another size or "
                   "grey/colour are always brought to the model's by its rule (see --strict-size)")
    add_device_arg(p)
    add_image_args(p)
    p.set_defaults(func=run)
