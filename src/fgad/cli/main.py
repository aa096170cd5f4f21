"""The ``fgad`` command line: thin wrappers over the library.

    fgad train IMAGES --out MODEL [--preset quick] [--set key=value ...]
    fgad score MODEL IMAGES --out scores.csv
    fgad list
    fgad benchmark [--dataset D --method M ...]
    fgad report RESULTS_DIR

A user error prints one line ``fgad: error: ...`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..errors import ConfigError, FgadError


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs; values parsed as YAML scalars/lists (``steps=100``, ``tasks=[geometric]``)."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ConfigError(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair}: cannot parse the value") from exc
    return out


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    from ..core.config import load_config_file

    overrides: dict[str, Any] = {}
    if getattr(args, "config", None):
        overrides.update(load_config_file(args.config))
    overrides.update(parse_overrides(getattr(args, "set", None)))
    if getattr(args, "tasks", None):
        overrides["tasks"] = args.tasks
    if getattr(args, "seed", None) is not None and not isinstance(args.seed, list):
        overrides["seed"] = args.seed
    if getattr(args, "device", None):
        overrides["device"] = args.device
    if getattr(args, "deterministic", False):
        overrides["deterministic"] = True
    return overrides


def check_writable_parent(path: str) -> None:
    from ..io.fileio import OutputError

    parent = Path(path).absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable")


def cmd_train(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..io.inputs import load_images

    overrides = _overrides(args)
    det = Detector(preset=args.preset, **overrides)  # validate the config before reading images
    check_writable_parent(args.out)  # fail before training, not after
    images, _, skipped = load_images(args.images, key=args.key, label=args.label, skip_unreadable=args.skip_unreadable)
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}", file=sys.stderr)
    ckpt = args.checkpoint_dir or str(Path(args.out).with_name(Path(args.out).name + ".checkpoints"))
    det.fit(images, checkpoint_dir=ckpt, progress=not args.quiet)
    det.save(args.out)
    import shutil

    shutil.rmtree(ckpt, ignore_errors=True)  # the finished model supersedes its checkpoints
    print(f"trained on {len(images)} images in {det.info['fit_s']:.1f} s; model written to {args.out}")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..io.fileio import atomic_write_text
    from ..io.inputs import load_images

    det = Detector.load(args.model, device=args.device)
    fusion = args.fusion or det.config.score_fusion
    if args.decide:  # checked before any image is read or scored
        from ..errors import InputError

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
    from ..core.scoring import fuse

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
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}", file=sys.stderr)
    return 0


def _add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--key", help="array name inside an .npz file (default x_train)")
    p.add_argument("--label", type=int, help="only the images of this class (needs a label array, e.g. y_train)")
    p.add_argument("--skip-unreadable", action="store_true", help="skip unreadable image files and count them")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The options of ``fgad train``, shared with ``python -m fgad.integrations.distributed``."""
    p.add_argument("images", help=".npz file or folder of normal images")
    p.add_argument("--out", required=True, help="model folder to write")
    p.add_argument("--preset", default="quick", help="paper | quick | tiny (default quick)")
    p.add_argument("--tasks", help="comma-separated tasks, e.g. geometric,jigsaw (paper), geometric (MHRot)")
    p.add_argument("--config", help="YAML/JSON file of config overrides")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--checkpoint-dir", help="training checkpoints (default MODEL.checkpoints); resumes from it")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="fgad", description="Fine-grained one-class image anomaly detection "
                                     "by multi-task self-supervision. Scores: higher = more anomalous.")
    parser.add_argument("--version", action="version", version=f"fgad {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a detector on normal images")
    add_training_args(p)
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms on CUDA (slower)")
    _add_image_args(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score images with a trained model (CSV: id, anomaly_score, per-task)")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("images", help=".npz file or folder of images")
    p.add_argument("--out", default="-", help="CSV file to write (default: standard output)")
    p.add_argument("--fusion", choices=["sum", "mean"], help="task fusion (default: the model's; sum = paper)")
    p.add_argument("--conform", action="store_true", help="convert grey/colour and resize images that do not "
                   "match the training images (default: refuse them)")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--decide", action="store_true",
                   help="add a column is_anomaly (1 = score >= the threshold set by fgad calibrate)")
    _add_image_args(p)
    p.set_defaults(func=cmd_score)

    import importlib
    import importlib.util

    for module in COMMAND_MODULES:  # each adds its subcommands; one module per concept
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module).add_commands(sub)
    return parser


# Modules that contribute subcommands through ``add_commands(subparsers)``.
COMMAND_MODULES = ("fgad.cli.benchmark", "fgad.cli.calibrate", "fgad.cli.explain", "fgad.cli.export")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FgadError as exc:
        print(f"fgad: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fgad: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
