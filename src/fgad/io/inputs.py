"""Images for the command line: an ``.npz`` archive or a folder of image files, brought to a
model's size and channels by its rule.

:func:`read_inputs` is what every command reads images with: files are decoded by
:func:`fgad.io.imageio.read_image` (EXIF orientation, 16-bit scaled, alpha on black), then each
image is brought to the model's (H, W, C) by :mod:`fgad.io.conform` (channels, then the resize
rule) as soon as it is decoded, so memory holds model-size images, never a folder of photos.
Images of several sizes are never an error unless the rule is strict.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ImageReadError, InputError
from .conform import Conversions, InputRule, choose_input_shape, conform_image, shape_of
from .imageio import image_header, list_images, map_files, read_image


@dataclass
class Inputs:
    """Images read for a model: uint8 N×H×W×C, their ids (paths relative to the folder, or
    indices in the ``.npz`` array), the files skipped as unreadable, the conversions made, and
    the pictures of ``fgad explain`` found in the folder and left out."""

    images: np.ndarray
    ids: list[str]
    skipped: list[Path]
    conversions: Conversions
    left_out: list[Path] = field(default_factory=list)


def read_inputs(path: str | Path, rule: InputRule = InputRule(), *, key: str | None = None,
                label: int | None = None, label_key: str | None = None, skip_unreadable: bool = False,
                max_pixels: int | None = None, what: str = "images", workers: int | None = None) -> Inputs:
    """Images from an ``.npz`` file or a folder, brought to a model's shape by ``rule``.

    ``rule``: a trained model's (:meth:`InputRule.of_model`), or for training one whose unset
    size and channels are chosen from the images (:func:`fgad.io.conform.choose_input_shape`).
    ``.npz`` and folder selection as :func:`load_npz` and :func:`fgad.io.imageio.list_images`;
    a file of more than ``max_pixels`` pixels (default: Pillow's limit) is unreadable.
    ``what`` names the images in error messages.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_folder(path, rule, skip_unreadable, max_pixels, workers)
    x, ids = load_npz(path, key=key, label=label, label_key=label_key)
    from .preprocess import as_image_array

    x = as_image_array(x, what)
    shape = choose_input_shape([x.shape[1:]], rule)
    counts = Conversions(shape, rule.resize)
    if x.shape[1:] == shape:
        return Inputs(x, ids, [], counts)
    if rule.strict and x.shape[1:3] != shape[:2]:
        raise InputError(f"{path}: images are {x.shape[2]}x{x.shape[1]}, not {shape[1]}x{shape[0]} "
                         f"(--strict-size: no resizing)")
    out = np.empty((len(x), *shape), np.uint8)
    for i, img in enumerate(x):
        counts.note(img.shape)
        out[i] = conform_image(img, shape, rule.resize)
    return Inputs(out, ids, [], counts)


def _read_folder(folder: Path, rule: InputRule, skip_unreadable: bool, max_pixels: int | None,
                 workers: int | None) -> Inputs:
    left_out: list[Path] = []
    files = list_images(folder, left_out=left_out)
    if not files:
        raise InputError(f"{folder}: no image files in this folder"
                         + (f" (only {len(left_out)} picture(s) of fgad explain)" if left_out else ""))
    skipped: list[Path] = []

    def readable(fn):  # fn(path), or None for an unreadable file when skipping them
        def call(p: Path):
            try:
                return fn(p)
            except ImageReadError:
                if not skip_unreadable:
                    raise
                return None
        return call

    reference = "the model takes"
    if rule.size is None or rule.channels is None:  # a model to train: its shape from the files' headers
        headers = list(map_files(readable(lambda p: image_header(p, max_pixels)), files, workers))
        skipped = [p for p, h in zip(files, headers) if h is None]
        files, headers = [p for p, h in zip(files, headers) if h is not None], [h for h in headers if h is not None]
        if not files:
            raise InputError(f"no readable images ({len(skipped)} unreadable skipped)")
        if rule.strict and rule.size is None:  # one size for all: the first file's
            rule = InputRule(headers[0][:2], rule.channels, rule.resize, True)
            reference = f"{files[0].relative_to(folder)} is"
        shape = choose_input_shape(headers, rule)
    else:
        shape = (*rule.size, rule.channels)

    @readable
    def one(p: Path):
        img = read_image(p, max_pixels=max_pixels)
        shape_in = shape_of(img)
        if rule.strict and shape_in[:2] != shape[:2]:
            raise InputError(f"{p}: image is {shape_in[1]}x{shape_in[0]} but {reference} {shape[1]}x{shape[0]} "
                             f"(--strict-size: no resizing)")
        return shape_in, conform_image(img, shape, rule.resize)

    counts = Conversions(shape, rule.resize)
    out: list[np.ndarray] = []
    kept: list[Path] = []
    for p, result in zip(files, map_files(one, files, workers)):
        if result is None:
            skipped.append(p)
            continue
        counts.note(result[0])
        out.append(result[1])
        kept.append(p)
    if not out:
        raise InputError(f"no readable images ({len(skipped)} unreadable skipped)")
    return Inputs(np.stack(out), [str(p.relative_to(folder)) for p in kept], sorted(skipped), counts, left_out)


def load_images(path: str | Path, *, key: str | None = None, label: int | None = None,
                label_key: str | None = None, skip_unreadable: bool = False,
                max_pixels: int | None = None) -> tuple[np.ndarray, list[str], list[Path]]:
    """(images, ids, skipped files) for training: :func:`read_inputs` with the default rule
    (the images' own size when they share one, else 64×64 by ``crop``; colour when any is)."""
    got = read_inputs(path, key=key, label=label, label_key=label_key, skip_unreadable=skip_unreadable,
                      max_pixels=max_pixels, what="training images")
    return got.images, got.ids, got.skipped


def load_npz(path: str | Path, *, key: str | None = None, label: int | None = None,
             label_key: str | None = None) -> tuple[np.ndarray, list[str]]:
    """The array ``key`` of an ``.npz`` file (default ``x_train``, else the only array) and the
    ids of its images (their indices); with ``label``, only the images whose ``label_key`` entry
    (default ``y_`` + the key's suffix) equals it. The array is returned as stored, unchecked."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix.lower() != ".npz":
        raise InputError(f"{path}: expected an .npz file or a folder of images")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # empty, truncated, pickled
        raise InputError(f"{path}: unreadable .npz file ({exc or type(exc).__name__})") from exc
    if key is None:
        key = "x_train" if "x_train" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise InputError(f"{path}: several arrays ({', '.join(arrays)}); choose one with --key")
    if key not in arrays:
        raise InputError(f"{path}: no array {key!r} (has: {', '.join(arrays)})")
    x = arrays[key]
    if x.ndim == 0:
        raise InputError(f"{path}: array {key!r} is a single value, not images")
    ids = [str(i) for i in range(len(x))]
    if label is not None:
        lk = label_key or ("y" + key[1:] if key.startswith("x") else None)
        if lk not in arrays:
            raise InputError(f"{path}: no label array {lk!r} to select class {label}")
        y = arrays[lk]
        if len(y) != len(x):
            raise InputError(f"{path}: {key} has {len(x)} images but {lk} has {len(y)} labels")
        keep = np.flatnonzero(y == label)
        if keep.size == 0:
            raise InputError(f"{path}: no image of class {label} in {lk}")
        x, ids = x[keep], [str(i) for i in keep]
    return x, ids
