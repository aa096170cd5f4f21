"""``fgad explain MODEL IMAGE``: why an image got its score.

    fgad explain model suspicious.png [--out PNG] [--json [PATH]] [--overwrite]

Prints the per-task breakdown and the jigsaw heat map (higher = more anomalous) and draws them
into a PNG (default ``<image stem>.explain.png`` beside the image). An earlier explanation there
is replaced only with ``--overwrite``; a file of another kind is refused. An image of another
size or grey/colour is brought to the model's by the model's rule, as ``fgad score`` brings it
(``--strict-size`` refuses another size instead).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .common import (
    add_device_arg,
    add_max_pixels_arg,
    add_overwrite_arg,
    add_strict_size_arg,
    check_output_file,
    print_conversions,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_image(args: argparse.Namespace, det: Any) -> tuple[np.ndarray, Path]:
    """One uint8 H×W×C image brought to the model's channels and size by its rule (as ``fgad
    score`` brings it); and the stem of the default outputs."""
    from ..io.conform import Conversions
    from ..io.imageio import read_image
    from ..io.preprocess import as_image_array, conform_images

    path = Path(args.image)
    shape = det.input_shape
    h, w, _ = shape
    if path.suffix.lower() == ".npz":
        from ..io.inputs import load_npz

        key = args.key or "x_test"
        images, _ = load_npz(path, key=key)
        if not -len(images) <= args.index < len(images):
            raise InputError(f"{path}: --index {args.index} out of range (array {key!r} has {len(images)} images)")
        img = np.asarray(images[args.index])
        if img.dtype != np.uint8 or not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] in (1, 3))):
            raise InputError(f"{path}: {key}[{args.index}] is not a uint8 H×W or H×W×C image "
                             f"({img.dtype}, shape {img.shape})")
        stem = path.with_name(f"{path.stem}.{key}-{args.index}")
    else:
        if not path.is_file():
            raise InputError(f"{path}: no such image file")
        img = read_image(path, max_pixels=args.max_pixels)
        stem = path.with_name(path.stem)
    x = as_image_array(img[None], str(path))
    if x.shape[1:3] != (h, w) and args.strict_size:
        raise InputError(f"{path}: image is {x.shape[2]}x{x.shape[1]} but the model takes {w}x{h} "
                         f"(--strict-size: no resizing)")
    counts = Conversions(shape, det.config.resize)
    img = conform_images(x, shape, det.config.resize, counts)[0]  # the model's grey/colour, then its size
    print_conversions(counts)
    return img, stem


def _outputs(args: argparse.Namespace, stem: Path) -> tuple[Path, Path | None]:
    png = Path(args.out) if args.out else Path(f"{stem}.explain.png")
    jpath = None if args.json is None else (Path(f"{stem}.explain.json") if args.json is True else Path(args.json))
    return png, jpath


def _is_png(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError:
        return False


def _is_explanation_json(path: Path) -> bool:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"anomaly_score", "tasks", "image", "model"} <= record.keys()


def run(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..io.fileio import atomic_write_bytes, atomic_write_json
    from ..tools.explain import explain_image, explanation_json, format_breakdown, render_explanation

    det = Detector.load(args.model, device=args.device)
    img, stem = _read_image(args, det)
    out, jpath = _outputs(args, stem)
    check_output_file(out, "a PNG image", _is_png, overwrite=args.overwrite)  # before the work
    if jpath is not None:
        check_output_file(jpath, "an fgad explanation", _is_explanation_json, overwrite=args.overwrite,
                          option="--json PATH")
    expl = explain_image(det, img, fill=args.fill)
    atomic_write_bytes(out, render_explanation(img, expl, title=f"{Path(args.image).name}: anomaly score "
                                                             f"{expl['anomaly_score']:.3f} (higher = more anomalous)"))
    print(format_breakdown(expl))
    hm = expl["heatmap"]
    if hm is not None:
        cells = np.asarray(hm["cells"])
        print("jigsaw heat map (higher = tile looks more anomalous; rows top to bottom):")
        for row in cells:
            print("  " + " ".join(f"{v:+.4f}" for v in row))
        print(f"most anomalous cell: row {hm['argmax_cell'][0]}, column {hm['argmax_cell'][1]}")
    else:
        print("no jigsaw task in this model: no heat map")
    written = [str(out)]
    if jpath is not None:
        record = explanation_json(expl)
        record.update({"image": str(args.image), "model": str(args.model)})
        atomic_write_json(jpath, record)
        written.append(str(jpath))
    print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0


def add_command(sub: Any) -> None:
    p = sub.add_parser("explain", help="why an image got its score: per-task breakdown and a jigsaw heat map (PNG)")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("image", help="image file or an .npz with --index (brought to the model's size and grey/colour "
                   "by its rule)")
    p.add_argument("--out", help="PNG to write (default <image stem>.explain.png beside the image)")
    p.add_argument("--json", nargs="?", const=True, default=None, metavar="PATH",
                   help="also write the breakdown as JSON (default <image stem>.explain.json)")
    p.add_argument("--key", help="array inside an .npz (default x_test)")
    p.add_argument("--index", type=int, default=0, help="image index inside the .npz array (default 0)")
    p.add_argument("--resize", action="store_true", help=argparse.SUPPRESS)  # old scripts: resizing is the default
    add_strict_size_arg(p)
    add_max_pixels_arg(p)
    p.add_argument("--fill", choices=["mean", "zero"], default="mean",
                   help="how a hidden jigsaw tile is filled: its mean colour (default) or mid-grey")
    add_device_arg(p)
    add_overwrite_arg(p, "the PNG and JSON")
    p.set_defaults(func=run)
