"""``fgad calibrate``: choose a decision threshold on held-out images and store it with the model.

    fgad calibrate MODEL NORMAL_IMAGES [--target-fpr 0.05]
    fgad calibrate MODEL NORMAL_IMAGES --anomalous ANOMALOUS_IMAGES [--rule f1|bpcer|apcer] [--target 0.05]

Only the model's ``config.json`` is rewritten (atomically: a temporary file, then a rename), and
only in a folder that holds an fgad model; the weights, the training log and any other file in
the folder are left as they are. A threshold set earlier is replaced. ``fgad score MODEL IMAGES --decide`` then adds
an ``is_anomaly`` column (1 = anomaly score >= threshold).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..core.scoring import FUSIONS
from ..errors import InputError, ModelFileError
from .common import add_device_arg, add_image_args, print_skipped, read_for_model


def write_decision(model_dir: str | Path, decision: dict[str, Any] | None) -> None:
    """Set (or, with ``None``, remove) the ``decision`` entry of a saved model's config.json."""
    from ..core.detector import CONFIG_FILE
    from ..io.fileio import atomic_write_json

    path = Path(model_dir) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"{path}: unreadable model config ({exc})") from exc
    if decision is None:
        meta.pop("decision", None)
    else:
        meta["decision"] = decision
    atomic_write_json(path, meta)


def describe(decision: dict[str, Any]) -> str:
    """One line: the threshold and the rates it reaches on the calibration images."""
    rule, target = decision["rule"], decision.get("target")
    what = f"rule {rule}" + (f", target {target:g}" if target is not None else "")
    n0, n1 = decision["n_normal"], decision["n_anomalous"]
    parts = [f"BPCER (false positive rate) {100 * decision['bpcer']:.2f}% of {n0} normal image(s)"]
    if n1:
        parts.append(f"APCER (anomalies missed) {100 * decision['apcer']:.2f}% of {n1} anomalous image(s)")
        parts.append(f"F1 {decision['f1']:.4f}")
    return f"threshold {decision['threshold']:.6g} ({what}): " + ", ".join(parts)


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..tools.decision import RULES

    args.target_fpr = _rate(args.target_fpr, "--target-fpr")
    args.target = _rate(args.target, "--target")
    if args.target is not None and args.rule is None:
        raise InputError("--target goes with --rule; for a false positive rate on normal images use --target-fpr")
    if args.rule is not None and args.target_fpr is not None:
        raise InputError("give either --target-fpr or --rule with --target, not both")
    if args.rule is not None and args.rule not in RULES:
        raise InputError(f"unknown --rule {args.rule!r}; known: {', '.join(RULES)}")
    if args.rule in ("f1", "apcer") and not args.anomalous:
        raise InputError(f"--rule {args.rule} needs anomalous images (--anomalous IMAGES); with normal images "
                         "only, use --target-fpr")
    det = Detector.load(args.model, device=args.device)
    got = read_for_model(det, args.images, args, key=args.key, label=args.label, what="normal images")
    normal, skipped = got.images, got.skipped  # by the model's own rule, as fgad score reads them
    kw: dict[str, Any] = {"fusion": args.fusion}
    if args.rule is None:
        kw["target_fpr"] = 0.05 if args.target_fpr is None else args.target_fpr
    else:
        kw["rule"], kw["target"] = args.rule, args.target
    if args.anomalous:
        got = read_for_model(det, args.anomalous, args, key=args.anomalous_key, label=args.anomalous_label,
                             what="anomalous images")
        anomalous, skipped = got.images, skipped + got.skipped
        decision = det.calibrate(normal, images=anomalous, labels=np.ones(len(anomalous), dtype=np.int64), **kw)
    else:
        decision = det.calibrate(normal, **kw)
    write_decision(args.model, decision)
    print_skipped(skipped)
    print(describe(decision) + f"; written to {args.model}")
    return 0


def _rate(text: str | None, option: str) -> float | None:
    """Parsed here, not by argparse, so that a bad value is one ``fgad: error:`` line."""
    if text is None:
        return None
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{option} expects a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise InputError(f"{option} expects a number in [0, 1], got {text!r}")
    return v


def add_command(sub: Any) -> None:
    p = sub.add_parser("calibrate", help="set the decision threshold of a model from held-out images",
                       description="Choose the threshold on held-out normal images (a target false positive "
                       "rate) or on normal plus anomalous images (--rule), and store it in the model folder. "
                       "An image is anomalous when its anomaly score >= the threshold.")
    p.add_argument("model", help="model folder written by fgad train (its config.json is rewritten)")
    p.add_argument("images", help="held-out NORMAL images (.npz or folder), not the training images")
    p.add_argument("--anomalous", help="anomalous images (.npz or folder), for --rule f1 | bpcer | apcer")
    p.add_argument("--target-fpr", help="largest fraction of normal images rejected (default 0.05)")
    p.add_argument("--rule", help="f1 (best F1), bpcer (normal images rejected <= --target), "
                   "apcer (anomalies missed <= --target)")
    p.add_argument("--target", help="the target rate of --rule bpcer | apcer (default 0.05)")
    p.add_argument("--fusion", choices=list(FUSIONS), help="fusion of the score's components (default: the "
                   "model's; sum = paper; zscore/rank: models fitted with statistics of normal images)")
    add_device_arg(p)
    add_image_args(p, key_help="array name inside the normal images' .npz (default x_train)",
                   label_help="only the normal images of this class (needs a label array)")
    p.add_argument("--anomalous-key", help="array name inside the anomalous images' .npz (default x_train)")
    p.add_argument("--anomalous-label", type=int, help="only the anomalous images of this class")
    p.set_defaults(func=run)
