"""What several commands share: config overrides, presets, devices, image inputs, and the rule
for outputs.

Outputs: a command writes a new path, an empty folder, or a previous output of its own kind.
Anything else that exists there is the user's and is refused with one ``fgad: error:`` line
(even with ``--overwrite``); a previous output of the command's own kind is replaced only with
``--overwrite`` (or resumed, where resuming is the command's documented behaviour).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ..errors import ConfigError, OutputError


# ------------------------------------------------------------------------------ config
def parse_overrides(pairs: Sequence[str] | None) -> dict[str, Any]:
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


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The detector config overrides of the command line: ``--config`` file, then ``--set``
    pairs, then the dedicated options (``--tasks``, ``--seed``, ``--device``, ``--deterministic``)."""
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


# ------------------------------------------------------------------------------ arguments
def add_preset_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="quick", help="paper | quick | tiny (default quick)")


def add_device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")


def add_overwrite_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace {what} written earlier by the same command (never a folder or file of yours)")


def add_image_args(p: argparse.ArgumentParser, *, key_help: str = "array name inside an .npz file (default x_train)",
                   label_help: str = "only the images of this class (needs a label array, e.g. y_train)",
                   quiet: bool = True) -> None:
    """``--key``, ``--label``, ``--skip-unreadable``, ``--max-pixels``, ``--strict-size`` (and
    ``--quiet``): how images are read."""
    p.add_argument("--key", help=key_help)
    p.add_argument("--label", type=int, help=label_help)
    p.add_argument("--skip-unreadable", action="store_true",
                   help="skip unreadable image files (not images, truncated, over --max-pixels) and count them")
    add_max_pixels_arg(p)
    add_strict_size_arg(p)
    if quiet:
        p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """The options of ``fgad train``, shared with the torchrun entry ``fgad.cli.distributed``."""
    p.add_argument("images", help=".npz file or folder of normal images")
    p.add_argument("--out", required=True, help="model folder to write (a new or empty folder, or with "
                                                "--overwrite an fgad model)")
    add_preset_arg(p)
    p.add_argument("--tasks", help="comma-separated tasks, e.g. geometric,jigsaw (paper), geometric (MHRot)")
    p.add_argument("--config", help="YAML/JSON file of config overrides")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="config override, repeatable")
    p.add_argument("--seed", type=int)
    add_device_arg(p)
    p.add_argument("--checkpoint-dir", help="training checkpoints (default MODEL.checkpoints); resumes from it")
    add_overwrite_arg(p, "a model folder")


def whole_number(minimum: int, what: str):
    """An argparse type: a whole number >= ``minimum`` (argparse turns the error into one line)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} >= {minimum}, got {text!r}")
        return value

    return parse


pixel_count = whole_number(1, "a whole number of pixels")  # --max-pixels
image_side = whole_number(4, "a side in pixels")  # --size


def add_max_pixels_arg(p: argparse.ArgumentParser) -> None:
    from ..io.pixellimit import DEFAULT_MAX_PIXELS

    p.add_argument("--max-pixels", type=pixel_count, metavar="N",
                   help=f"largest image file accepted, in pixels (default {DEFAULT_MAX_PIXELS}, Pillow's limit "
                        "against decompression bombs); a larger one is unreadable")


def add_strict_size_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strict-size", action="store_true",
                   help="refuse an image whose size is not the model's (when training: the first file's, or "
                        "--size) instead of resizing it by the model's rule; grey/colour is still converted")


def add_input_rule_args(p: argparse.ArgumentParser) -> None:
    """``--size``, ``--resize``, ``--channels`` of ``fgad train``: the rule by which every image
    becomes the model's input, now and whenever the model scores (:mod:`fgad.io.conform`)."""
    from ..io.conform import CHANNELS, DEFAULT_SIDE, RESIZE_RULES

    p.add_argument("--size", type=image_side, metavar="N",
                   help=f"the model's image size, N x N pixels (default: the images' own size when they all "
                        f"share one, else {DEFAULT_SIDE})")
    p.add_argument("--resize", choices=RESIZE_RULES,
                   help="how an image of another size becomes the model's size, saved in the model: crop "
                        "(default; scale to cover, keep the centre), pad (scale to fit, black borders) or "
                        "stretch (both sides, ignoring the aspect ratio)")
    p.add_argument("--channels", choices=sorted(CHANNELS),
                   help="grey or colour model (default: colour when any training image is colour); other "
                        "images are converted (colour to grey by luma, grey to colour repeated)")


def training_rule(args: argparse.Namespace, resize: str) -> Any:
    """The :class:`~fgad.io.conform.InputRule` of ``fgad train``'s options (``resize``: the config's)."""
    from ..io.conform import CHANNELS, InputRule

    size = getattr(args, "size", None)
    return InputRule(size=None if size is None else (size, size),
                     channels=CHANNELS.get(getattr(args, "channels", None) or ""), resize=resize,
                     strict=getattr(args, "strict_size", False))


def read_for_model(det: Any, path: str, args: argparse.Namespace, *, key: str | None = None,
                   label: int | None = None, what: str = "images to score") -> Any:
    """:func:`fgad.io.inputs.read_inputs` by the model's own rule (size, channels, resize) and the
    command's ``--skip-unreadable``, ``--max-pixels`` and ``--strict-size``; the conversions made
    are printed on standard error."""
    from ..io.conform import InputRule
    from ..io.inputs import read_inputs

    rule = InputRule.of_model(det.input_shape, det.config.resize, strict=getattr(args, "strict_size", False))
    got = read_inputs(path, rule, key=key, label=label, skip_unreadable=getattr(args, "skip_unreadable", False),
                      max_pixels=getattr(args, "max_pixels", None), what=what)
    print_conversions(got.conversions)
    print_left_out(got.left_out)
    return got


def print_conversions(conversions: Any) -> None:
    """One line on standard error, when the rule changed any image (fgad.io.conform.Conversions)."""
    if conversions:
        print(str(conversions), file=sys.stderr)


def print_left_out(left_out: Sequence[Any]) -> None:
    """One line on standard error when a folder held pictures of fgad explain (never read as images)."""
    if left_out:
        print(f"left out {len(left_out)} picture(s) written by fgad explain (*.explain.png), e.g. {left_out[0]}",
              file=sys.stderr)


def print_skipped(skipped: Sequence[Any]) -> None:
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s), e.g. {skipped[0]}", file=sys.stderr)


# ------------------------------------------------------------------------------ outputs
def check_writable_parent(path: str | os.PathLike) -> None:
    """Refuse, before any work, a ``path`` whose folder cannot be created or written: its nearest
    existing ancestor must be a writable folder. Nothing is created here, so a command that fails
    later leaves no empty folder behind; the writer creates the missing folders."""
    ancestor = Path(path).absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor.parent != ancestor:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputError(f"cannot write {path}: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {path}: folder {ancestor} is not writable")


def only_entries(names: Callable[[str], bool]) -> Callable[[Path], bool]:
    """A recogniser of a command's output folder: every entry in it is one the command writes."""
    return lambda folder: all(names(p.name) for p in folder.iterdir())


def is_fgad_json(path: Path, fmt: str) -> bool:
    """Whether ``path`` is a JSON object fgad wrote with ``"format": fmt``."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == fmt


def is_fgad_model(folder: Path) -> bool:
    """A folder written by ``fgad train`` (``Detector.save``): its files and nothing else."""
    from ..core.detector import CONFIG_FILE, FORMAT, LOG_FILE, SCORING_FILE, WEIGHTS_FILE

    return (only_entries(lambda n: n in (CONFIG_FILE, WEIGHTS_FILE, LOG_FILE, SCORING_FILE))(folder)
            and is_fgad_json(folder / CONFIG_FILE, FORMAT))


def check_output_folder(path: str | os.PathLike, kind: str, is_own: Callable[[Path], bool], *,
                        overwrite: bool = False, resume: bool = False) -> None:
    """Refuse, before any work, an output folder the command must not write.

    A new path or an empty folder is fine. A folder that ``is_own`` does not recognise as
    ``kind`` is the user's: refused, ``--overwrite`` or not. An earlier ``kind`` is used again
    when ``resume`` (the command carries on where it stopped) or ``overwrite``, else refused.
    """
    path = Path(path)
    check_writable_parent(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise OutputError(f"{path} exists and is not a folder; choose another --out")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    if not is_own(path):
        shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
        raise OutputError(f"{path} is a folder that is not {kind} (it holds {shown}); fgad writes only to a new "
                          f"or empty folder or replaces its own output: choose another --out")
    if not (resume or overwrite):
        raise OutputError(f"{path} already holds {kind}; pass --overwrite to replace it")


def check_output_file(path: str | os.PathLike, kind: str, is_own: Callable[[Path], bool], *,
                      overwrite: bool = False, option: str = "--out") -> None:
    """As :func:`check_output_folder`, for one output file: a new path is fine, an earlier
    ``kind`` (``is_own``) is replaced only with ``overwrite``, anything else is refused."""
    path = Path(path)
    check_writable_parent(path)
    if not path.exists():
        return
    if path.is_dir():
        raise OutputError(f"{path} is a folder, not a file; choose another {option}")
    if not is_own(path):
        raise OutputError(f"{path} exists and is not {kind}; fgad replaces only its own output: "
                          f"choose another {option}")
    if not overwrite:
        raise OutputError(f"{path} already exists ({kind}); pass --overwrite to replace it")
