"""Subcommands ``fgad explain`` and ``fgad diagnose`` (picked up through ``fgad.cli.main.COMMAND_MODULES``).

    fgad explain MODEL IMAGE [--out PNG] [--json [PATH]]
    fgad diagnose IMAGES --normal-class C --out DIR [--tasks rotation,translation,jigsaw] [--steps N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError


# ----------------------------------------------------------------------------------- explain
def _to_channels(img: np.ndarray, c: int) -> np.ndarray:
    """H×W / H×W×1 / H×W×3 uint8 → H×W (c = 1) or H×W×3 (c = 3); luma as Pillow's convert("L")."""
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if c == 1 and img.ndim == 3:
        return (img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114 + 0.5).astype(np.uint8)
    if c == 3 and img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=-1)
    return img


def _read_explain_image(args: argparse.Namespace, shape: tuple[int, int, int]) -> tuple[np.ndarray, Path]:
    """One uint8 H×W×C image in the model's channels and size; and the stem of the default outputs."""
    from ..io.imageio import read_image

    path = Path(args.image)
    h, w, c = shape
    if path.suffix.lower() == ".npz":
        from ..io.inputs import load_images

        key = args.key or "x_test"
        images, _, _ = load_images(path, key=key)
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
        img = read_image(path)
        stem = path.with_name(path.stem)
    img = _to_channels(img, c)
    if img.shape[:2] != (h, w):
        if not args.resize:
            raise InputError(f"{path}: the image is {img.shape[1]}x{img.shape[0]} but the model was trained on "
                             f"{w}x{h} images; pass --resize to resize it")
        from PIL import Image

        img = np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR), dtype=np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    return img, stem


def cmd_explain(args: argparse.Namespace) -> int:
    from ..core.detector import Detector
    from ..tools.explain import explain_image, explanation_json, format_breakdown, render_explanation
    from ..io.fileio import atomic_write_bytes, atomic_write_json

    det = Detector.load(args.model, device=args.device)
    img, stem = _read_explain_image(args, det.input_shape)
    expl = explain_image(det, img, fill=args.fill)
    out = Path(args.out) if args.out else Path(f"{stem}.explain.png")
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
    if args.json is not None:
        jpath = Path(f"{stem}.explain.json") if args.json is True else Path(args.json)
        record = explanation_json(expl)
        record.update({"image": str(args.image), "model": str(args.model)})
        atomic_write_json(jpath, record)
        written.append(str(jpath))
    print(f"wrote {', '.join(written)}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------------- diagnose
def _load_diagnose_data(args: argparse.Namespace):
    from ..data import load_dataset

    src = Path(args.images)
    if src.suffix.lower() == ".npz" or src.is_file():
        if not src.is_file():
            raise InputError(f"{src}: no such file")
        return load_dataset("npz", root=src)
    return load_dataset(args.images, root=args.data_root)


def cmd_diagnose(args: argparse.Namespace) -> int:
    from .main import parse_overrides
    from ..tools.diagnose import diagnose, parse_task_sets

    from ..core.detector import Detector

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
    ds = _load_diagnose_data(args)
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


def add_commands(sub) -> None:
    p = sub.add_parser("explain", help="why an image got its score: per-task breakdown and a jigsaw heat map (PNG)")
    p.add_argument("model", help="model folder written by fgad train")
    p.add_argument("image", help="image file (converted to the model's grey/colour), or an .npz with --index")
    p.add_argument("--out", help="PNG to write (default <image stem>.explain.png beside the image)")
    p.add_argument("--json", nargs="?", const=True, default=None, metavar="PATH",
                   help="also write the breakdown as JSON (default <image stem>.explain.json)")
    p.add_argument("--key", help="array inside an .npz (default x_test)")
    p.add_argument("--index", type=int, default=0, help="image index inside the .npz array (default 0)")
    p.add_argument("--resize", action="store_true", help="resize an image of another size to the model's")
    p.add_argument("--fill", choices=["mean", "zero"], default="mean",
                   help="how a hidden jigsaw tile is filled: its mean colour (default) or mid-grey")
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("diagnose", help="task suitability (paper Fig. 1): task accuracy during training, "
                                        "held-out normal vs anomalies (CSV + PNG)")
    p.add_argument("images", help=".npz with x_train/y_train/x_test/y_test, or a dataset name (see fgad list)")
    p.add_argument("--normal-class", required=True, help="normal class (index or name)")
    p.add_argument("--anomalies", help="anomalous test classes, comma-separated (default: every other class)")
    p.add_argument("--tasks", default="rotation,translation,jigsaw,geometric+jigsaw",
                   help="task sets, comma-separated; '+' joins tasks in one set (default %(default)s)")
    p.add_argument("--preset", default="quick", help="paper | quick | tiny (default quick)")
    p.add_argument("--steps", type=int, help="training steps per task set (default: the preset's)")
    p.add_argument("--epochs", type=float, help="training length in epochs instead of steps")
    p.add_argument("--eval-every", type=int, help="steps between evaluations (default: a tenth of the run)")
    p.add_argument("--max-eval", type=int, default=500, help="at most this many held-out normal and anomalous "
                                                              "images each (random subsample; default 500)")
    p.add_argument("--max-train", type=int, help="use only the first N normal training images")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="detector config override, repeatable")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data-root", help="dataset folder (for a dataset name)")
    p.add_argument("--out", required=True, help="folder for diagnose.csv and diagnose.png")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_diagnose)
