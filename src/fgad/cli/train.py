"""``fgad train IMAGES --out MODEL``: train a detector on normal images and save it.

    fgad train normal.npz --out model [--preset quick] [--set key=value ...] [--overwrite]
    fgad train normal.npz --out model --method ours     # the paper's method, scored as the paper
    fgad train photos/ --out model [--size 64] [--resize crop|pad|stretch] [--channels grey|colour]

Images of any size and mode become the model's input by one rule (:mod:`fgad.io.conform`),
saved with the model so that every command that scores applies it again.

Checkpoints go to ``MODEL.checkpoints/`` (or ``--checkpoint-dir``) while it trains; the same
command resumes from them after a crash. When the model is saved, only the checkpoint files fgad
wrote are removed (and the folder, if fgad created it and nothing else is in it).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .common import (
    add_image_args,
    add_input_rule_args,
    add_training_args,
    check_output_folder,
    config_overrides,
    is_fgad_model,
    print_conversions,
    print_left_out,
    print_skipped,
    training_rule,
)


def run(args: argparse.Namespace) -> int:
    from ..io.fileio import checkpoint_folder, remove_checkpoints

    det = build_detector(args)  # validate the config before reading images
    check_output_folder(args.out, "an fgad model", is_fgad_model, overwrite=args.overwrite)  # before training
    images = read_training_images(args, det)
    ckpt = args.checkpoint_dir or str(Path(args.out).with_name(Path(args.out).name + ".checkpoints"))
    det.fit(images, checkpoint_dir=checkpoint_folder(ckpt), progress=not args.quiet)
    det.save(args.out)
    remove_checkpoints(ckpt)  # the finished model supersedes them
    print(f"{trained_on(det, len(images))} in {det.info['fit_s']:.1f} s; model written to {args.out}")
    return 0


def trained_on(det: Any, n_images: int) -> str:
    """"trained on N images", saying how many of them were held out of training for the score."""
    held = det.info.get("n_heldout", 0)
    if not held:
        return f"trained on {n_images} images"
    return f"trained on {n_images - held} of {n_images} images ({held} held out for the score's normal statistics)"


def build_detector(args: argparse.Namespace) -> Any:
    """The unfitted detector ``fgad train``'s options ask for (shared with the torchrun entry)."""
    from ..core.detector import Detector

    overrides = config_overrides(args)
    if args.resize:
        overrides["resize"] = args.resize  # saved in the model's config: scoring applies it too
    if args.method:
        return method_detector(args.method, args.preset, overrides)
    return Detector(preset=args.preset, **overrides)


def read_training_images(args: argparse.Namespace, det: Any, *, report: bool = True) -> Any:
    """The training images by the options' input rule; conversions and skipped files are printed
    on standard error when ``report``."""
    from ..io.inputs import read_inputs

    got = read_inputs(args.images, training_rule(args, det.config.resize), key=args.key, label=args.label,
                      skip_unreadable=args.skip_unreadable, max_pixels=args.max_pixels, what="training images")
    if report:
        print_conversions(got.conversions)
        print_left_out(got.left_out)
        print_skipped(got.skipped)
    return got.images


def method_detector(name: str, preset: str, overrides: dict[str, Any]) -> Any:
    """The detector of a named self-supervised method: its fixed settings, then the overrides
    (one that contradicts the method is a ConfigError)."""
    from ..errors import ConfigError
    from ..methods import TASK_SETS, get_method

    if name not in TASK_SETS:
        raise ConfigError(f"--method {name!r}: fgad train trains the self-supervised methods "
                          f"({', '.join(sorted(TASK_SETS))}); other methods run in fgad benchmark")
    options = dict(overrides)
    seed = options.pop("seed", 0)
    return get_method(name).factory(preset=preset, seed=seed, **options).detector


def add_train_options(p: argparse.ArgumentParser) -> None:
    """Every option of ``fgad train`` that the torchrun entry ``fgad.cli.distributed`` shares."""
    add_training_args(p)
    p.add_argument("--method", help="a named method's fixed settings: ours (the paper's method and score), "
                                    "mhrot, jigsaw... (default: fgad's improved detector, the config's defaults)")
    add_image_args(p)
    add_input_rule_args(p)


def add_command(sub: Any) -> None:
    p = sub.add_parser("train", help="train a detector on normal images")
    add_train_options(p)
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms on CUDA (slower)")
    p.set_defaults(func=run)
